"""latency.py --cold: the interruption census of helpers/cold_probe.py and the probe's output as latency.py prints it."""

from __future__ import annotations

import time

import pytest

from benchmarks.helpers import cold_probe
from benchmarks.helpers.cold_probe import interruption_census
from benchmarks.latency import print_cold

US = 1000  # ns


def test_census_counts_only_steps_over_the_threshold() -> None:
    steps = [5 * US, 21 * US, 30 * US, 40 * US, 19 * US]
    census = interruption_census(steps, spun_ns=2_000_000_000, threshold_ns=20 * US)
    assert census["spun_s"] == 2.0
    assert census["per_s"] == 1.5  # 3 steps in 2 s
    assert census["p50_us"] == 30.0
    assert census["max_us"] == 40.0
    assert census["share_pct"] == pytest.approx(91 * US / 2e9 * 100, abs=0.01)


def test_census_of_an_uninterrupted_spin_is_all_zero() -> None:
    census = interruption_census([], spun_ns=10**9)
    assert census["per_s"] == 0.0 and census["max_us"] == 0.0 and census["share_pct"] == 0.0


def test_spin_stays_for_its_gap() -> None:
    start = time.perf_counter()
    cold_probe.spin(0.005)
    assert time.perf_counter() - start >= 0.005


def test_print_cold_shows_sleep_and_spin_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"work": "no-op", "wait": "sleep", "gap_ms": 0.0, "tries": 3, "p50_us": 0.1, "p90_us": 0.2},
        {"work": "no-op", "wait": "sleep", "gap_ms": 10.0, "tries": 3, "p50_us": 5.0, "p90_us": 8.0},
        {"work": "no-op", "wait": "spin", "gap_ms": 10.0, "tries": 3, "p50_us": 1.5, "p90_us": 5.0},
    ]
    print_cold({"rows": rows, "interruptions": interruption_census([30 * US], 10**9)})
    out = capsys.readouterr().out
    assert "no-op, sleep" in out and "0.1/0.2" in out and "5/8" in out
    spin_line = next(line for line in out.splitlines() if "no-op, spin" in line)
    assert spin_line.split()[2:] == ["-", "1.5/5"]  # no spin without a gap
    assert "1 interruptions/s" in out and "p50 30 µs" in out
