"""benchmarks/memory.py's in-process figure: bytes per peer in use, from the object graph of one core."""

from __future__ import annotations

from benchmarks.memory import session_bytes
from benchmarks.scale import retained_bytes


def test_retained_bytes_counts_what_hangs_off_the_root_and_stops_at_what_is_outside() -> None:
    big_outsider = bytes(1_000_000)
    root = {"own": bytes(5_000), "shared": big_outsider, "nested": [bytes(3_000)]}
    counted = retained_bytes(root, [big_outsider])
    assert 8_000 < counted < 20_000
    assert retained_bytes(root, []) > 1_000_000


def test_a_peer_in_use_costs_a_few_kib_beyond_its_idle_record() -> None:
    figures = session_bytes(4)
    assert figures["core_in_use_bytes"] > figures["core_idle_bytes"]
    assert 1_000 < figures["bytes_per_session"] < 16_384  # 2.6 KiB measured at 100 peers (issue 17)
