"""DNS for a network's domain on UDP port 53 of the member's own overlay addresses.

The sockets are drained by the reactor thread, which holds the network's
current config, so a reply never lags behind a config the member already
applied; dns_answers.py writes the replies. Imported only when a network has
an address to listen on, and dnspython (dns_answers.py) only when a query
arrives: most members are never asked, and it costs ~3 MiB of memory.

UDP only: the answers (a few addresses) always fit one datagram. Queries are
rate-limited per source address (anyone on the overlay can send them, and a
spoofed source would have us reflect answers at a victim); refusals and
queries dnspython cannot read are counted in `drops`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable

from l2mesh.node.name_table import NameTable
from l2mesh.ratelimit import KeyedLimit

DNS_PORT = 53
DRAIN_BATCH = 64
MAX_QUERY_BYTES = 4096
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = 78  # linux/in6.h
# A stub resolver asks a few questions per lookup (A, AAAA, search domains): far below this.
QUERIES_PER_SOURCE_PER_S = 50.0
QUERY_BURST_PER_SOURCE = 100.0
QUERIES_TOTAL_PER_S = 2000.0
MAX_QUERY_SOURCES = 1024

log = logging.getLogger("l2mesh.dns")


class DnsResponder:
    """One network's DNS sockets: one per overlay address of the member, each bound with FREEBIND
    (so binding does not race the address's arrival on the TAP)."""

    def __init__(
        self, addresses: list[str], table: NameTable, port: int = DNS_PORT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.table = table
        self.addresses = list(addresses)
        self.port = port
        self.sockets: list[socket.socket] = []
        self.listening: list[str] = []
        self.answered = 0
        self.drops: Counter[str] = Counter()
        self.clock = clock
        self._queries = KeyedLimit(
            "dns_query_rate_limited", QUERIES_PER_SOURCE_PER_S, QUERY_BURST_PER_SOURCE, self.drops,
            max_keys=MAX_QUERY_SOURCES, total_per_s=QUERIES_TOTAL_PER_S,
        )
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
                if not self._queries.take(source[0], self.clock()):
                    continue
                try:
                    reply = reply_to(query, self.table)
                except Exception:  # a query dnspython chokes on must not stop the packet thread
                    if not self.drops["dns_query_unanswerable"]:  # once: each is a traceback, and anyone can send them
                        log.exception("DNS: cannot answer a query from %s (logged once, counted as dns_query_unanswerable)", source[0])
                    self.drops["dns_query_unanswerable"] += 1
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
