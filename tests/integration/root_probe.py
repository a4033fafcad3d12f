"""Run inside a test namespace: talk to a real `l2mesh-ctl root` over UDP and TCP, print what held as JSON.

    python root_probe.py ROOT_ID ROOT_UDP_HOST ROOT_UDP_PORT ROOT_TCP_PORT

Checks: the root's keys (IdentityRequest for any id) hash to ROOT_ID;
two UDP nodes register and look each other up; an envelope between them is
relayed and one with a borrowed origin is not; a node on a TCP stream
(RootStream) registers, is looked up without its stream address, and
relays both ways with a UDP node. Every wait is bounded.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from l2mesh.edge.node.root_stream import RootStream  # noqa: E402
from l2mesh.identity import PublicIdentity  # noqa: E402
from l2mesh.wire.errors import parse_exact  # noqa: E402
from l2mesh.wire.messages import MessageKind  # noqa: E402
from l2mesh.wire.packets import ANY_NODE_ID, IdentityResponse  # noqa: E402
from tests.root_client import RootClient, drive_stream  # noqa: E402

WAIT_S = 3.0


class UdpNode:
    def __init__(self, root: PublicIdentity, root_udp: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.root_udp = root_udp
        self.client = RootClient(root)

    def receive(self, timeout_s: float = WAIT_S) -> bytes | None:
        ready, _, _ = select.select([self.sock], [], [], timeout_s)
        return self.sock.recv(65536) if ready else None

    def ask(self, data: bytes):  # type: ignore[no-untyped-def]
        self.sock.sendto(data, self.root_udp)
        answer = self.receive()
        return None if answer is None else self.client.receive(answer, time.monotonic())

    def connect_and_register(self, local: list[tuple[str, int]]) -> object:
        self.ask(self.client.initiation(time.monotonic()))
        return self.ask(self.client.register(time.monotonic(), local))


def pump(stream: RootStream, until, timeout_s: float = WAIT_S) -> list[bytes]:  # type: ignore[no-untyped-def]
    return drive_stream(stream, until, timeout_s)


def main() -> int:
    root_id, host, udp_port, tcp_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    root_udp = (host, udp_port)
    checks: dict[str, object] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as asker:
        asker.sendto(RootClient.identity_request(ANY_NODE_ID), root_udp)
        ready, _, _ = select.select([asker], [], [], WAIT_S)
        keys = parse_exact(IdentityResponse, asker.recv(65536)) if ready else None
    if keys is None:
        print(json.dumps({"identity": False}))
        return 1
    root = PublicIdentity(keys.x25519, keys.ed25519)
    checks["identity"] = f"{root.node_id:010x}" == root_id

    a, b, mallory = UdpNode(root, root_udp), UdpNode(root, root_udp), UdpNode(root, root_udp)
    registered = a.connect_and_register([("192.168.50.1", 9993)])
    checks["registered"] = registered is not None and registered[0] == MessageKind.ROOT_REGISTERED
    b.connect_and_register([])
    reply = a.ask(a.client.lookup(b.client.node_id, time.monotonic()))
    b_public = b.client.identity.public
    checks["lookup"] = (
        reply is not None and reply[1].registered and reply[1].x25519 == b_public.x25519_public
        and reply[1].ed25519 == b_public.ed25519_public and len(reply[1].endpoints) == 1
        and reply[1].endpoints[0][1] == b.sock.getsockname()[1]
    )
    envelope = a.client.envelope(b.client.node_id, b"relayed over udp")
    a.sock.sendto(envelope, root_udp)
    checks["relayed"] = b.receive() == envelope
    spoofed = mallory.client.envelope(b.client.node_id, b"spoofed", origin=a.client.node_id)
    mallory.sock.sendto(spoofed, root_udp)
    checks["spoofed_dropped"] = b.receive(1.0) is None

    stream = RootStream(root_udp, (host, tcp_port))
    pump(stream, lambda _: stream.is_open)
    checks["tcp_upgraded"] = stream.is_open
    streamed = RootClient(root)
    stream.send(streamed.initiation(time.monotonic()))
    for data in pump(stream, lambda got: len(got) >= 1):
        streamed.receive(data, time.monotonic())
    stream.send(streamed.register(time.monotonic(), [("192.168.60.1", 9993)]))
    answers = [streamed.receive(d, time.monotonic()) for d in pump(stream, lambda got: len(got) >= 1)]
    checks["tcp_registered"] = bool(answers) and answers[0] is not None and answers[0][0] == MessageKind.ROOT_REGISTERED
    reply = a.ask(a.client.lookup(streamed.node_id, time.monotonic()))
    checks["tcp_lookup_without_stream_address"] = reply is not None and list(reply[1].endpoints) == [("192.168.60.1", 9993)]
    to_stream = a.client.envelope(streamed.node_id, b"relayed onto the stream")
    a.sock.sendto(to_stream, root_udp)
    checks["tcp_relayed_to"] = to_stream in pump(stream, lambda got: to_stream in got)
    from_stream = streamed.envelope(a.client.node_id, b"relayed off the stream")
    stream.send(from_stream)
    pump(stream, lambda _: not stream.wants_write, 1.0)
    checks["tcp_relayed_from"] = a.receive() == from_stream
    stream.close()
    print(json.dumps(checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
