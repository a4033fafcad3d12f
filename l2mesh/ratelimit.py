"""Token buckets, keyed or single, driven by the caller's clock (sans-IO), and how limit drops are named.

Every drop a limit makes is counted under a reason ending in RATE_LIMITED
(or one of BOUND_DROPS, for a table that is full): the edges log each such
reason once (l2mesh.edge.drop_log), so an operator learns that a limit is
being hit without a flood of log lines from the flood itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

RATE_LIMITED = "_rate_limited"
# Drops of a bounded table or queue being full: limits too, though not rates.
BOUND_DROPS = frozenset(
    {
        "too_many_unidentified_clients",
        "registry_full",
        "storage_backlog",
        "stream_too_many_connections",
        "stream_too_many_from_source",
        "fragment_memory_limit",
        "fragment_source_limit",
        "fragment_message_limit",
        "multicast_like_too_many_groups",
        "multicast_watch_limit",
    }
)


def is_limit_drop(reason: str) -> bool:
    """True for a drop reason that a limit (a rate, or a bound on a table) made."""
    return reason.endswith(RATE_LIMITED) or reason in BOUND_DROPS


class TokenBucket:
    __slots__ = ("rate_per_s", "burst", "_tokens", "_updated_s")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._updated_s: float | None = None

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self._updated_s is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated_s) * self.rate_per_s)
        self._updated_s = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


class KeyedRateLimiter:
    """One bucket per key, with a bound on how many keys are remembered (oldest forgotten first).

    The bound keeps a flood from spoofed sources from growing memory; a key
    forgotten that way starts again with a full bucket, so a per-key limit
    alone does not bound the total: pair it with a TokenBucket where the
    answer costs us (see KeyedLimit).
    """

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 4096) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[Hashable, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst)
        return bucket.take(now, cost)


class KeyedLimit:
    """A per-key rate with a bound on keys and, optionally, on the total; a refusal is counted as reason.

    One object per kind of input (identity requests, netconf requests, ...):
    the entry point calls take(key, now) and drops the input when False.
    """

    def __init__(
        self, reason: str, rate_per_s: float, burst: float, drops: Counter[str],
        max_keys: int = 4096, total_per_s: float | None = None,
    ) -> None:
        assert reason.endswith(RATE_LIMITED), reason
        self.reason = reason
        self.per_key = KeyedRateLimiter(rate_per_s, burst, max_keys)
        self.total = TokenBucket(total_per_s, total_per_s) if total_per_s is not None else None
        self.drops = drops

    def take(self, key: Hashable, now: float) -> bool:
        total = self.total
        if self.per_key.take(key, now) and (total is None or total.take(now)):
            return True
        self.drops[self.reason] += 1
        return False
