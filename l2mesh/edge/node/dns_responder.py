"""DNS for a network's domain on UDP port 53 of the member's own overlay addresses (dnspython for the wire format).

The questions are answered from l2mesh.node.name_table (what to say); this
file reads queries and writes replies. The sockets are drained by the
reactor thread, which holds the network's current config, so a reply never
lags behind a config the member already applied. Imported only when a
network has an address to listen on: importing dnspython costs the daemon
~2.9 MB of RSS and ~27 ms (measured on the 2-vCPU test VM) that a daemon with
no network need not pay.

UDP only: the answers (a few addresses) always fit one datagram.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from l2mesh.node.name_table import ANSWER_TTL_S, NameTable, Rcode

DNS_PORT = 53
DRAIN_BATCH = 64
MAX_QUERY_BYTES = 4096
PLAIN_DNS_PAYLOAD_BYTES = 512  # a query without EDNS takes no more (RFC 1035)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = 78  # linux/in6.h
# The SOA's timers mean little without secondaries; its minimum is the negative-answer TTL (RFC 2308).
SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S = 3600, 600, 86400
_RCODES = {Rcode.NOERROR: dns.rcode.NOERROR, Rcode.NXDOMAIN: dns.rcode.NXDOMAIN, Rcode.REFUSED: dns.rcode.REFUSED}

log = logging.getLogger("l2mesh.dns")


def reply_to(query_bytes: bytes, table: NameTable) -> bytes | None:
    """The reply to one query datagram, or None for what gets no reply (a reply, a datagram too short to answer)."""
    try:
        query = dns.message.from_wire(query_bytes)
    except dns.message.ShortHeader:
        return None
    except dns.exception.DNSException:
        return _header_only_error(query_bytes, dns.rcode.FORMERR)
    if query.flags & dns.flags.QR:
        return None  # a reply sent to us: answering it could start a loop
    reply = dns.message.make_response(query)
    if query.opcode() != dns.opcode.QUERY:
        reply.set_rcode(dns.rcode.NOTIMP)
    elif len(query.question) != 1:
        reply.set_rcode(dns.rcode.FORMERR)
    elif query.question[0].rdclass != dns.rdataclass.IN:
        reply.set_rcode(dns.rcode.REFUSED)
    else:
        _answer(reply, query.question[0], table)
    max_size = query.payload if query.edns >= 0 else PLAIN_DNS_PAYLOAD_BYTES
    return reply.to_wire(max_size=max(max_size, PLAIN_DNS_PAYLOAD_BYTES))


def _answer(reply: dns.message.Message, question: dns.rrset.RRset, table: NameTable) -> None:
    qtype = dns.rdatatype.to_text(question.rdtype)
    answer = table.lookup(question.name.to_text(), qtype)
    reply.set_rcode(_RCODES[answer.rcode])
    if answer.rcode is Rcode.REFUSED:
        return
    reply.flags |= dns.flags.AA  # the daemon is the authority for its network's names
    for address in answer.addresses:
        rdtype = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
        reply.answer.append(dns.rrset.from_text(question.name, ANSWER_TTL_S, "IN", rdtype, address))
    if answer.soa:
        soa = dns.rrset.from_text(
            f"{table.domain}.", ANSWER_TTL_S, "IN", "SOA",
            f"{table.domain}. hostmaster.{table.domain}. {table.serial % 2**32} {SOA_REFRESH_S} {SOA_RETRY_S} "
            f"{SOA_EXPIRE_S} {ANSWER_TTL_S}",
        )
        apex_question = question.name.to_text().lower().removesuffix(".") == table.domain and qtype in ("SOA", "ANY")
        (reply.answer if apex_question else reply.authority).append(soa)


def _header_only_error(query_bytes: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A reply with the query's id and the rcode only, for a query too malformed to echo."""
    reply = dns.message.Message(id=int.from_bytes(query_bytes[:2], "big"))
    reply.flags = dns.flags.QR
    reply.set_rcode(rcode)
    return reply.to_wire()


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
