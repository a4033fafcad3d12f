"""DNS for a network's domain on UDP port 53 of the member's own overlay addresses.

The sockets are drained by the reactor thread, which holds the network's
current config, so a reply never lags behind a config the member already
applied; dns_answers.py writes the replies. Imported only when a network has
an address to listen on, and dnspython (dns_answers.py) only when a query
arrives: most members are never asked, and it costs ~3 MiB of memory.

UDP only: the answers (a few addresses) always fit one datagram.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Callable

from l2mesh.node.name_table import NameTable

DNS_PORT = 53
DRAIN_BATCH = 64
MAX_QUERY_BYTES = 4096
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = 78  # linux/in6.h

log = logging.getLogger("l2mesh.dns")


class DnsResponder:
    """One network's DNS sockets: one per overlay address of the member, each bound with FREEBIND
    (so binding does not race the address's arrival on the TAP)."""

    def __init__(self, addresses: list[str], table: NameTable, port: int = DNS_PORT) -> None:
        self.table = table
        self.addresses = list(addresses)
        self.port = port
        self.sockets: list[socket.socket] = []
        self.listening: list[str] = []
        self.answered = 0
        for address in addresses:
            sock = self._open(address)
            if sock is not None:
                self.sockets.append(sock)
                self.listening.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")

    def _open(self, address: str) -> socket.socket | None:
        ipv6 = ipaddress.ip_address(address).version == 6
        sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if ipv6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            sock.bind((address, self.port))
        except OSError as exc:
            sock.close()
            why = "something else already answers DNS there" if exc.errno == errno.EADDRINUSE else exc.strerror
            log.warning("DNS: cannot listen on %s port %d: %s", address, self.port, why)
            return None
        sock.setblocking(False)
        return sock

    def drainer(self, sock: socket.socket) -> Callable[[], None]:
        """What the reactor calls when sock is readable: answer what is queued, a batch at a time."""

        def drain() -> None:
            from l2mesh.edge.node.dns_answers import reply_to  # dnspython: loaded by the first query only

            for _ in range(DRAIN_BATCH):
                try:
                    query, source = sock.recvfrom(MAX_QUERY_BYTES)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                try:
                    reply = reply_to(query, self.table)
                except Exception:  # a query dnspython chokes on must not stop the packet thread
                    log.exception("DNS: cannot answer a query from %s", source[0])
                    continue
                if reply is not None:
                    self.answered += 1
                    try:
                        sock.sendto(reply, source)
                    except OSError:
                        pass  # the asker is gone or its buffer is full: it will ask again

        return drain

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
