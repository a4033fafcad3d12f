"""The peers a node trusts, found by node id, by static key (for handshakes) and by endpoint, with their sessions.

Only keys listed in a controller-signed config (or a controller's own,
verified against the network id) are peers, and only peers may complete a
handshake with us: the session table asks is_known().

Sessions are lazy. A member of our networks is held as a KnownMember (its
keys, endpoints and networks) and nothing is sent to it until there is
traffic: the first message to it, or its first handshake (or punch request)
to us, makes it a full Peer (peer() and peer_by_static()). A member Peer
with no traffic either way for SessionLimits.idle_peer_forget_s, and no keys
or handshake left, is folded back into its KnownMember (forget_idle()), so
a network of thousands costs each member a few hundred bytes per idle peer
and periodic work only for the peers in use.
"""

from __future__ import annotations

from collections.abc import Container

from l2mesh.crypto.timers import SessionLimits
from l2mesh.identity import PublicIdentity
from l2mesh.node.peers import KnownMember, Peer
from l2mesh.session import Session, SessionTable
from l2mesh.wire.common import Endpoint

# Idle peers are looked for this often: the idle time is minutes, a few seconds late is nothing.
IDLE_SWEEP_INTERVAL_S = 5.0


class PeerTable:
    def __init__(self, x25519_private: bytes, limits: SessionLimits) -> None:
        # Peers with state: members with traffic, controllers, roots.
        self.by_id: dict[int, Peer] = {}
        self.by_static: dict[bytes, Peer] = {}
        self.at: dict[Endpoint, Peer] = {}  # by current direct endpoint: who lost our keys, by address
        # Every member of the networks we are on, idle or not.
        self.known: dict[int, KnownMember] = {}
        self.known_static: dict[bytes, KnownMember] = {}
        # By the endpoints configs list (and where they were last reached): undecryptable traffic from there
        # means the member lost our keys, or we lost theirs by restarting; a handshake heals either.
        self.known_at: dict[Endpoint, KnownMember] = {}
        self.limits = limits
        self.sessions = SessionTable(x25519_private, self.is_known, limits)
        self._next_idle_sweep_s = 0.0

    def is_known(self, remote_static: bytes) -> bool:
        return remote_static in self.by_static or remote_static in self.known_static

    # -- members, from the configs -------------------------------------------------------------------
    def know(self, node_id: int, identity: PublicIdentity, endpoints: tuple[Endpoint, ...], networks: tuple[int, ...]) -> None:
        """A member of our networks as its config lists it; its Peer, if it has one, follows the config."""
        member = self.known.get(node_id)
        if member is not None and member.identity != identity:
            self.unknow(node_id)
            member = None
        if member is None:
            member = KnownMember(node_id, identity, endpoints, networks)
            self.known[node_id] = member
            self.known_static[identity.x25519_public] = member
            self._index(member)
        else:
            if member.endpoints != endpoints:
                self._unindex(member)
                member.endpoints = endpoints
                self._index(member)
            member.networks = networks
        peer = self.by_id.get(node_id)
        if peer is None:
            return
        if peer.identity != identity:
            self.forget(peer)  # new keys under this id: nothing of the old peer holds
            return
        peer.networks = networks
        peer.candidates = list(endpoints)
        if peer.endpoint is None and peer.candidates:
            self.set_endpoint(peer, peer.candidates[0])

    def unknow(self, node_id: int) -> None:
        """A member no longer on any of our networks: cut off (unless it is also a controller or root)."""
        member = self.known.pop(node_id, None)
        if member is not None:
            self.known_static.pop(member.identity.x25519_public, None)
            self._unindex(member)
        peer = self.by_id.get(node_id)
        if peer is not None and not (peer.is_controller or peer.is_root):
            self.forget(peer)

    def keep_only(self, node_ids: Container[int]) -> None:
        """Cut off every member not in node_ids (controllers and roots stay)."""
        for node_id in [n for n in self.known if n not in node_ids]:
            self.unknow(node_id)
        for peer in [p for n, p in self.by_id.items() if n not in node_ids and not (p.is_controller or p.is_root)]:
            self.forget(peer)

    def _index(self, member: KnownMember) -> None:
        for endpoint in member.endpoints:
            self.known_at[endpoint] = member
        if member.last_endpoint is not None:
            self.known_at[member.last_endpoint] = member

    def _unindex(self, member: KnownMember) -> None:
        known_at = self.known_at
        for endpoint in (*member.endpoints, member.last_endpoint):
            if endpoint is not None and known_at.get(endpoint) is member:
                del known_at[endpoint]

    def node_at(self, endpoint: Endpoint) -> int | None:
        """Who lives at this address: a peer's current endpoint, else a known member's listed or last one."""
        peer = self.at.get(endpoint)
        if peer is not None:
            return peer.node_id
        member = self.known_at.get(endpoint)
        return None if member is None else member.node_id

    def idle_members(self) -> list[KnownMember]:
        """Known members without a Peer (no traffic lately)."""
        by_id = self.by_id
        return [member for node_id, member in self.known.items() if node_id not in by_id]

    # -- peers ---------------------------------------------------------------------------------------------
    def peer(self, node_id: int, now: float) -> Peer | None:
        """The peer with this id, made from its KnownMember if it was idle (traffic starts); None if unknown."""
        peer = self.by_id.get(node_id)
        if peer is not None:
            return peer
        member = self.known.get(node_id)
        return None if member is None else self._activate(member, now)

    def peer_by_static(self, remote_static: bytes, now: float) -> Peer | None:
        """As peer(), by static key (an initiation from an idle member)."""
        peer = self.by_static.get(remote_static)
        if peer is not None:
            return peer
        member = self.known_static.get(remote_static)
        return None if member is None else self._activate(member, now)

    def _activate(self, member: KnownMember, now: float) -> Peer:
        candidates = list(member.endpoints)
        last = member.last_endpoint
        if last is not None and last not in candidates:
            candidates.insert(0, last)
        peer = Peer(member.node_id, member.identity, candidates, networks=member.networks, since_s=now)
        self.add(peer)
        first = member.first_endpoint
        if first is not None:
            self.set_endpoint(peer, first)
        return peer

    def add(self, peer: Peer) -> None:
        self.by_id[peer.node_id] = peer
        self.by_static[peer.identity.x25519_public] = peer

    def set_endpoint(self, peer: Peer, endpoint: Endpoint) -> None:
        if peer.endpoint is not None and self.at.get(peer.endpoint) is peer:
            del self.at[peer.endpoint]
        peer.endpoint = endpoint
        self.at[endpoint] = peer

    def forget(self, peer: Peer) -> None:
        """Cut a peer off: its session and queued messages go with it (its KnownMember, if any, stays)."""
        if peer.endpoint is not None and self.at.get(peer.endpoint) is peer:
            del self.at[peer.endpoint]
        del self.by_id[peer.node_id]
        self.by_static.pop(peer.identity.x25519_public, None)
        self.sessions.remove(peer.identity.x25519_public)
        peer.session = None
        peer.drop_queue()

    def session_of(self, peer: Peer) -> Session:
        """The peer's session, created (without keys yet) if it has none."""
        if peer.session is None:
            peer.session = self.sessions.session_for(peer.identity.x25519_public)
        return peer.session

    # -- idle peers ------------------------------------------------------------------------------------------
    def forget_idle(self, now: float) -> None:
        """Fold member peers that went idle back into their KnownMembers (see the module's docstring)."""
        if now < self._next_idle_sweep_s:
            return
        self._next_idle_sweep_s = now + IDLE_SWEEP_INTERVAL_S
        idle_after_s = self.limits.idle_peer_forget_s
        for peer in [p for p in self.by_id.values() if self._is_idle(p, now, idle_after_s)]:
            member = self.known[peer.node_id]
            self._unindex(member)
            # Where it answered directly, to try first next time; a relayed or never-reached path is not kept.
            member.last_endpoint = peer.endpoint if peer.direct_proven_s is not None and not peer.via_relay else None
            self._index(member)
            self.forget(peer)

    def _is_idle(self, peer: Peer, now: float, idle_after_s: float) -> bool:
        if peer.is_controller or peer.is_root or peer.queue or peer.node_id not in self.known:
            return False
        session = peer.session
        if session is not None and not session.spent:
            return False  # keys a packet could still use, or a handshake under way
        return now - peer.last_activity_s() >= idle_after_s
