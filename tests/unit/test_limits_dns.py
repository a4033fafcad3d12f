"""The DNS responder's per-source limit, on real loopback sockets: a flood from one address is cut at
its burst and counted, another address is still answered."""

from __future__ import annotations

import select
import socket

import dns.message

from l2mesh.edge.node.dns_responder import QUERY_BURST_PER_SOURCE, DnsResponder
from l2mesh.node.name_table import NameTable

TABLE = NameTable("lab.l2mesh", {"n2": ("10.147.17.2",)}, serial=1)
FLOOD = int(QUERY_BURST_PER_SOURCE) + 20  # few enough to fit a socket's receive buffer


def drain_all(responder: DnsResponder, server: socket.socket) -> None:
    while select.select([server], [], [], 0.2)[0]:
        responder.drainer(server)()


def replies(client: socket.socket) -> int:
    count = 0
    while select.select([client], [], [], 0.2)[0]:
        client.recv(512)
        count += 1
    return count


def test_queries_from_one_source_are_cut_at_the_burst_and_another_source_is_answered() -> None:
    responder = DnsResponder(["127.0.0.1"], TABLE, port=0, clock=lambda: 1.0)  # frozen: no refill
    query = dns.message.make_query("n2.lab.l2mesh", "A").to_wire()
    try:
        [server] = responder.sockets
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flooder, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            flooder.bind(("127.0.0.2", 0))
            other.bind(("127.0.0.3", 0))
            for _ in range(FLOOD):
                flooder.sendto(query, server.getsockname())
            drain_all(responder, server)
            assert replies(flooder) == QUERY_BURST_PER_SOURCE
            assert responder.drops == {"dns_query_rate_limited": FLOOD - QUERY_BURST_PER_SOURCE}
            other.sendto(query, server.getsockname())
            drain_all(responder, server)
            assert replies(other) == 1
            assert responder.drops["dns_query_rate_limited"] == FLOOD - QUERY_BURST_PER_SOURCE
    finally:
        responder.close()
