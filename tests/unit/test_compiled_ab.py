"""benchmarks/compiled_ab.py: its summary figures from known rows."""

from __future__ import annotations

from typing import Any

from benchmarks.compiled_ab import medians, paired_ratios


def rows() -> list[dict[str, Any]]:
    return [
        {"tree": "pure", "round": 1, "udp64_pps": 40000, "cpu": {"h1": 10.0, "h2": 12.0}},
        {"tree": "compiled", "round": 1, "udp64_pps": 50000, "cpu": {"h1": 9.0, "h2": 10.0}},
        {"tree": "pure", "round": 2, "udp64_pps": 80000, "cpu": {"h1": 11.0, "h2": 11.0}},
        {"tree": "compiled", "round": 2, "udp64_pps": 60000, "cpu": None},
        {"tree": "pure", "round": 3, "udp64_pps": 60000, "cpu": {"h1": 10.0, "h2": 10.0}},
    ]


def test_medians_are_per_copy_and_sum_both_daemons() -> None:
    assert medians(rows(), "pure", "udp64_pps") == 60000
    assert medians(rows(), "compiled", "udp64_pps") == 55000
    assert medians(rows(), "pure", "cpu") == 22.0
    assert medians(rows(), "compiled", "cpu") == 19.0
    assert medians(rows(), "compiled", "missing") is None


def test_paired_ratios_only_compare_copies_measured_in_the_same_round() -> None:
    assert paired_ratios(rows(), "udp64_pps") == [1.25, 0.75]  # round 3 has no compiled half
    assert paired_ratios(rows(), "cpu") == [round(19 / 22, 3)]
