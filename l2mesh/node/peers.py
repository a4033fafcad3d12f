"""What a node keeps per peer: keys it trusts, where to reach it, frames waiting for a handshake, counters."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from l2mesh.identity import PublicIdentity
from l2mesh.session import Session

QUEUE_LIMIT_MESSAGES = 256
Endpoint = tuple[str, int]


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
        endpoint = self.candidates[self.candidate_cursor % len(self.candidates)]
        self.candidate_cursor += 1
        return endpoint

    @property
    def path(self) -> str:
        if self.session is None or not self.session.established or self.endpoint is None:
            return "none"
        return "direct"
