"""`l2mesh netcheck`, sans-IO: where the controllers and roots see our UDP come from, and whether the NAT maps per destination.

Every l2mesh server answers a PathProbe (l2mesh/wire/messages.py) with the
address it saw the probe come from, as STUN does; so does every older one,
so no new message is needed. Netcheck asks each server from one UDP socket
(the edge's), over a Noise session of a throwaway identity: the server's
keys first when we hold none (IDENTITY_REQUEST, checked against its id),
then a handshake, then PROBES_PER_SERVER probes one after another (the
lowest round trip is its latency). A NAT that maps per source (a "cone":
RFC 4787's endpoint-independent mapping) shows every server the same
address and port; one that maps per destination ("symmetric") shows each
another, and then direct paths between two members need the relay or a
port mapping. Telling the two apart takes two servers that answer: with
fewer, `symmetric` is None and the report says why.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import format_node_id
from l2mesh.netconf import format_endpoint as endpoint_text
from l2mesh.session import HandshakeRefused, Session, SessionError, SessionTable
from l2mesh.wire.codec import parse_message
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import ParseError, parse_or_none
from l2mesh.wire.messages import MessageKind, PathProbe
from l2mesh.wire.packets import ANY_NODE_ID, IdentityRequest, IdentityResponse, PacketType

PROBES_PER_SERVER = 3
RETRY_S = 0.5  # an identity request, an initiation or a probe without an answer is sent again after this
DEFAULT_TIMEOUT_S = 3.0


@dataclass
class Server:
    """One server asked: a controller or a root, where it is, its keys, and what it answered."""

    role: str  # "controller" or "root"
    endpoint: Endpoint
    expected_id: int | None = None  # its keys must hash to this (a controller's id is in the network id)
    identity: PublicIdentity | None = None  # known (cached, pinned) or fetched
    session: Session | None = None
    probe_id: int | None = None
    probe_sent_s: float = 0.0
    next_send_s: float = 0.0
    observed: Endpoint | None = None
    rtts_ms: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or len(self.rtts_ms) >= PROBES_PER_SERVER

    def view(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "id": format_node_id(self.identity.node_id) if self.identity is not None else
            format_node_id(self.expected_id) if self.expected_id is not None else None,
            "endpoint": endpoint_text(self.endpoint),
            "observed": endpoint_text(self.observed) if self.observed is not None else None,
            "latency_ms": round(min(self.rtts_ms), 3) if self.rtts_ms else None,
            "error": self.error or (None if self.rtts_ms else "no answer"),
        }


Outgoing = tuple[bytes, Endpoint]


class Netcheck:
    def __init__(self, servers: list[Server], identity: Identity | None = None) -> None:
        self.servers = servers
        self.by_endpoint = {server.endpoint: server for server in servers}
        self.table = SessionTable((identity or Identity.generate()).x25519_private)
        self.drops: Counter[str] = Counter()

    @property
    def done(self) -> bool:
        return all(server.done for server in self.servers)

    # -- sending --------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Outgoing]:
        """What is due: first contact with every server, and retries of whatever got no answer."""
        out: list[Outgoing] = []
        for server in self.servers:
            if server.done or now < server.next_send_s:
                continue
            server.next_send_s = now + RETRY_S
            packet = self._next_packet(server, now)
            if packet is not None:
                out.append((packet, server.endpoint))
        return out

    def _next_packet(self, server: Server, now: float) -> bytes | None:
        if server.identity is None:
            wanted = server.expected_id if server.expected_id is not None else ANY_NODE_ID
            return IdentityRequest.build({"node_id": wanted})
        if server.session is None:
            server.session = self.table.session_for(server.identity.x25519_public, server.endpoint)
        if not server.session.established:
            return server.session.create_initiation(now)
        server.probe_id = int.from_bytes(os.urandom(8), "big")
        server.probe_sent_s = now
        sealed = server.session.seal(PathProbe.build({"probe_id": server.probe_id}), now)
        return bytes(sealed) if sealed is not None else None

    # -- receiving ------------------------------------------------------------------------------
    def datagram(self, data: bytes, source: Endpoint, now: float) -> list[Outgoing]:
        """One datagram on our socket: from a server we asked, or counted and dropped."""
        server = self.by_endpoint.get(source)
        if server is None or not data:
            self.drops["from_stranger"] += 1
            return []
        kind = data[0]
        try:
            if kind == PacketType.IDENTITY_RESPONSE:
                self._keys(server, data)
            elif kind == PacketType.HANDSHAKE_RESPONSE:
                self.table.handle_response(data, now)
            elif kind == PacketType.COOKIE_REPLY:
                self.table.handle_cookie_reply(data, now)  # the retry carries mac2
                return []
            elif kind == PacketType.TRANSPORT:
                self._transport(server, data, now)
            else:
                self.drops["unexpected_packet_type"] += 1
                return []
        except HandshakeRefused as refused:
            self.drops[refused.reason] += 1
            return []
        except (SessionError, ParseError):
            self.drops["rejected"] += 1
            return []
        if server.done:
            return []
        # Answered: the next step goes at once, not at the next retry.
        server.next_send_s = now + RETRY_S
        packet = self._next_packet(server, now)
        return [(packet, server.endpoint)] if packet is not None else []

    def _keys(self, server: Server, data: bytes) -> None:
        if server.identity is not None:
            self.drops["identity_response_unasked"] += 1
            return
        response = parse_or_none(IdentityResponse, data)
        if response is None:
            raise ParseError("identity response malformed")
        identity = PublicIdentity(response.x25519, response.ed25519)
        if server.expected_id is not None and identity.node_id != server.expected_id:
            server.error = f"its keys are not {format_node_id(server.expected_id)}'s (they hash to {format_node_id(identity.node_id)})"
            return
        server.identity = identity

    def _transport(self, server: Server, data: bytes, now: float) -> None:
        session, plaintext = self.table.open(memoryview(data), now)
        if session is not server.session:
            self.drops["transport_from_other_session"] += 1
            return
        kind, reply = parse_message(bytes(plaintext))
        if kind != MessageKind.PATH_PROBE_REPLY or reply.probe_id != server.probe_id:
            self.drops["not_our_probe_reply"] += 1
            return
        server.probe_id = None
        server.rtts_ms.append((now - server.probe_sent_s) * 1000.0)
        server.observed = tuple(reply.observed)  # type: ignore[assignment]

    # -- the verdict ------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """What `l2mesh netcheck --json` prints."""
        answered = [server for server in self.servers if server.observed is not None]
        symmetric, reason = mapping_verdict([server.observed for server in answered if server.observed is not None])
        return {
            "servers": [server.view() for server in self.servers],
            "endpoints": list(dict.fromkeys(endpoint_text(s.observed) for s in answered if s.observed is not None)),
            "symmetric": symmetric,
            "reason": reason,
            "latency_ms": {endpoint_text(s.endpoint): round(min(s.rtts_ms), 3) for s in answered if s.rtts_ms},
        }


def mapping_verdict(observed: list[Endpoint]) -> tuple[bool | None, str]:
    """Whether the NAT maps per destination (symmetric), from the addresses the servers that answered saw; why."""
    if len(observed) < 2:
        return None, (
            f"{len(observed)} server(s) answered: telling a NAT that maps per destination from one that does not "
            "takes two (a controller and a root, or two roots)"
        )
    if len(set(observed)) > 1:
        return True, "the servers see different addresses or ports: the NAT maps per destination (symmetric)"
    return False, "every server sees the same address and port: the NAT (if any) maps per source, not per destination"

