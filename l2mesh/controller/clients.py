"""Who is talking to this controller: one Client per Noise session, known by node id once it proves its keys.

Members reach the controller over the same Noise IK sessions as peers use
between themselves, and any static key may open one (anyone may ask to
join). A session names its node with its first netconf request; one that
has not done so within UNIDENTIFIED_CLIENT_S is dropped, so nobody can park
state here. A client that sent anything within ONLINE_WINDOW_S is online:
it gets pushes, and the relay forwards to it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from l2mesh.crypto.timers import DEFAULT_LIMITS
from l2mesh.identity import PublicIdentity
from l2mesh.netconf import usable_endpoint
from l2mesh.session import Session, SessionAction, SessionTable
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import MessageKind

ONLINE_WINDOW_S = 120.0
UNIDENTIFIED_CLIENT_S = 10.0
MAX_UNIDENTIFIED_CLIENTS = 10_000
MAX_LOCAL_ENDPOINTS = 8
MAX_NETWORKS_PER_CLIENT = 64
# Anyone may handshake; the overall rate stays below what one core can answer.
CONTROLLER_SESSION_LIMITS = replace(DEFAULT_LIMITS, handshake_rate_total_per_s=1000.0)


@dataclass(eq=False)
class Client:
    """A node talking to this controller, known by its session's static key."""

    session: Session
    endpoint: Endpoint
    node_id: int | None = None
    identity: PublicIdentity | None = None
    networks: set[int] = field(default_factory=set)
    last_seen_s: float = 0.0
    local_endpoints: list[Endpoint] = field(default_factory=list)
    first_seen_s: float = 0.0
    # Set when the member reaches us only through a root (we sit behind a NAT it cannot cross):
    # `endpoint` is then the root's, and what we send it goes there in a relay envelope.
    via_root: bool = False
    is_root: bool = False  # a root we registered with, not a member

    @property
    def reachable_at(self) -> Endpoint | None:
        """Its own address as we see it, None when only a root's relay reaches it."""
        return None if self.via_root else self.endpoint

    def online(self, now: float) -> bool:
        return now - self.last_seen_s <= ONLINE_WINDOW_S

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Where peers may reach it: its address as we see it, then the local ones it told us."""
        if self.via_root:
            return tuple(self.local_endpoints)
        return (self.endpoint, *self.local_endpoints)


class Clients:
    def __init__(self, private_key: bytes, drops: Counter[str]) -> None:
        self.table = SessionTable(private_key, limits=CONTROLLER_SESSION_LIMITS)
        self.by_static: dict[bytes, Client] = {}
        self.by_node: dict[int, Client] = {}
        self.drops = drops
        self._unidentified: set[bytes] = set()  # static keys of sessions that have not named their node
        self.roots_by_static: dict[bytes, int] = {}

    # -- packets ------------------------------------------------------------------------------------
    def handshake_initiation(self, data: memoryview, source: Endpoint, now: float, via_root: int | None = None) -> bytes | None:
        """The handshake response to send back, or None when refused. SessionError on a bad handshake.

        via_root: the envelope's origin, when a root relayed it (rate-limited per origin, not per root).
        """
        if len(self._unidentified) >= MAX_UNIDENTIFIED_CLIENTS:
            self.drops["too_many_unidentified_clients"] += 1
            return None
        result = self.table.handle_initiation(data, now, source[0] if via_root is None else ("relay", via_root))
        self._client(result.session, source, now, via_root is not None)
        assert result.response is not None
        return result.response

    def handshake_response(self, data: memoryview, source: Endpoint, now: float, via_root: bool = False) -> Client:
        """The client whose session (one we opened, see greeting) this response completes."""
        result = self.table.handle_response(data, now)
        return self._client(result.session, source, now, via_root)

    def open(self, data: memoryview, source: Endpoint, now: float, via_root: bool = False) -> tuple[Client, bytes]:
        """The sender of a transport packet, and its message. SessionError when it does not open."""
        session, plaintext = self.table.open(data, now)
        message = bytes(plaintext)
        if message and message[0] != MessageKind.KEEPALIVE:
            session.last_data_received_s = now
        return self._client(session, source, now, via_root), message

    def _client(self, session: Session, source: Endpoint, now: float, via_root: bool) -> Client:
        client = self.by_static.get(session.remote_static)
        if client is None or client.session is not session:
            client = self.by_static[session.remote_static] = Client(session, source, first_seen_s=now)
            root_id = self.roots_by_static.get(session.remote_static)
            if root_id is not None:
                client.is_root, client.node_id = True, root_id
            else:
                self._unidentified.add(session.remote_static)
        client.endpoint = source
        client.via_root = via_root
        client.last_seen_s = now
        return client

    def add_root(self, identity: PublicIdentity) -> None:
        """A root we register with: its sessions are ours to open and never count as unidentified members."""
        self.roots_by_static[identity.x25519_public] = identity.node_id

    def greeting(self, identity: PublicIdentity, now: float) -> bytes | None:
        """A handshake initiation towards a known member (after a restart), unless one is pending."""
        session = self.table.session_for(identity.x25519_public)
        if session.pending is not None:
            return None
        return session.create_initiation(now)

    # -- what clients are -----------------------------------------------------------------------------
    def identify(self, client: Client, node_id: int, identity: PublicIdentity, network_id: int) -> None:
        """The client proved the keys we hold for node_id (a netconf request): it speaks for that node now."""
        client.node_id, client.identity = node_id, identity
        self.by_node[node_id] = client
        self._unidentified.discard(client.session.remote_static)
        if len(client.networks) < MAX_NETWORKS_PER_CLIENT:
            client.networks.add(network_id)

    @staticmethod
    def set_local_endpoints(client: Client, endpoints: list[Endpoint]) -> None:
        # Checked: they go into every member's config.
        client.local_endpoints = [e for e in endpoints if usable_endpoint(e)][:MAX_LOCAL_ENDPOINTS]

    def online(self, node_id: int, now: float) -> Client | None:
        client = self.by_node.get(node_id)
        return client if client is not None and client.online(now) else None

    def online_in(self, network_id: int, now: float) -> list[Client]:
        """Online clients that asked for this network."""
        return [c for c in self.by_static.values() if network_id in c.networks and c.online(now)]

    def identified(self) -> int:
        return sum(1 for c in self.by_static.values() if c.node_id is not None)

    # -- timers -------------------------------------------------------------------------------------------
    def poll(self, now: float) -> list[Client]:
        """Forget expired sessions and clients that never named their node; the clients owed a keepalive."""
        keepalives = []
        for session, action in self.table.poll(now):
            if action & SessionAction.EXPIRED:
                gone = self.by_static.pop(session.remote_static, None)
                if gone is not None and gone.node_id is not None and self.by_node.get(gone.node_id) is gone:
                    del self.by_node[gone.node_id]
            elif action & SessionAction.SEND_KEEPALIVE:
                client = self.by_static.get(session.remote_static)
                if client is not None:
                    keepalives.append(client)
        for remote_static in list(self._unidentified):
            client = self.by_static.get(remote_static)
            if client is None or client.node_id is not None:
                self._unidentified.discard(remote_static)
            elif now - client.first_seen_s > UNIDENTIFIED_CLIENT_S:
                del self.by_static[remote_static]
                self._unidentified.discard(remote_static)
                self.table.remove(remote_static)
        return keepalives
