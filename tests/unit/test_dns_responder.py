"""l2mesh.edge.node.dns_responder: DNS queries in, replies out (dnspython's wire format, no socket)."""

from __future__ import annotations

import select
import socket
import subprocess
import sys

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

from l2mesh.edge.node.dns_answers import reply_to
from l2mesh.edge.node.dns_responder import DnsResponder
from l2mesh.node.name_table import ANSWER_TTL_S, NameTable

TABLE = NameTable("lab.l2mesh", {"n2": ("10.147.17.2", "fd00::2"), "0a1b2c3d4e": ("10.147.17.2", "fd00::2"), "bridge": ()}, serial=9)


def ask(name: str, rdtype: str = "A", **make: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **make)
    wire = reply_to(query.to_wire(), TABLE)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id and reply.flags & dns.flags.QR
    return reply


def test_a_and_aaaa_questions_get_the_members_addresses_with_authority_and_a_short_ttl() -> None:
    reply = ask("N2.lab.l2mesh.")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA
    [rrset] = reply.answer
    assert [r.address for r in rrset] == ["10.147.17.2"] and rrset.ttl == ANSWER_TTL_S
    assert [r.address for r in ask("0a1b2c3d4e.lab.l2mesh", "AAAA").answer[0]] == ["fd00::2"]


def test_unknown_names_are_nxdomain_with_the_soa_and_others_refused() -> None:
    missing = ask("n9.lab.l2mesh")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.answer == []
    [soa] = missing.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa[0].serial == 9 and soa[0].minimum == ANSWER_TTL_S
    outside = ask("example.org")
    assert outside.rcode() == dns.rcode.REFUSED and not outside.flags & dns.flags.AA and outside.answer == []
    assert ask("bridge.lab.l2mesh").rcode() == dns.rcode.NOERROR  # exists, no address: NODATA
    assert ask("lab.l2mesh", "SOA").answer[0].rdtype == dns.rdatatype.SOA


def test_edns_queries_get_edns_replies_and_odd_queries_get_errors_not_silence() -> None:
    assert ask("n2.lab.l2mesh", use_edns=0).edns == 0
    garbage = b"\x12\x34" + bytes(10) + b"\xff" * 20
    reply = dns.message.from_wire(reply_to(garbage, TABLE))
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    assert reply_to(b"\x00\x01", TABLE) is None  # too short to answer
    answer = dns.message.make_response(dns.message.make_query("n2.lab.l2mesh", "A"))
    assert reply_to(answer.to_wire(), TABLE) is None  # a reply is never answered
    notify = dns.message.make_query("lab.l2mesh", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(reply_to(notify.to_wire(), TABLE)).rcode() == dns.rcode.NOTIMP


def test_the_responder_answers_on_its_socket() -> None:
    responder = DnsResponder(["127.0.0.1"], TABLE, port=0)
    try:
        [server] = responder.sockets
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.sendto(dns.message.make_query("n2.lab.l2mesh", "A").to_wire(), server.getsockname())
            select.select([server], [], [], 2)
            responder.drainer(server)()
            reply = dns.message.from_wire(client.recv(512))
        assert [r.address for r in reply.answer[0]] == ["10.147.17.2"] and responder.answered == 1
    finally:
        responder.close()


def test_a_listening_responder_loads_dnspython_only_when_a_query_arrives() -> None:
    """Most members are never asked: their daemons must not carry dnspython (MiBs of memory) for nothing."""
    probe = (
        "import socket, sys\n"
        "from l2mesh.edge.node.dns_responder import DnsResponder\n"
        "from l2mesh.node.name_table import NameTable\n"
        "responder = DnsResponder(['127.0.0.1'], NameTable('lab.l2mesh', {}, serial=1), port=0)\n"
        "print('dns' in sys.modules)\n"
        "client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "client.sendto(b'\\0' * 12, responder.sockets[0].getsockname())\n"
        "responder.drainer(responder.sockets[0])()\n"
        "print('dns' in sys.modules)\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["False", "True"]
