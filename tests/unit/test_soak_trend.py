"""The soak's trend test (benchmarks/soak_trend.py) on synthetic series: what a leak looks like, and what does not."""

from __future__ import annotations

import random

from benchmarks.soak_trend import MIN_SAMPLES, Sample, grows_without_bound, theil_sen

MIB = 2**20
RUN_S = 1800
EVERY_S = 10
BASE = 30 * MIB
ALLOWANCE = 1 * MIB


def series(shape: object, seed: int = 1, noise: float = 0.2 * MIB) -> list[Sample]:
    """A 30-minute run sampled every 10 s: shape(t) plus uniform noise of +-noise."""
    rng = random.Random(seed)
    return [(float(t), shape(t) + rng.uniform(-noise, noise)) for t in range(0, RUN_S + 1, EVERY_S)]  # type: ignore[operator]


def test_flat_series_with_noise_is_bounded() -> None:
    for seed in range(20):
        verdict = grows_without_bound(series(lambda t: BASE, seed), ALLOWANCE, 0.02)
        assert not verdict.grows and not verdict.too_short, (seed, verdict)


def test_gc_sawtooth_is_bounded() -> None:
    # Climbs 4 MiB over 150 s, falls back at each collection: far more than the allowance within a period.
    verdict = grows_without_bound(series(lambda t: BASE + (t % 150) / 150 * 4 * MIB), ALLOWANCE, 0.02)
    assert not verdict.grows, verdict


def test_steady_linear_leak_grows() -> None:
    # 4 MiB per hour: 2 MiB over the run, twice the allowance.
    verdict = grows_without_bound(series(lambda t: BASE + t * 4 * MIB / 3600), ALLOWANCE, 0.0)
    assert verdict.grows, verdict
    assert 3 * MIB < verdict.late_slope_per_s * 3600 < 5 * MIB


def test_leak_on_a_sawtooth_grows() -> None:
    verdict = grows_without_bound(series(lambda t: BASE + (t % 150) / 150 * 2 * MIB + t * 8 * MIB / 3600), ALLOWANCE, 0.02)
    assert verdict.grows, verdict


def test_step_then_flat_is_bounded() -> None:
    # A cache that fills once, 62 % into the run (late in the middle third of what is analysed), then stays.
    verdict = grows_without_bound(series(lambda t: BASE + (10 * MIB if t >= 0.62 * RUN_S else 0)), ALLOWANCE, 0.02)
    assert not verdict.grows, verdict
    # The level did rise: only the late slope (none) keeps it from failing.
    assert verdict.level_rise > ALLOWANCE * 5


def test_step_early_in_the_run_then_flat_is_bounded() -> None:
    verdict = grows_without_bound(series(lambda t: BASE + (10 * MIB if t >= 0.4 * RUN_S else 0)), ALLOWANCE, 0.02)
    assert not verdict.grows, verdict


def test_growth_during_the_warm_up_only_is_bounded() -> None:
    verdict = grows_without_bound(series(lambda t: BASE + min(t, 300) * 20 * MIB / 300), ALLOWANCE, 0.02)
    assert not verdict.grows, verdict


def test_slow_growth_within_the_allowance_is_bounded() -> None:
    # 0.5 MiB over the whole run: real, but under a 1 MiB allowance.
    verdict = grows_without_bound(series(lambda t: BASE + t * 0.5 * MIB / RUN_S, noise=0.05 * MIB), ALLOWANCE, 0.0)
    assert not verdict.grows, verdict


def test_small_integer_counts_leaking_one_per_minute_grow() -> None:
    # Open file descriptors: exact integers, one more every minute.
    samples = [(float(t), 40.0 + t // 60) for t in range(0, 1201, 10)]
    assert grows_without_bound(samples, 2.0).grows


def test_small_integer_counts_that_wobble_are_bounded() -> None:
    rng = random.Random(7)
    samples = [(float(t), 40.0 + rng.choice((0, 0, 0, 1, 2))) for t in range(0, 601, 10)]
    assert not grows_without_bound(samples, 2.0).grows


def test_too_few_samples_is_too_short_not_a_failure() -> None:
    samples = [(float(t), float(t) * MIB) for t in range(MIN_SAMPLES - 2)]
    verdict = grows_without_bound(samples, 1.0)
    assert verdict.too_short and not verdict.grows
    assert grows_without_bound([], 1.0).too_short


def test_theil_sen_ignores_an_outlier_and_brackets_the_slope() -> None:
    samples = [(float(t), 3.0 * t) for t in range(30)]
    samples[10] = (10.0, 1e9)
    slope, lower, upper = theil_sen(samples)
    assert slope == 3.0
    assert lower <= 3.0 <= upper
