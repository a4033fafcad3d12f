"""Members' last-seen times: noted per packet in memory, written to storage in one batch every SEEN_FLUSH_INTERVAL_S.

They are runtime facts for `member list`, not admin changes: a crash may
lose the last interval's, and writing them never touches anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from l2mesh.controller.changes import Committed
from l2mesh.controller.storage import Storage

SEEN_FLUSH_INTERVAL_S = 10.0


@dataclass(frozen=True)
class SeenTimes:
    rows: tuple[tuple[int, int, float], ...]  # (network id, node id, wall time)

    def commit(self, storage: Storage) -> Committed:
        storage.record_seen(list(self.rows))
        return Committed(seen=self.rows)

    def failed(self) -> Committed:
        return Committed(failed=True, drops=("storage_write_failed",))


class SeenTracker:
    def __init__(self) -> None:
        self._heard: set[tuple[int, int]] = set()  # (network id, node id) since the last flush
        self._next_flush_s = 0.0

    def heard(self, network_id: int, node_id: int) -> None:
        self._heard.add((network_id, node_id))

    def due(self, now: float, last_heard_wall_s: Callable[[int], float | None]) -> SeenTimes | None:
        """Once per interval, the times of the members heard from (by node id, as wall time), if any."""
        if now < self._next_flush_s:
            return None
        self._next_flush_s = now + SEEN_FLUSH_INTERVAL_S
        rows = []
        for network_id, node_id in self._heard:
            wall_s = last_heard_wall_s(node_id)
            if wall_s is not None:
                rows.append((network_id, node_id, wall_s))
        self._heard.clear()
        return SeenTimes(tuple(sorted(rows))) if rows else None
