"""What a node keeps per peer: keys it trusts, where to reach it, frames waiting for a handshake, counters.

Two sizes. Every member of a network we are on is a KnownMember: its keys,
its endpoints from the config, its networks (a few hundred bytes with the
table entries). A Peer, with the queue, counters, path state and session,
exists only while there is traffic: made from the KnownMember on the first
message to or from the member, folded back into it when idle (peer_table.py).
Controllers and roots are always Peers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from l2mesh.identity import PublicIdentity
from l2mesh.session import Session
from l2mesh.wire.common import Endpoint

QUEUE_LIMIT_MESSAGES = 256


@dataclass(eq=False, slots=True)
class KnownMember:
    """A member of a network we share, as its config lists it: all we hold of it while no traffic flows."""

    node_id: int
    identity: PublicIdentity
    endpoints: tuple[Endpoint, ...]  # the config's own tuple, not a copy
    networks: tuple[int, ...]  # shared by every member of the same networks (networks.py interns them)
    # Where it answered directly when last active: the first place to try next time (it may have roamed
    # off the config's endpoints, e.g. behind a NAT).
    last_endpoint: Endpoint | None = None

    @property
    def first_endpoint(self) -> Endpoint | None:
        """Where traffic to it will go first."""
        if self.last_endpoint is not None:
            return self.last_endpoint
        return self.endpoints[0] if self.endpoints else None


@dataclass(eq=False, slots=True)
class Peer:
    node_id: int
    identity: PublicIdentity
    candidates: list[Endpoint] = field(default_factory=list)
    endpoint: Endpoint | None = None
    networks: tuple[int, ...] = ()
    is_controller: bool = False
    is_root: bool = False
    session: Session | None = None
    queue: deque[bytes] | None = None  # messages waiting for keys; made on first use, dropped once flushed
    since_s: float = -1e18  # when this Peer was made (an idle member's, on its first traffic)
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    last_rx_s: float | None = None
    latency_ms: float | None = None
    last_frame_s: float = -1e18  # last frame sent to this peer: probes only run for peers in use
    probes: dict[int, float] | None = None  # probe id -> sent at; made on the first probe
    next_probe_s: float = 0.0
    groups_sent_session: int = 0  # session generation our multicast groups were last announced on
    # We answered a handshake this peer (a controller) started: what we have to ask waits for its first packet
    # on the new keys, since a responder may not send on them before, and a restarted controller lost the old ones.
    awaiting_confirmation: bool = False
    # Paths (see paths.py): direct endpoint above, or a relay (a root, or the controller).
    via_relay: bool = False
    relay_id: int | None = None  # the node relaying for us when via_relay (for people: `l2mesh peers`)
    direct_rx_s: float | None = None  # last authenticated packet received directly
    direct_proven_s: float | None = None  # last round trip completed on the direct path
    relay_rx_s: float | None = None
    attempt_since_s: float | None = None  # trying to reach the peer since (no answer yet)
    next_punch_request_s: float = 0.0
    next_lookup_s: float = 0.0  # while relayed: when to ask the roots again where it is
    next_direct_retry_s: float = 0.0
    path_changes: int = 0
    # Smoothed, per direct endpoint probed; made on the first direct probe reply.
    endpoint_rtt_ms: dict[Endpoint, float] | None = None
    next_candidate_probe_s: float = 0.0

    @property
    def path(self) -> str:
        if self.session is None or not self.session.established:
            return "none"
        if self.via_relay:
            return "relay"
        return "direct" if self.endpoint is not None else "none"

    @property
    def queued(self) -> int:
        """Messages waiting for keys."""
        return 0 if self.queue is None else len(self.queue)

    def enqueue(self, message: bytes) -> bool:
        """Keep a message until keys are ready; False when the queue was full and its oldest message went."""
        queue = self.queue
        if queue is None:
            queue = self.queue = deque(maxlen=QUEUE_LIMIT_MESSAGES)
        full = len(queue) == QUEUE_LIMIT_MESSAGES
        queue.append(message)
        return not full

    def drop_queue(self) -> int:
        """Throw away what waits for keys (a handshake failed, the peer is cut off); how many went."""
        count = self.queued
        self.queue = None
        return count

    def last_activity_s(self) -> float:
        """The last time anything was sent to or received from this peer (or it was made)."""
        latest = self.since_s
        if self.last_rx_s is not None and self.last_rx_s > latest:
            latest = self.last_rx_s
        session = self.session
        if session is not None and session.last_sent_s > latest:
            latest = session.last_sent_s
        return latest
