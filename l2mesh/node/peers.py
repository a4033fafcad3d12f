"""What a node keeps per peer: keys it trusts, where to reach it, frames waiting for a handshake, counters."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from l2mesh.identity import PublicIdentity
from l2mesh.session import Session
from l2mesh.udp import Endpoint

QUEUE_LIMIT_MESSAGES = 256


@dataclass(eq=False)
class Peer:
    node_id: int
    identity: PublicIdentity
    candidates: list[Endpoint] = field(default_factory=list)
    endpoint: Endpoint | None = None
    networks: set[int] = field(default_factory=set)
    is_controller: bool = False
    session: Session | None = None
    queue: deque[bytes] = field(default_factory=lambda: deque(maxlen=QUEUE_LIMIT_MESSAGES))
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    last_rx_s: float | None = None
    latency_ms: float | None = None
    candidate_cursor: int = 0

    def next_candidate(self) -> Endpoint | None:
        """Rotate through known endpoints (used while a handshake gets no answer)."""
        if not self.candidates:
            return self.endpoint
        # Skip the endpoint in use: it is the one that just went unanswered.
        for _ in range(len(self.candidates)):
            endpoint = self.candidates[self.candidate_cursor % len(self.candidates)]
            self.candidate_cursor += 1
            if endpoint != self.endpoint:
                return endpoint
        return self.endpoint

    @property
    def path(self) -> str:
        if self.session is None or not self.session.established or self.endpoint is None:
            return "none"
        return "direct"
