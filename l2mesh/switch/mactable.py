"""MACs learned behind bridge members: aging, and move detection that notices flapping."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

DEFAULT_MAC_AGING_S = 300.0
# A MAC seen moving between peers this often within the window is flapping:
# two bridges on one LAN, or a LAN cabled back into itself through the overlay.
FLAP_MOVES = 4
FLAP_WINDOW_S = 10.0
MAX_LEARNED_MACS = 16384


@dataclass
class LearnedMac:
    node_id: int
    last_seen_s: float
    moves: int = 0
    first_move_s: float = 0.0


class MacTable:
    def __init__(self, aging_s: float = DEFAULT_MAC_AGING_S, max_entries: int = MAX_LEARNED_MACS) -> None:
        self.aging_s = aging_s
        self.max_entries = max_entries
        self.entries: dict[bytes, LearnedMac] = {}
        self.events: Counter[str] = Counter()

    def lookup(self, mac: bytes, now: float) -> int | None:
        entry = self.entries.get(mac)
        if entry is None:
            return None
        if now - entry.last_seen_s > self.aging_s:
            del self.entries[mac]
            self.events["aged_out"] += 1
            return None
        return entry.node_id

    def learn(self, mac: bytes, node_id: int, now: float) -> bool:
        """Record that mac sits behind node_id; False when the MAC is flapping between nodes."""
        entry = self.entries.get(mac)
        if entry is None:
            if len(self.entries) >= self.max_entries:
                self._evict(now)
            self.entries[mac] = LearnedMac(node_id, now)
            self.events["learned"] += 1
            return True
        if entry.node_id != node_id:
            if now - entry.first_move_s > FLAP_WINDOW_S:
                entry.moves, entry.first_move_s = 0, now
            entry.moves += 1
            entry.node_id = node_id
            self.events["moved"] += 1
            entry.last_seen_s = now
            return entry.moves < FLAP_MOVES
        entry.last_seen_s = now
        return True

    def forget_node(self, node_id: int) -> None:
        for mac in [m for m, e in self.entries.items() if e.node_id == node_id]:
            del self.entries[mac]

    def expire(self, now: float) -> None:
        for mac in [m for m, e in self.entries.items() if now - e.last_seen_s > self.aging_s]:
            del self.entries[mac]
            self.events["aged_out"] += 1

    def _evict(self, now: float) -> None:
        self.expire(now)
        if len(self.entries) >= self.max_entries:
            oldest = min(self.entries, key=lambda m: self.entries[m].last_seen_s)
            del self.entries[oldest]
            self.events["evicted"] += 1
