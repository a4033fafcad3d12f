"""The root's protocol core, sans-IO: takes datagrams (from UDP, or framed over a TCP stream) and time, sends answers.

Anyone may open a Noise session (l2mesh.session_server) and register under
the node id its keys prove (registry.py). Over that session a node asks
where another node is (only what that node registered comes back), asks
to meet one (both get punch hints at once), and probes the root for its
latency and public address. Relay envelopes need no session: they are
forwarded as is when their origin is registered at the very address they
came from, within its byte budget (l2mesh.relaying). No network or
authorization check: a root relays for any two registered nodes, as
ZeroTier's roots do; the budget bounds abuse. Nothing a packet holds makes
this core raise: what it cannot use is dropped and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from l2mesh.controller.defaults import DEFAULT_RELAY_LIMIT_MBPS
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import format_node_id
from l2mesh.ratelimit import KeyedLimit
from l2mesh.relaying import RelayBudget, RendezvousBudget, envelope_of, envelope_run_packets, may_hop, punch_hints
from l2mesh.root.registry import REGISTRATION_TTL_S, Registry
from l2mesh.session import Session, SessionError
from l2mesh.session_server import FIRST_CONTACT_PACKETS, IdentityDesk, SessionClient, SessionServer, answer_first_contact
from l2mesh.wire.codec import parse_message
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import ParseError
from l2mesh.wire.messages import (
    ROOT_REGISTER_CONTEXT,
    Keepalive,
    MessageKind,
    PathProbeReply,
    RootLookupReply,
    RootRegistered,
)
from l2mesh.wire.packets import ANY_NODE_ID, RELAY_HEADER_BYTES, PacketType

LOOKUPS_PER_SESSION_PER_S = 20.0
LOOKUP_BURST = 50.0
# Nodes register every ~25 s and on each new session; each registration costs a signature check.
REGISTERS_PER_SESSION_PER_S = 1.0
REGISTER_BURST = 5.0
# Nodes probe a root every ROOT_PROBE_S (1 s); `l2mesh netcheck` a few more at once.
PATH_PROBES_PER_SESSION_PER_S = 5.0
PATH_PROBE_BURST = 20.0
MAX_LIMITED_SESSIONS = 65536
NO_KEY = bytes(32)


class Transmit(Protocol):
    """Where the root's datagrams go; the edge picks the transport (a live TCP stream to that address, else UDP)."""

    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None: ...

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None: ...


def _new_client(session: Session, source: Endpoint, now: float) -> SessionClient:
    return SessionClient(session, source, first_seen_s=now)


class RootCore:
    def __init__(self, identity: Identity, transmit: Transmit, relay_limit_mbps: int = DEFAULT_RELAY_LIMIT_MBPS) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.transmit = transmit
        self.drops: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        # One session per address: controller instances sharing one identity register from several.
        self.clients = SessionServer(identity.x25519_private, self.drops, _new_client, sessions_per_endpoint=True)
        self.registry = Registry(self.drops)
        self.relay = RelayBudget(relay_limit_mbps, self.drops)
        self._rendezvous = RendezvousBudget(self.drops)
        # Its own id, or any: a root given only as HOST:PORT is pinned on first use.
        self.identity_desk = IdentityDesk(identity, frozenset({self.node_id, ANY_NODE_ID}), self.drops)
        self._lookups = KeyedLimit("lookup_rate_limited", LOOKUPS_PER_SESSION_PER_S, LOOKUP_BURST, self.drops, MAX_LIMITED_SESSIONS)
        self._registers = KeyedLimit(
            "register_rate_limited", REGISTERS_PER_SESSION_PER_S, REGISTER_BURST, self.drops, MAX_LIMITED_SESSIONS
        )
        self._path_probes = KeyedLimit(
            "path_probe_rate_limited", PATH_PROBES_PER_SESSION_PER_S, PATH_PROBE_BURST, self.drops, MAX_LIMITED_SESSIONS
        )
        self._register_proof_suffix = self.node_id.to_bytes(5, "big")
        self._now_s = 0.0
        self._handlers: dict[MessageKind, Callable[[SessionClient, Any, Endpoint, bool], None]] = {
            MessageKind.ROOT_REGISTER: self._register,
            MessageKind.ROOT_LOOKUP: self._lookup,
            MessageKind.ENDPOINT_HINTS: self._meet,
            MessageKind.PATH_PROBE: self._path_probe,
            MessageKind.KEEPALIVE: lambda *_: None,
        }

    # -- datagrams --------------------------------------------------------------------------------
    def datagram_received(self, data: memoryview, source: Endpoint, now: float, stream: bool = False) -> None:
        """One datagram from source; stream: it came framed over a TCP connection from there."""
        self._now_s = now
        if not data:
            self.drops["empty_datagram"] += 1
            return
        kind = data[0]
        try:
            if kind == PacketType.RELAY:
                self._relay(data, source, now, 1, None)
            elif kind == PacketType.TRANSPORT:
                self._transport_received(data, source, now, stream)
            elif kind in FIRST_CONTACT_PACKETS:
                response = answer_first_contact(self.clients, self.identity_desk, kind, data, source, now)
                if response is not None:
                    self.transmit.send_datagram(response, source)
            else:
                # A root opens no sessions itself, so handshake responses are unexpected too.
                self.drops["unexpected_packet_type"] += 1
        except (SessionError, ParseError):
            self.drops[f"rejected_{PacketType(kind).name.lower()}"] += 1

    def segments_received(self, data: memoryview, segment_bytes: int, source: Endpoint, now: float, stream: bool = False) -> bool:
        """A run of same-size datagrams from one sender: forwarded in one send if all are one relay envelope."""
        packets = envelope_run_packets(data, segment_bytes)
        if packets is None:
            return False
        self._now_s = now
        self._relay(data, source, now, packets, segment_bytes)
        return True

    def _relay(self, data: memoryview, source: Endpoint, now: float, packets: int, segment_bytes: int | None) -> None:
        if len(data) <= RELAY_HEADER_BYTES:
            self.drops["relay_malformed"] += 1
            return
        hops, destination, origin = envelope_of(data)
        sender = self.registry.at(origin, source, now)
        if sender is None:
            # Only the registered node itself, from where it registered, may use its budget and name.
            self.drops["relay_spoofed_or_unregistered_source"] += 1
            return
        target = self.registry.newest(destination, now)
        if target is None:
            self.drops["relay_target_unregistered"] += 1
            return
        if not may_hop(hops):
            self.drops["relay_too_many_hops"] += 1
            return
        if not self.relay.take(origin, now, len(data), packets):
            return
        if segment_bytes is None:
            self.transmit.send_datagram(data, target.observed)
        else:
            self.transmit.send_segments(data, segment_bytes, target.observed)

    def _transport_received(self, data: memoryview, source: Endpoint, now: float, stream: bool) -> None:
        client, message = self.clients.open(data, source, now)
        kind, parsed = parse_message(message)
        handler = self._handlers.get(kind)
        if handler is None:
            self.drops["unhandled_message"] += 1
            return
        handler(client, parsed, source, stream)

    # -- messages on a session ------------------------------------------------------------------------
    def _register(self, client: SessionClient, request: Any, source: Endpoint, stream: bool) -> None:
        if not self._registers.take(client.session.key, self._now_s):
            return
        identity = PublicIdentity(client.session.remote_static, request.ed25519)
        proof = ROOT_REGISTER_CONTEXT + identity.x25519_public + self._register_proof_suffix
        if not identity.verify(proof, request.proof):
            self.drops["register_without_proof"] += 1
            return
        if client.node_id not in (None, identity.node_id):
            self.drops["client_changed_identity"] += 1
            return
        registration = self.registry.register(identity, source, [tuple(e) for e in request.local_endpoints], stream, self._now_s)
        if registration is None:
            return
        self.clients.name_client(client, identity.node_id, identity)
        self._send(client, RootRegistered.build({"ttl_s": REGISTRATION_TTL_S, "observed": source}), "registered")

    def _lookup(self, client: SessionClient, request: Any, source: Endpoint, stream: bool) -> None:
        if not self._lookups.take(client.session.remote_static, self._now_s):
            return
        node_id = request.node_id
        live = self.registry.live(node_id, self._now_s)
        if live:
            keys = live[0].identity
            reply = {"registered": True, "x25519": keys.x25519_public, "ed25519": keys.ed25519_public,
                     "endpoints": self.registry.endpoints(node_id, self._now_s)}
        else:
            reply = {"registered": False, "x25519": NO_KEY, "ed25519": NO_KEY, "endpoints": []}
        self._send(client, RootLookupReply.build({"node_id": node_id, **reply}), "lookup_reply")

    def _meet(self, client: SessionClient, hints: Any, source: Endpoint, stream: bool) -> None:
        """A registered node asks to meet another (ENDPOINT_HINTS with punch): both are told to probe now."""
        asker, peer = client.node_id, hints.node_id
        if asker is None or not hints.punch or peer == asker or not self.registry.live(asker, self._now_s):
            self.drops["endpoint_hints_refused"] += 1
            return
        peer_client = self.clients.by_node.get(peer)
        if peer_client is None or not self.registry.live(peer, self._now_s):
            self.drops["rendezvous_target_unregistered"] += 1
            return
        if not self._rendezvous.take(asker, peer, self._now_s):
            return
        self._send(client, punch_hints(peer, self.registry.endpoints(peer, self._now_s)), "punch_hints")
        self._send(peer_client, punch_hints(asker, self.registry.endpoints(asker, self._now_s)), "punch_hints")

    def _path_probe(self, client: SessionClient, probe: Any, source: Endpoint, stream: bool) -> None:
        if not self._path_probes.take(client.session.key, self._now_s):
            return
        # The reply tells the node its address as seen from here (its NAT mapping), as STUN would.
        self._send(client, PathProbeReply.build({"probe_id": probe.probe_id, "observed": source}), "path_probe_reply")

    def _send(self, client: SessionClient, message: bytes, what: str) -> None:
        packet = client.session.seal(message, self._now_s)
        if packet is None:
            self.drops["no_session_to_answer"] += 1
            return
        self.sent[what] += 1
        self.transmit.send_datagram(packet, client.endpoint)

    # -- timers -------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._now_s = now
        for client in self.clients.poll(now):
            self._send(client, Keepalive.build({}), "keepalive")
        self.registry.expire(now)

    def status(self) -> dict[str, Any]:
        return {
            "id": format_node_id(self.node_id),
            "registrations": self.registry.count,
            "registered_nodes": self.registry.nodes(),
            "sessions": len(self.clients.table.sessions),
            "relayed_packets": self.relay.relayed_packets,
            "relayed_bytes": self.relay.relayed_bytes,
            "drops": dict(self.drops),
            "sent": dict(self.sent),
        }
