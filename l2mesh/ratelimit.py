"""Token buckets, keyed or single, driven by the caller's clock (sans-IO)."""

from __future__ import annotations

from collections.abc import Hashable


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
    """One bucket per key, with a bound on how many keys are remembered (oldest forgotten first)."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 4096) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[Hashable, TokenBucket] = {}

    def take(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst)
        return bucket.take(now, cost)
