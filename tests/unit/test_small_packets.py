"""benchmarks/small_packets.py: the figures net.py reports for issue 17, and its verdicts, from known inputs."""

from __future__ import annotations

from typing import Any

from benchmarks.small_packets import judge, median_of, summarize_small, udp_delivered


def udp_report(received_bytes: int, seconds: float, lost_percent: float) -> dict[str, Any]:
    return {"end": {"sum_received": {"bytes": received_bytes, "seconds": seconds, "lost_percent": lost_percent}}}


def row(avg_02: float, max_001: float, avg_001: float, pps64: int, rss: int | None = None) -> dict[str, Any]:
    return {
        "ping_0_2": {"avg_ms": avg_02, "max_ms": avg_02 * 2},
        "ping_0_01": {"avg_ms": avg_001, "max_ms": max_001},
        "udp64": {"pps": pps64, "loss_pct": 1.0},
        "udp1400": {"pps": pps64 // 2, "loss_pct": 2.0},
        "rss_idle_bytes": {"a": rss, "b": rss - 1} if rss else {},
        "rss_load_bytes": {"a": rss + 10, "b": rss} if rss else {},
    }


def test_delivered_packets_per_second_come_from_the_receivers_bytes() -> None:
    assert udp_delivered(udp_report(64 * 50_000, 2.0, 12.5), 64) == {"pps": 25_000, "loss_pct": 12.5}


def test_medians_skip_rounds_without_the_figure() -> None:
    rows = [{"udp64": {"pps": 10}}, {"udp64": {"pps": 30}}, {}, {"udp64": {"pps": 20}}]
    assert median_of(rows, "udp64", "pps") == 20
    assert median_of(rows[:2], "udp64", "pps") == 20
    assert median_of([{}], "udp64", "pps") is None


def test_summary_takes_the_worst_daemon_per_round_then_the_median_over_rounds() -> None:
    summary = summarize_small([row(0.5, 2.0, 0.6, 100, rss=30), row(0.7, 3.0, 0.8, 300, rss=50), row(0.6, 1.0, 0.7, 200, rss=40)])
    assert summary["udp64"]["pps"] == 200 and summary["ping_0_01"]["max_ms"] == 2.0
    assert summary["rss_idle_bytes"] == 40 and summary["rss_load_bytes"] == 50


def summary_of(**systems: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: summarize_small([r]) for name, r in systems.items()}


def test_verdicts_compare_added_rtt_with_tincs_and_udp_with_the_raw_path() -> None:
    summary = summary_of(underlay=row(0.05, 0.2, 0.05, 100_000), tinc=row(0.35, 1.5, 0.35, 30_000),
                         l2mesh=row(0.30, 1.8, 0.40, 45_000))
    verdict = judge(summary)
    assert verdict["ping_0_2_added_met"] and not verdict["ping_0_01_added_met"]
    assert verdict["worst_reply_allowed_ms"] == 2.0 and verdict["worst_reply_met"]  # 2 ms when tinc's worst is better
    assert verdict["udp64_ratio_to_underlay"] == 0.45 and verdict["udp64_met"]


def test_without_tinc_the_rtt_verdicts_are_unknown_not_passed() -> None:
    verdict = judge(summary_of(underlay=row(0.05, 0.2, 0.05, 100_000), l2mesh=row(0.3, 5.0, 0.4, 30_000)))
    assert verdict["ping_0_2_added_met"] is None and verdict["ping_0_01_added_met"] is None
    assert verdict["worst_reply_met"] is False and verdict["udp64_met"] is False
