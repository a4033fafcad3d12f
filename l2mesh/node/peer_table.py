"""The peers a node trusts, found by node id, by static key (for handshakes) and by endpoint, with their sessions.

Only keys listed in a controller-signed config (or a controller's own,
verified against the network id) are peers, and only peers may complete a
handshake with us: the session table asks is_known().
"""

from __future__ import annotations

from l2mesh.crypto.timers import SessionLimits
from l2mesh.node.peers import Peer
from l2mesh.session import Session, SessionTable
from l2mesh.wire.common import Endpoint


class PeerTable:
    def __init__(self, x25519_private: bytes, limits: SessionLimits) -> None:
        self.by_id: dict[int, Peer] = {}
        self.by_static: dict[bytes, Peer] = {}
        self.at: dict[Endpoint, Peer] = {}  # by current direct endpoint: who lost our keys, by address
        self.sessions = SessionTable(x25519_private, self.is_known, limits)

    def is_known(self, remote_static: bytes) -> bool:
        return remote_static in self.by_static

    def add(self, peer: Peer) -> None:
        self.by_id[peer.node_id] = peer
        self.by_static[peer.identity.x25519_public] = peer

    def set_endpoint(self, peer: Peer, endpoint: Endpoint) -> None:
        if peer.endpoint is not None and self.at.get(peer.endpoint) is peer:
            del self.at[peer.endpoint]
        peer.endpoint = endpoint
        self.at[endpoint] = peer

    def forget(self, peer: Peer) -> None:
        """Cut a peer off: its session and queued messages go with it."""
        if peer.endpoint is not None and self.at.get(peer.endpoint) is peer:
            del self.at[peer.endpoint]
        del self.by_id[peer.node_id]
        self.by_static.pop(peer.identity.x25519_public, None)
        self.sessions.remove(peer.identity.x25519_public)
        peer.session = None
        peer.queue.clear()

    def session_of(self, peer: Peer) -> Session:
        """The peer's session, created (without keys yet) if it has none."""
        if peer.session is None:
            peer.session = self.sessions.session_for(peer.identity.x25519_public)
        return peer.session
