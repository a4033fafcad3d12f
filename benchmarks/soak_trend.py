"""The soak's trend test: does a series of (time, value) samples grow without bound? Sans-IO, no clock.

A leak test must not fail on one high sample, on a garbage collector's
sawtooth, or on a cache that fills once and then stays full; it must fail on
a figure that is still climbing when the run ends. The rule:

1. Drop the warm-up: the first WARMUP_FRACTION of the series' time span
   (imports, first sessions, allocator arenas filling).
2. Split what is left into three equal spans of time. The level rise is
   median(last third) - median(middle third): medians, so a GC peak or one
   odd sample moves neither.
3. The late slope is the Theil-Sen slope (the median of all pairwise slopes)
   over the last half of what is left, with Sen's 95 % confidence interval
   from the ranks of those slopes. Its lower bound is the slowest growth the
   samples are consistent with; a step that has already levelled off, a
   sawtooth or noise all give a lower bound at or under zero.
4. The series grows without bound when BOTH
   - the lower bound of the late slope times the analysed span (what the
     series would still add over another run as long) exceeds the
     allowance: max(allowance_abs, allowance_rel x median(middle third));
   - and the level rise exceeds a third of the allowance (the same rate over
     the one third of the span that separates the two medians), so a slope
     the medians do not bear out (a sawtooth's phase) is not enough.

Fewer than MIN_SAMPLES samples after the warm-up cannot tell: the verdict is
"too short", which is not a failure.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

WARMUP_FRACTION = 0.2
MIN_SAMPLES = 12
# The normal quantile for a two-sided 95 % interval (Sen 1968, from Kendall's tau).
Z_95 = 1.96

Sample = tuple[float, float]  # (time in seconds, value)


@dataclass(frozen=True)
class TrendVerdict:
    """What the trend test concluded about one series, with the figures it used."""

    grows: bool
    too_short: bool
    samples_used: int
    middle_median: float
    last_median: float
    level_rise: float
    late_slope_per_s: float
    late_slope_lower_per_s: float
    projected_growth: float  # late_slope_lower_per_s x the analysed span
    allowance: float

    @property
    def label(self) -> str:
        return "too short" if self.too_short else "GROWS" if self.grows else "bounded"

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.label,
            "samples_used": self.samples_used,
            "middle_median": self.middle_median,
            "last_median": self.last_median,
            "level_rise": self.level_rise,
            "late_slope_per_h": self.late_slope_per_s * 3600,
            "late_slope_lower_per_h": self.late_slope_lower_per_s * 3600,
            "projected_growth": self.projected_growth,
            "allowance": self.allowance,
        }


def theil_sen(samples: Sequence[Sample], z: float = Z_95) -> tuple[float, float, float]:
    """(slope, lower bound, upper bound): the median pairwise slope and Sen's confidence interval at quantile z.

    Pairs at the same time carry no slope and are left out. With no pair at
    all the slope is 0 with an infinite interval.
    """
    slopes = sorted(
        (v2 - v1) / (t2 - t1)
        for i, (t1, v1) in enumerate(samples)
        for t2, v2 in samples[i + 1:]
        if t2 != t1
    )
    if not slopes:
        return 0.0, -math.inf, math.inf
    n = len(samples)
    pairs = len(slopes)
    # Kendall's S has variance n(n-1)(2n+5)/18 without ties; the interval's ends
    # are the slopes that many ranks either side of the median.
    spread = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lower_rank = math.floor((pairs - spread) / 2)
    upper_rank = math.ceil((pairs + spread) / 2)
    lower = slopes[lower_rank] if lower_rank >= 0 else -math.inf
    upper = slopes[upper_rank] if upper_rank < pairs else math.inf
    return statistics.median(slopes), lower, upper


def _between(samples: Sequence[Sample], start_s: float, end_s: float) -> list[Sample]:
    return [s for s in samples if start_s <= s[0] <= end_s]


def grows_without_bound(samples: Sequence[Sample], allowance_abs: float, allowance_rel: float = 0.0) -> TrendVerdict:
    """The verdict of the module docstring's rule on samples (any order)."""
    ordered = sorted(samples)
    if not ordered:
        return TrendVerdict(False, True, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, allowance_abs)
    first_s, last_s = ordered[0][0], ordered[-1][0]
    start_s = first_s + WARMUP_FRACTION * (last_s - first_s)
    kept = _between(ordered, start_s, last_s)
    span_s = last_s - start_s
    third_s = span_s / 3
    middle = _between(kept, start_s + third_s, start_s + 2 * third_s)
    last = _between(kept, start_s + 2 * third_s, last_s)
    if len(kept) < MIN_SAMPLES or not middle or not last:
        return TrendVerdict(False, True, len(kept), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, allowance_abs)
    middle_median = statistics.median(v for _, v in middle)
    last_median = statistics.median(v for _, v in last)
    allowance = max(allowance_abs, allowance_rel * abs(middle_median))
    slope, lower, _ = theil_sen(_between(kept, start_s + span_s / 2, last_s))
    projected = lower * span_s if math.isfinite(lower) else 0.0
    level_rise = last_median - middle_median
    grows = projected > allowance and level_rise > allowance / 3
    return TrendVerdict(grows, False, len(kept), middle_median, last_median, level_rise, slope,
                        lower if math.isfinite(lower) else 0.0, projected, allowance)
