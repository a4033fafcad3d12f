"""What a node keeps per peer: keys it trusts, where to reach it, frames waiting for a handshake, counters."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from l2mesh.identity import PublicIdentity
from l2mesh.session import Session
from l2mesh.wire.common import Endpoint

QUEUE_LIMIT_MESSAGES = 256


@dataclass(eq=False)
class Peer:
    node_id: int
    identity: PublicIdentity
    candidates: list[Endpoint] = field(default_factory=list)
    endpoint: Endpoint | None = None
    networks: set[int] = field(default_factory=set)
    is_controller: bool = False
    is_root: bool = False
    session: Session | None = None
    queue: deque[bytes] = field(default_factory=lambda: deque(maxlen=QUEUE_LIMIT_MESSAGES))
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    last_rx_s: float | None = None
    latency_ms: float | None = None
    last_frame_s: float = -1e18  # last frame sent to this peer: probes only run for peers in use
    probes: dict[int, float] = field(default_factory=dict)  # probe id -> sent at
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
    endpoint_rtt_ms: dict[Endpoint, float] = field(default_factory=dict)  # smoothed, per direct endpoint probed
    next_candidate_probe_s: float = 0.0

    @property
    def path(self) -> str:
        if self.session is None or not self.session.established:
            return "none"
        if self.via_relay:
            return "relay"
        return "direct" if self.endpoint is not None else "none"
