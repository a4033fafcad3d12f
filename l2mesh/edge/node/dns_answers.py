"""DNS replies to a network's queries, in dnspython's wire format; dns_responder.py owns the sockets.

The questions are answered from l2mesh.node.name_table (what to say); this
file reads queries and writes replies. Imported on a network's first query:
dnspython costs the daemon ~3 MiB of RSS and ~27 ms (measured on the 2-vCPU
test VM) that a member nobody asks need not pay.
"""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from l2mesh.node.name_table import ANSWER_TTL_S, NameTable, Rcode

PLAIN_DNS_PAYLOAD_BYTES = 512  # a query without EDNS takes no more (RFC 1035)
# The SOA's timers mean little without secondaries; its minimum is the negative-answer TTL (RFC 2308).
SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S = 3600, 600, 86400
_RCODES = {Rcode.NOERROR: dns.rcode.NOERROR, Rcode.NXDOMAIN: dns.rcode.NXDOMAIN, Rcode.REFUSED: dns.rcode.REFUSED}


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
