"""How late the reactor runs its tick: a fixed-bucket histogram, cheap enough to fill on every tick.

The reactor asks epoll to wake it at the next tick; when it runs the tick
later than that, it was busy (a batch of packets, a slow callback) or not
scheduled. The lag is taken once per tick (every 100 ms), never per packet,
and kept here without prometheus_client, which the daemon imports only when
--metrics-listen is given (issue 17: an idle daemon under 25 MiB).
"""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds in seconds (Prometheus "le"); one more bucket catches everything above (+Inf).
LATENESS_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class LatenessHistogram:
    def __init__(self, bounds_s: tuple[float, ...] = LATENESS_BUCKETS_S) -> None:
        self.bounds_s = bounds_s
        self.counts = [0] * (len(bounds_s) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum_s = 0.0

    def observe(self, late_s: float) -> None:
        self.counts[bisect_left(self.bounds_s, late_s)] += 1
        self.sum_s += late_s

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (inf, all): Prometheus's buckets."""
        out, total = [], 0
        for bound, count in zip((*self.bounds_s, float("inf")), self.counts):
            total += count
            out.append((bound, total))
        return out
