"""A node's side of a session with a root, for tests: handshake, register, look up, meet, probe (sans-IO),
and drive_stream(), which runs a RootStream as a reactor would.

The unit tests drive it against a RootCore in memory; the integration test
drives it over real UDP and TCP against `l2mesh-ctl root`. The node side of
l2mesh proper lives in l2mesh/node; this is only what the tests need.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from l2mesh.edge.node.root_stream import RootStream

from l2mesh.identity import Identity, PublicIdentity
from l2mesh.session import SessionTable
from l2mesh.wire.codec import parse_message
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import (
    ROOT_REGISTER_CONTEXT,
    EndpointHints,
    Keepalive,
    MessageKind,
    PathProbe,
    RootLookup,
    RootRegister,
)
from l2mesh.wire.packets import RELAY_HEADER, IdentityRequest, PacketType


class RootClient:
    def __init__(self, root: PublicIdentity, identity: Identity | None = None) -> None:
        self.identity = identity or Identity.generate()
        self.root = root
        self.table = SessionTable(self.identity.x25519_private)
        self.session = self.table.session_for(root.x25519_public)

    @property
    def node_id(self) -> int:
        return self.identity.node_id

    # -- what it sends
    def initiation(self, now: float) -> bytes:
        return self.session.create_initiation(now)

    def seal(self, message: bytes, now: float) -> bytes:
        packet = self.session.seal(message, now)
        assert packet is not None, "no session with the root yet"
        return bytes(packet)

    def register(self, now: float, local_endpoints: list[Endpoint] | None = None, proof_for: int | None = None) -> bytes:
        root_id = self.root.node_id if proof_for is None else proof_for
        proof = self.identity.sign(ROOT_REGISTER_CONTEXT + self.identity.x25519_public + root_id.to_bytes(5, "big"))
        message = RootRegister.build({"ed25519": self.identity.ed25519_public, "proof": proof, "local_endpoints": local_endpoints or []})
        return self.seal(message, now)

    def lookup(self, node_id: int, now: float) -> bytes:
        return self.seal(RootLookup.build({"node_id": node_id}), now)

    def meet(self, node_id: int, now: float) -> bytes:
        return self.seal(EndpointHints.build({"node_id": node_id, "punch": True, "endpoints": []}), now)

    def probe(self, probe_id: int, now: float) -> bytes:
        return self.seal(PathProbe.build({"probe_id": probe_id}), now)

    def keepalive(self, now: float) -> bytes:
        return self.seal(Keepalive.build({}), now)

    def envelope(self, destination: int, payload: bytes, origin: int | None = None, hops: int = 0) -> bytes:
        source = self.node_id if origin is None else origin
        return RELAY_HEADER.pack(PacketType.RELAY, hops, destination.to_bytes(5, "big"), source.to_bytes(5, "big")) + payload

    @staticmethod
    def identity_request(node_id: int) -> bytes:
        return IdentityRequest.build({"node_id": node_id})

    # -- what it receives
    def receive(self, data: bytes, now: float) -> tuple[MessageKind, Any] | None:
        """The message in a transport packet from the root (None for a handshake response, which completes the session)."""
        if data[0] == PacketType.HANDSHAKE_RESPONSE:
            self.table.handle_response(data, now)
            return None
        assert data[0] == PacketType.TRANSPORT, f"unexpected packet type {data[0]}"
        _, plaintext = self.table.open(memoryview(data), now)
        return parse_message(bytes(plaintext))


def drive_stream(stream: RootStream, until: Callable[[list[bytes]], bool], timeout_s: float) -> list[bytes]:
    """Drive the stream as a reactor would until until(received) holds or timeout_s passes; what it received."""
    received: list[bytes] = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not until(received):
        stream.tick(time.monotonic())
        fd = stream.fileno()
        if fd < 0:
            time.sleep(0.02)
            continue
        readable, writable, _ = select.select([fd], [fd] if stream.wants_write else [], [], 0.05)
        if writable:
            stream.on_writable(time.monotonic())
        if readable and stream.fileno() == fd:
            received += stream.on_readable(time.monotonic())
    return received
