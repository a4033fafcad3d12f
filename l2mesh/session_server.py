"""The responder side of Noise sessions for servers anyone may talk to (the controller, a root), sans-IO.

Nodes reach a server over the same Noise IK sessions as peers use between
themselves, and any static key may open one. A session is a client; it
names its node by proving its keys in a first request (a netconf request to
a controller, a registration to a root). One that has not done so within
UNIDENTIFIED_CLIENT_S is dropped, so nobody can park state here. What a
client is beyond that (networks, registrations) belongs to the server that
holds it: it passes a factory for its own Client subclass.

A root keeps one session per (static key, address) (sessions_per_endpoint):
controller instances that share one identity each register from their own
address and must each keep their session. A controller keeps one per key,
so a member that roams (NAT rebinding) takes its session along.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from l2mesh.crypto.timers import DEFAULT_LIMITS
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ratelimit import KeyedLimit
from l2mesh.session import HandshakeRefused, Session, SessionAction, SessionTable
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import parse_exact
from l2mesh.wire.messages import MessageKind
from l2mesh.wire.packets import IdentityRequest, IdentityResponse, PacketType

UNIDENTIFIED_CLIENT_S = 10.0
MAX_UNIDENTIFIED_CLIENTS = 10_000
# Anyone may handshake; the overall rate stays below what one core can answer.
SERVER_SESSION_LIMITS = replace(DEFAULT_LIMITS, handshake_rate_total_per_s=1000.0)
IDENTITY_REQUESTS_PER_SOURCE_PER_S = 5.0
IDENTITY_REQUEST_BURST_PER_SOURCE = 10.0
# Per source is not enough under spoofing (each new source starts with a full
# bucket); a real node asks once per start, so the total can be modest.
IDENTITY_REQUESTS_TOTAL_PER_S = 1000.0
MAX_IDENTITY_REQUEST_SOURCES = 4096


@dataclass(eq=False)
class SessionClient:
    """A node talking to this server, known by its session's static key (and by node id once proven)."""

    session: Session
    endpoint: Endpoint  # where its last packet came from
    node_id: int | None = None
    identity: PublicIdentity | None = None
    last_seen_s: float = 0.0
    first_seen_s: float = 0.0
    # Set when the node reaches us only through a root (we sit behind a NAT it cannot cross):
    # `endpoint` is then the root's, and what we send it goes there in a relay envelope.
    via_root: bool = False
    is_root: bool = False  # a root we opened a session to and register with, not a client

    @property
    def reachable_at(self) -> Endpoint | None:
        """Its own address as we see it; None when only a root's relay reaches it."""
        return None if self.via_root else self.endpoint


C = TypeVar("C", bound=SessionClient)


class SessionServer(Generic[C]):
    def __init__(
        self,
        private_key: bytes,
        drops: Counter[str],
        new_client: Callable[[Session, Endpoint, float], C],
        sessions_per_endpoint: bool = False,
    ) -> None:
        self.table = SessionTable(private_key, limits=SERVER_SESSION_LIMITS)
        self.sessions_per_endpoint = sessions_per_endpoint
        self.by_static: dict[Hashable, C] = {}  # by Session.key: the static key, or (static key, address)
        self.by_node: dict[int, C] = {}
        self.drops = drops
        self._new_client = new_client
        self._unidentified: set[Hashable] = set()  # keys of sessions that have not named their node
        self.roots_by_static: dict[bytes, int] = {}  # roots we register with (controller): sessions we open

    # -- packets ------------------------------------------------------------------------------------
    def handshake_initiation(self, data: memoryview, source: Endpoint, now: float, via_root: int | None = None) -> bytes | None:
        """What to send back (the handshake response, or a cookie reply when under load), or None when refused.

        SessionError on a bad handshake; refusals before any DH (mac1, cookie,
        rate) are counted here by reason. via_root: the envelope's origin, when
        a root relayed it (rate-limited per origin, not per root).
        """
        if len(self._unidentified) >= MAX_UNIDENTIFIED_CLIENTS:
            self.drops["too_many_unidentified_clients"] += 1
            return None
        rate_key = source[0] if via_root is None else ("relay", via_root)
        try:
            result = self.table.handle_initiation(
                data, now, rate_key, source if self.sessions_per_endpoint else None, source if via_root is None else rate_key
            )
        except HandshakeRefused as refused:
            self.drops[refused.reason] += 1
            return refused.cookie_reply
        self._client(result.session, source, now, via_root is not None)
        assert result.response is not None
        return result.response

    def handshake_response(self, data: memoryview, source: Endpoint, now: float, via_root: bool = False) -> C:
        """The client whose session (one we opened, see greeting) this response completes. SessionError when it does not."""
        result = self.table.handle_response(data, now)
        return self._client(result.session, source, now, via_root)

    def open(self, data: memoryview, source: Endpoint, now: float, via_root: bool = False) -> tuple[C, bytes]:
        """The sender of a transport packet, and its message. SessionError when it does not open."""
        session, plaintext = self.table.open(data, now)
        message = bytes(plaintext)
        if message and message[0] != MessageKind.KEEPALIVE:
            session.last_data_received_s = now
        return self._client(session, source, now, via_root), message

    def _client(self, session: Session, source: Endpoint, now: float, via_root: bool) -> C:
        client = self.by_static.get(session.key)
        if client is None or client.session is not session:
            client = self.by_static[session.key] = self._new_client(session, source, now)
            root_id = self.roots_by_static.get(session.remote_static)
            if root_id is not None:
                client.is_root, client.node_id = True, root_id
            else:
                self._unidentified.add(session.key)
        client.endpoint = source
        client.via_root = via_root
        client.last_seen_s = now
        return client

    def add_root(self, identity: PublicIdentity) -> None:
        """A root we register with: its sessions are ours to open and never count as unidentified clients."""
        self.roots_by_static[identity.x25519_public] = identity.node_id

    def greeting(self, identity: PublicIdentity, now: float) -> bytes | None:
        """A handshake initiation towards a known node (after a restart), unless one is pending."""
        session = self.table.session_for(identity.x25519_public)
        if session.pending is not None:
            return None
        return session.create_initiation(now)

    # -- who clients are ------------------------------------------------------------------------------
    def name_client(self, client: C, node_id: int, identity: PublicIdentity) -> None:
        """The client proved the keys behind node_id: it speaks for that node now (and is kept)."""
        client.node_id, client.identity = node_id, identity
        self.by_node[node_id] = client
        self._unidentified.discard(client.session.key)

    def identified(self) -> int:
        return sum(1 for c in self.by_static.values() if c.node_id is not None and not c.is_root)

    # -- timers -------------------------------------------------------------------------------------------
    def poll(self, now: float) -> list[C]:
        """Forget expired sessions and clients that never named their node; the clients owed a keepalive."""
        keepalives = []
        for session, action in self.table.poll(now):
            if action & SessionAction.EXPIRED:
                gone = self.by_static.pop(session.key, None)
                if gone is not None and gone.node_id is not None and self.by_node.get(gone.node_id) is gone:
                    del self.by_node[gone.node_id]
                    self._renamed(gone.node_id)
            elif action & SessionAction.SEND_KEEPALIVE:
                client = self.by_static.get(session.key)
                if client is not None:
                    keepalives.append(client)
        for key in list(self._unidentified):
            client = self.by_static.get(key)
            if client is None or client.node_id is not None:
                self._unidentified.discard(key)
            elif now - client.first_seen_s > UNIDENTIFIED_CLIENT_S:
                del self.by_static[key]
                self._unidentified.discard(key)
                self.table.remove(key)
        return keepalives

    def _renamed(self, node_id: int) -> None:
        """by_node lost node_id's client: another live session of the same node (an instance elsewhere) takes over."""
        for client in self.by_static.values():
            if client.node_id == node_id and not client.is_root:
                self.by_node[node_id] = client
                return


class IdentityDesk:
    """Answers IDENTITY_REQUESTs (a node fetching our public keys before its first handshake), rate-limited
    per source IP and in total.

    The answer is larger than the request, so without the limit a spoofed
    source would make us an amplifier.
    """

    def __init__(self, identity: Identity, answers_for: frozenset[int], drops: Counter[str]) -> None:
        public = identity.public
        self._response = IdentityResponse.build({"x25519": public.x25519_public, "ed25519": public.ed25519_public})
        self._answers_for = answers_for
        self._limit = KeyedLimit(
            "identity_request_rate_limited", IDENTITY_REQUESTS_PER_SOURCE_PER_S, IDENTITY_REQUEST_BURST_PER_SOURCE, drops,
            max_keys=MAX_IDENTITY_REQUEST_SOURCES, total_per_s=IDENTITY_REQUESTS_TOTAL_PER_S,
        )
        self.drops = drops

    def answer(self, data: memoryview, source: Endpoint, now: float) -> bytes | None:
        """The response to send back, or None (counted). ParseError on a malformed request."""
        request = parse_exact(IdentityRequest, data)
        if request.node_id not in self._answers_for:
            self.drops["identity_request_refused"] += 1
            return None
        if not self._limit.take(source[0], now):
            return None
        return self._response


# Packets from anyone, no session needed, answered straight back to their source.
FIRST_CONTACT_PACKETS = frozenset({PacketType.HANDSHAKE_INIT, PacketType.IDENTITY_REQUEST})


def answer_first_contact(server: SessionServer[C], desk: IdentityDesk, kind: int, data: memoryview, source: Endpoint, now: float) -> bytes | None:
    """The answer to a FIRST_CONTACT_PACKETS packet (None: refused, counted). SessionError, ParseError when malformed."""
    if kind == PacketType.HANDSHAKE_INIT:
        return server.handshake_initiation(data, source, now)
    return desk.answer(data, source, now)
