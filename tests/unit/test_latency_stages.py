"""latency.py --stages: a daemon's stage log into hops and per-stage percentiles, and the probe's own parts on real sockets."""

from __future__ import annotations

import json
import os
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.helpers import stage_log, stage_probe
from benchmarks.helpers.stage_log import classify, load, percentiles, summarize, wakeups
from benchmarks.latency import overhead, ping_avg_ms, sitecustomize_path
from l2mesh.edge.udp import make_socket_drainer

US = 1000  # ns


def out_hop(start: int, size: int = 108, seal_us: int = 13) -> list[tuple[str, int, int]]:
    """A TAP -> UDP wake-up starting at `start` ns: every stage 1 µs more than the one before (seal: seal_us)."""
    names = ["poll_return", "tap_drain_enter", "tap_read", "switch_out", "seal_enter", "seal_done", "frame_handled",
             "send_enter", "send_done", "tap_drain_exit", "loop_end"]
    stamps, t = [], start
    for step, name in enumerate(names):
        if name == "seal_done":
            t += seal_us * US
        else:
            t += step * US
        stamps.append((name, t, size if name == "tap_read" else 1 if name == "poll_return" else 0))
    return stamps


def in_hop(start: int, size: int = 160, kernel_us: int = 60, write: bool = True) -> list[tuple[str, int, int]]:
    """A UDP -> TAP wake-up: the kernel stamped the datagram kernel_us before the poll returned; stages of 2 µs."""
    names = ["poll_return", "udp_drain_enter", "udp_received", "open_enter", "open_done", "switch_in",
             "tap_write_enter", "tap_write_done", "datagram_handled", "udp_drain_exit", "loop_end"]
    if not write:
        names = [n for n in names if not n.startswith(("open", "switch", "tap_write"))]
    stamps = []
    for step, name in enumerate(names):
        stamps.append((name, start + step * 2 * US, size if name == "udp_received" else 0))
        if name == "udp_drain_enter":
            stamps.append(("kernel_rx", start - kernel_us * US, size))  # recorded at receive, stamped earlier
    return stamps


def test_percentiles_take_the_value_at_each_rank() -> None:
    values = [float(v) for v in range(10, 0, -1)]  # 10 .. 1, unsorted on purpose
    assert percentiles(values) == {"n": 10, "p50_us": 6.0, "p90_us": 10.0, "p99_us": 10.0, "max_us": 10.0}
    assert percentiles([])["p50_us"] is None


def test_wakeups_cut_at_poll_returns_and_drop_what_came_before() -> None:
    stamps = [("loop_end", 1, 0), ("poll_return", 2, 1), ("tap_drain_enter", 3, 0), ("poll_return", 4, 1)]
    assert wakeups(stamps) == [[("poll_return", 2, 1), ("tap_drain_enter", 3, 0)], [("poll_return", 4, 1)]]


@pytest.mark.parametrize(("wakeup", "verdict"), [
    (out_hop(0), "out"),
    (in_hop(0), "in"),
    (in_hop(0, write=False), "datagram without TAP write"),
    ([("poll_return", 0, 1), ("loop_end", 5, 0)], "no packet"),
    (out_hop(0)[:3] + in_hop(10**6)[1:4], "TAP and socket in one wake-up"),
    (out_hop(0)[:3] + [("tap_read", 5 * US, 108)], "not one TAP frame"),
    (in_hop(0)[:4] + [("udp_received", 9 * US, 160)] + in_hop(0)[4:], "not one datagram"),
])
def test_classify(wakeup: list[tuple[str, int, int]], verdict: str) -> None:
    found = classify(wakeup)
    assert (found if isinstance(found, str) else found[0]) == verdict


def test_summarize_gives_each_stage_of_the_pings_hops_in_the_window() -> None:
    ms = 10**6
    stamps = (
        out_hop(0 * ms, seal_us=10) + out_hop(1 * ms, seal_us=20) + out_hop(2 * ms, seal_us=30)
        + out_hop(3 * ms, size=52)  # ARP: not a ping's size
        + in_hop(4 * ms, kernel_us=40) + in_hop(5 * ms, kernel_us=80)
        + in_hop(6 * ms, write=False)  # a keepalive
        + [("poll_return", 7 * ms, 1), ("loop_end", 7 * ms + 5 * US, 0)]  # a call from the control plane
        + out_hop(50 * ms, seal_us=99)  # after the window
    )
    result = summarize(stamps, 0, 10 * ms)
    out = result["out"]
    assert (out["hops"], out["size_bytes"]) == (3, 108)
    assert out["stages"]["seal"] == {"n": 3, "p50_us": 20.0, "p90_us": 30.0, "p99_us": 30.0, "max_us": 30.0}
    assert [out["stages"][s]["p50_us"] for s in ("wake", "read", "switch", "build", "hand-off", "send")] == [
        1.0, 2.0, 3.0, 4.0, 6.0 + 7.0, 8.0]
    # poll return to sendto's return: steps 1..8 but the seal's = 31 µs, plus the seal
    assert out["stages"]["poll to sent"]["p50_us"] == 31.0 + 20.0
    inbound = result["in"]
    assert (inbound["hops"], inbound["size_bytes"]) == (2, 160)
    assert inbound["stages"]["kernel to poll"] == {"n": 2, "p50_us": 80.0, "p90_us": 80.0, "p99_us": 80.0, "max_us": 80.0}
    assert inbound["stages"]["TAP write"]["p50_us"] == 2.0
    assert inbound["stages"]["kernel to written"]["p50_us"] == 80.0 + 7 * 2.0
    assert result["skipped"] == {"datagram without TAP write": 1, "no packet": 1, "out: other size": 1}


def test_a_stamp_missing_from_a_hop_leaves_out_only_the_stages_it_bounds() -> None:
    hop = [s for s in out_hop(0) if s[0] != "seal_enter"]
    stages = summarize(hop, 0, 10**9)["out"]["stages"]
    assert stages["build"]["n"] == stages["seal"]["n"] == 0
    assert stages["hand-off"]["n"] == stages["switch"]["n"] == 1


def test_load_reads_a_dump_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    dump = tmp_path / "daemon.1.json"
    dump.write_text(json.dumps({"stage_names": ["poll_return", "loop_end"], "codes": [0, 1], "times_ns": [5, 9], "extras": [2, 0]}))
    assert load(dump) == [("poll_return", 5, 2), ("loop_end", 9, 0)]
    for broken in ("not json", json.dumps({"stage_names": ["a"], "codes": [0, 0], "times_ns": [1], "extras": [0]}),
                   json.dumps({"stage_names": ["a"], "codes": [3], "times_ns": [1], "extras": [0]})):
        dump.write_text(broken)
        with pytest.raises(ValueError, match="daemon.1.json"):
            load(dump)


def test_every_stage_bounds_are_stamps_the_probe_records() -> None:
    for kind, stages in stage_log.STAGES.items():
        for stage, since, to in stages:
            assert {since, to} <= set(stage_probe.STAGE_NAMES), (kind, stage)


def test_ping_avg_and_the_wrappers_cost() -> None:
    assert ping_avg_ms("rtt min/avg/max/mdev = 0.412/0.640/0.860/0.101 ms") == 0.64
    assert ping_avg_ms("") is None
    hops = {hop: {"p50_us": None} for hop in ("h1 out", "wire", "h2 in", "h2 host", "h2 out", "wire back", "h1 in")}
    plain = [{"interval": "0.2", "ping": "rtt min/avg/max/mdev = 0.4/0.600/0.9/0.1 ms", "hops": {**hops, "h1 out": {"p50_us": 230.0}}}]
    staged = [{"interval": "0.2", "ping": "rtt min/avg/max/mdev = 0.4/0.700/0.9/0.1 ms", "hops": {**hops, "h1 out": {"p50_us": 262.5}}}]
    assert overhead(plain, staged) == [{"interval": "0.2", "ping_avg_ms": {"plain": 0.6, "stages": 0.7},
                                        "ping_avg_added_us": 100, "hop_p50_added_us": {"h1 out": 32.5}}]


def test_the_sitecustomize_loads_the_probe_only_for_a_daemon_with_the_variable_set(tmp_path: Path) -> None:
    text = (sitecustomize_path(tmp_path, 0.001, True) / "sitecustomize.py").read_text()
    assert "sys.setswitchinterval(0.001)" in text
    assert "os.environ.get('L2MESH_STAGE_LOG') and sys.argv[1:2] == ['daemon']" in text
    assert "stage_probe.py" in text
    assert "stage_probe" not in (sitecustomize_path(tmp_path / "b", None, False) / "sitecustomize.py").read_text()


# -- the probe's wrappers, on real sockets ---------------------------------------------------------------
def names(recorder: stage_probe.Recorder) -> list[str]:
    return [stage_probe.STAGE_NAMES[code] for code, _, _ in recorder.records]


def test_stamped_epoll_marks_poll_return_and_loop_end_only_around_wakeups() -> None:
    recorder = stage_probe.Recorder()
    epoll = select.epoll()
    bell = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        stamped = stage_probe.StampedEpoll(epoll, recorder)
        stamped.register(bell, select.EPOLLIN)  # delegated to the real epoll
        assert stamped.poll(0) == []
        os.eventfd_write(bell, 1)
        assert len(stamped.poll(0)) == 1
        os.eventfd_read(bell)
        assert stamped.poll(0) == []
        assert names(recorder) == ["poll_return", "loop_end"]
        assert recorder.records[0][2] == 1  # events in the wake-up
    finally:
        epoll.close()
        os.close(bell)


def test_the_stamped_drainer_hands_over_the_same_datagrams_and_stamps_the_kernels_receive_time() -> None:
    recorder = stage_probe.Recorder()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        got: list[bytes] = []
        drain = stage_probe.stamped_drainer_factory(make_socket_drainer, recorder)(
            receiver, lambda data, source, now: got.append(bytes(data)), time.monotonic)
        # The kernel turns receive timestamps on for the first such socket in a deferred work item; until it
        # has run, a datagram is stamped when it is read rather than when it arrived.
        time.sleep(0.1)
        sent_ns = time.perf_counter_ns()
        sender.sendto(b"x" * 77, receiver.getsockname())
        time.sleep(0.05)
        drain()
        assert got == [b"x" * 77]
        assert names(recorder) == ["udp_drain_enter", "udp_received", "kernel_rx", "datagram_handled", "udp_drain_exit"]
        dump = recorder.as_json()
        times: dict[str, Any] = {dump["stage_names"][c]: (t, extra) for c, t, extra in zip(dump["codes"], dump["times_ns"], dump["extras"])}
        assert times["udp_received"][1] == times["kernel_rx"][1] == 77
        # The kernel's CLOCK_REALTIME stamp, made monotonic, is near our send, 50 ms before the read (not
        # exactly at the send: this VM's realtime clock is sometimes stepped by a millisecond or so).
        assert abs(times["kernel_rx"][0] - sent_ns) < 20_000_000
    finally:
        receiver.close()
        sender.close()


def test_the_recorder_keeps_the_latest_stamps_when_full() -> None:
    recorder = stage_probe.Recorder(capacity=3)
    for t in range(5):
        recorder.append((0, t, 0))
    assert recorder.as_json()["times_ns"] == [2, 3, 4]
    assert recorder.as_json()["full"] is True


def test_a_kernel_receive_time_is_made_monotonic_with_its_drains_clock_offset() -> None:
    enter, rx = stage_probe.CODE["udp_drain_enter"], stage_probe.CODE["kernel_rx"]
    timespec = stage_probe.TIMESPEC.pack(2, 5)
    records = [(rx, timespec, 60), (enter, 7, 1_000), (rx, timespec, 60)]  # the first has no drain entry before it
    assert stage_probe.columns(records) == {"codes": [enter, rx], "times_ns": [7, 2_000_000_005 - 1_000], "extras": [1_000, 60]}


def test_send_overlap_pairs_a_sendto_with_the_peers_next_arrival() -> None:
    sender = [{"send_enter": (1_000 * US, 0), "send_done": (1_300 * US, 0)},   # outlasts the peer's TAP write
              {"send_enter": (5_000 * US, 0), "send_done": (5_020 * US, 0)},
              {"send_enter": (9_000 * US, 0), "send_done": (9_010 * US, 0)}]   # nothing arrives after it
    receiver = [{"kernel_rx": (t + 30 * US, 0), "poll_return": (t + 90 * US, 0), "tap_write_done": (t + 250 * US, 0)}
                for t in (1_000 * US, 5_000 * US)]
    assert stage_log.send_overlap(sender, receiver) == {
        "pairs": 2,
        "p50_us": {"peer kernel_rx": 30.0, "peer poll_return": 90.0, "peer tap_write_done": 250.0, "own send_done": 300.0},
        "sendto_outlasts_peer_tap_write": 0.5,
    }
