"""Per-frame modules compiled with mypyc against the same modules in pure Python (issue 17), interleaved A/B.

The question: does a compiled per-frame path make a cold daemon hop (the
added ping RTT) or a 64-byte UDP flood cheaper? mypyc compiles the modules as
they are (type hints checked at run time), so no logic is duplicated in C.

The script copies this checkout twice into a temporary directory and runs
mypyc over COMPILED_MODULES in one copy (the .so files it writes next to the
.py files shadow them, plus one shared library at the copy's root). Both
copies are then measured in alternation, in rounds, each in fresh processes
with PYTHONPATH pointing at it:

- in process (tests.unit.test_core's Mesh: two NodeCores, sans-IO, a recording
  transmit): hot us per 64-byte frame, sender (a TAP frame to a sealed
  datagram) and receiver (GRO runs of 64 datagrams to frames); and cold us
  per frame, TAP -> UDP and UDP -> TAP, each after sleeping 50 ms (p50 of 40);
- with --daemons, in net.py's topology (h1 -- router -- h2): two `l2mesh
  daemon`s per copy; ping -i 0.2 x 25 (avg RTT minus the raw path's); one
  TCP stream (iperf3: Gbit/s, and that over the raw path's in the same
  round); a 64-byte UDP flood at full speed (iperf3 -u -b 0: packets per
  second delivered, and that over the raw path's); one at a fixed --pps
  (each daemon's CPU, utime+stime from /proc, per delivered packet, which
  the machine's other load moves much less than packets per second); and
  the idle RSS of freshly started daemons.

Usage: .venv/bin/python benchmarks/compiled_ab.py [--rounds N] [--daemons] [--seconds S] [--pps N]
Needs mypy with mypyc and a C compiler (gcc, Python headers); --daemons needs
root, iproute2, iperf3 and ping. Prints one JSON line per measurement and a
summary of medians; writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COLD_SLEEP_S = 0.05
COLD_TRIES = 40
HOT_FRAMES = 20000
# What one frame runs through, both ways, and the objects it touches on the way (peers, paths, the switch's
# tables, rate limiters), so compiled code reads their attributes as C struct fields, not through dicts.
# Compiling fewer (core, send, receive, session, aead alone) gained next to nothing.
COMPILED_MODULES = (
    "l2mesh/node/core.py", "l2mesh/node/send.py", "l2mesh/node/receive.py", "l2mesh/node/udp_coalesce.py",
    "l2mesh/node/peers.py", "l2mesh/node/peer_table.py", "l2mesh/node/network_state.py", "l2mesh/node/paths.py",
    "l2mesh/session.py", "l2mesh/crypto/aead.py", "l2mesh/crypto/replay.py", "l2mesh/crypto/timers.py",
    "l2mesh/fragments.py", "l2mesh/ratelimit.py",
    "l2mesh/switch/switch.py", "l2mesh/switch/mactable.py", "l2mesh/switch/flow_rules.py",
    "l2mesh/switch/multicast.py", "l2mesh/switch/arp.py", "l2mesh/switch/loops.py",
)


# ------------------------------------------------------------------ in process (run as --worker in each copy)
def worker() -> dict[str, Any]:
    """Hot and cold per-frame cost of the copy on sys.path (its modules compiled or not)."""
    from l2mesh.node import send
    from tests.unit.test_core import NET, Mesh, established, udp_frame

    mesh = Mesh(2)
    a, b = mesh.members
    established(mesh, a, b, 1.0)
    frame = bytes(10) + udp_frame(a, b.mac(), 22)  # an empty virtio header, as the TAP hands it over
    result: dict[str, Any] = {"compiled": not send.__file__.endswith(".py")}

    a.transmit.datagrams.clear()
    started = time.perf_counter()
    for _ in range(HOT_FRAMES):
        a.core.vnet_frame_from_tap(NET, frame, 2.0)
    result["hot_sender_us"] = (time.perf_counter() - started) / HOT_FRAMES * 1e6
    datagrams = [data for data, _ in a.transmit.datagrams]
    size = len(datagrams[0])
    runs = [memoryview(b"".join(datagrams[i:i + 64])) for i in range(0, len(datagrams), 64)]
    b.transmit.frames.clear()
    started = time.perf_counter()
    for run_ in runs:
        b.core.segments_received(run_, size, a.endpoint, 2.0)
    result["hot_receiver_us"] = (time.perf_counter() - started) / len(datagrams) * 1e6
    assert len(b.transmit.frames) == len(datagrams), "hot frames not all delivered"

    clock = time.perf_counter_ns
    out_ns: list[int] = []
    in_ns: list[int] = []
    now = 3.0
    for _ in range(COLD_TRIES):
        a.transmit.datagrams.clear()
        b.transmit.frames.clear()
        time.sleep(COLD_SLEEP_S)
        t0 = clock()
        a.core.vnet_frame_from_tap(NET, frame, now)
        t1 = clock()
        view = memoryview(bytearray(a.transmit.datagrams[-1][0]))
        time.sleep(COLD_SLEEP_S)
        t2 = clock()
        b.core.datagram_received(view, a.endpoint, now)
        t3 = clock()
        assert b.transmit.frames, "cold frame not delivered"
        out_ns.append(t1 - t0)
        in_ns.append(t3 - t2)
        now += 0.001
    result["cold_tap_to_udp_us"] = statistics.median(out_ns) / 1000
    result["cold_udp_to_tap_us"] = statistics.median(in_ns) / 1000
    return result


def run_worker(tree: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / "compiled_ab.py"), "--worker"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"compiled_ab: worker in {tree} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


# ------------------------------------------------------------------ the two copies
def make_copies(work: Path) -> dict[str, Path]:
    """work/pure and work/compiled: this checkout without build output, the second with COMPILED_MODULES compiled."""
    ignore = shutil.ignore_patterns(".git", "build", "*.so", "__pycache__", ".venv", "results", "*.egg-info")
    trees = {"pure": work / "pure", "compiled": work / "compiled"}
    for tree in trees.values():
        shutil.copytree(REPO, tree, ignore=ignore)
    mypyc = Path(sys.executable).parent / "mypyc"
    if not mypyc.exists():
        raise SystemExit(f"compiled_ab: {mypyc} not found: install mypy (with mypyc) into this environment")
    done = subprocess.run([str(mypyc), "--ignore-missing-imports", *COMPILED_MODULES], cwd=trees["compiled"],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"compiled_ab: mypyc failed: {done.stdout.strip().splitlines()[-1:]}")
    return trees


# ------------------------------------------------------------------ daemons in namespaces
def daemon_rounds(trees: dict[str, Path], rounds: int, seconds: int, pps: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import net
    import nsbench
    import small_packets

    nsbench.set_program("compiled_ab")
    nsbench.require(("ping", "iperf3", "ss"), "iproute2 iputils-ping iperf3")
    _, lab = nsbench.new_run()
    ctx = net.Context(lab, [])
    rows: list[dict[str, Any]] = []

    def flood(target: str, bits_per_s: str) -> dict[str, float]:
        report = net.iperf_run(ctx, target, ["-u", "-b", bits_per_s, "-l", "64"], seconds)
        return small_packets.udp_delivered(report, 64)

    def body() -> None:
        ctx.topo.create()
        underlay = net.Underlay(ctx).up()
        for round_ in range(1, rounds + 1):
            raw = {"ping": small_packets.ping_stats(ctx.topo.h1, underlay.target, "0.2", 25),
                   "flood": flood(underlay.target, "0"),
                   "tcp": net.iperf_run(ctx, underlay.target, [], seconds)["end"]["sum_received"]["bits_per_second"]}
            for name, tree in trees.items():
                os.environ["PYTHONPATH"] = str(tree)
                system = net.L2mesh(ctx)
                overlay = system.up()
                try:
                    net.wait_reachable(ctx.topo.h1, overlay)
                    time.sleep(2.0)  # sessions and ARP settled
                    row: dict[str, Any] = {"tree": name, "round": round_, "loadavg": os.getloadavg()}
                    ping = small_packets.ping_stats(ctx.topo.h1, overlay.target, "0.2", 25)
                    row["added_rtt_ms"] = round((ping["avg_ms"] or 0) - (raw["ping"]["avg_ms"] or 0), 3)
                    tcp = net.iperf_run(ctx, overlay.target, [], seconds)["end"]["sum_received"]["bits_per_second"]
                    row["tcp_gbps"] = round(tcp / 1e9, 3)
                    row["tcp_of_raw"] = round(tcp / max(raw["tcp"], 1), 3)
                    full = flood(overlay.target, "0")
                    row["udp64_pps"] = full["pps"]
                    row["udp64_of_raw"] = round(full["pps"] / max(raw["flood"]["pps"], 1), 3)
                    ticks = {p.label: net.cpu_ticks(p.pid) for p in overlay.daemons}
                    fixed = flood(overlay.target, str(pps * 64 * 8))
                    delivered = max(fixed["pps"] * seconds, 1)
                    row["fixed_pps"] = fixed["pps"]
                    row["cpu_us_per_packet"] = {
                        p.label: round((net.cpu_ticks(p.pid) - ticks[p.label]) / net.CLK_TCK / delivered * 1e6, 2)
                        for p in overlay.daemons}
                    row["rss_idle_mib"] = None  # filled below, from a fresh daemon: floods grow it
                finally:
                    system.down()
                overlay = system.up()
                try:
                    net.wait_reachable(ctx.topo.h1, overlay)
                    time.sleep(2.0)
                    row["rss_idle_mib"] = {p.label: round(small_packets.rss_bytes(p.pid) / 2**20, 2)
                                           for p in overlay.daemons}
                finally:
                    system.down()
                print(json.dumps(row), flush=True)
                rows.append(row)

    with nsbench.environment_restored("PYTHONPATH"):
        nsbench.guarded_run(body, lambda: net.cleanup(ctx, None))
    return rows


# ------------------------------------------------------------------ summary
def medians(rows: list[dict[str, Any]], tree: str, key: str) -> float | None:
    values: list[float] = []
    for row in rows:
        if row["tree"] != tree or row.get(key) is None:
            continue
        value = row[key]
        values.append(sum(value.values()) if isinstance(value, dict) else value)
    return round(statistics.median(values), 3) if values else None


def paired_ratios(rows: list[dict[str, Any]], key: str) -> list[float]:
    """compiled / pure of one figure, round by round (both copies measured back to back under the same load)."""
    by_round: dict[int, dict[str, float]] = {}
    for row in rows:
        value = row.get(key)
        if value is not None:
            by_round.setdefault(row["round"], {})[row["tree"]] = sum(value.values()) if isinstance(value, dict) else value
    return [round(pair["compiled"] / pair["pure"], 3) for _, pair in sorted(by_round.items())
            if pair.get("pure") and "compiled" in pair]


def summarize(rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    print("medians (dict figures summed over both daemons); compiled / pure, of the medians and round by round:")
    for key in keys:
        pure, compiled = medians(rows, "pure", key), medians(rows, "compiled", key)
        ratio = f"{compiled / pure:.3f}" if pure and compiled is not None else "-"
        print(f"  {key:22s} pure {pure}  compiled {compiled}  ratio {ratio}  by round {paired_ratios(rows, key)}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mypyc-compiled per-frame modules against pure Python, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (default 3)")
    parser.add_argument("--daemons", action="store_true", help="also daemons in namespaces: RTT, 64-byte UDP, CPU, RSS")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per UDP flood (default 5)")
    parser.add_argument("--pps", type=int, default=20000, help="the fixed-rate flood's packets per second (default 20000)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 1 or args.pps < 1:
        parser.error("--rounds, --seconds and --pps must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker()))
        return 0
    with tempfile.TemporaryDirectory(prefix="l2mb-compiled-") as work:
        trees = make_copies(Path(work))
        rows: list[dict[str, Any]] = []
        for round_ in range(1, args.rounds + 1):
            for name, tree in trees.items():
                row = {"tree": name, "round": round_, **run_worker(tree)}
                print(json.dumps(row), flush=True)
                rows.append(row)
        summarize(rows, ("hot_sender_us", "hot_receiver_us", "cold_tap_to_udp_us", "cold_udp_to_tap_us"))
        if args.daemons:
            daemon_rows = daemon_rounds(trees, args.rounds, args.seconds, args.pps)
            summarize(daemon_rows, ("added_rtt_ms", "tcp_gbps", "tcp_of_raw", "udp64_pps", "udp64_of_raw",
                                    "cpu_us_per_packet", "rss_idle_mib"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
