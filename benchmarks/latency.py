"""Where a ping's round trip goes across l2mesh: per-hop times from packet captures on both TAPs and both veths.

Issue 17, part 1. net.py's l2mesh system (h1 -- router -- h2 in this run's
namespaces, two `l2mesh daemon`s with a static network) is brought up, and
for each ping rate (-i 0.2, idle between pings; -i 0.01, a stream) tcpdump
records, with nanosecond timestamps from the one clock all namespaces share:

    h1's TAP (ICMP)   h1's eth0 (UDP 9993)   h2's eth0 (UDP 9993)   h2's TAP (ICMP)

Each echo request and reply is followed through them in order: the ICMP
packet by its id and sequence number on the TAPs, the datagram carrying it on
the veths as the first one of a ping's size after the ICMP packet was seen on
the previous interface. The hops of one round trip:

    h1 out   h1's TAP -> h1's eth0       (h1's daemon: TAP read, switch, seal, send)
    wire     h1's eth0 -> h2's eth0       (kernel: veth, router namespace, veth)
    h2 in    h2's eth0 -> h2's TAP        (h2's daemon: receive, open, switch, TAP write)
    h2 host  h2's TAP request -> reply    (h2's kernel answers the ping)
    h2 out, wire back, h1 in              (the same, the other way)

Per hop: median, 90th and 99th percentile and max, in microseconds.
--switch-interval S starts the daemons with sys.setswitchinterval(S) (through
a sitecustomize on PYTHONPATH) to test whether the GIL's hand-over interval
is what a hop waits for.

--stages adds a second pass with the daemons started under a stage log
(helpers/stage_probe.py, loaded by the same sitecustomize when
L2MESH_STAGE_LOG is set): timestamps inside each daemon at every stage of
a hop (reactor wake-up, read, switch, seal, send; receive, open, switch, TAP
write), turned into per-stage percentiles per rate, daemon and hop kind
(helpers/stage_log.py). The first pass, without it, gives what the wrappers
cost: ping and capture hops of both passes side by side.

--cold (on by default; --no-cold skips its ~30 s) runs helpers/cold_probe.py
in a fresh process: a no-op, a small Python loop and a 120-byte AEAD seal
timed after sleeping (or spinning) 0, 1, 10 and 50 ms, the cost of running
code cold, and a census of the interruptions a spinning process sees.

Usage: .venv/bin/python benchmarks/latency.py [--count-slow N] [--count-fast N] [--switch-interval S]
                                              [--stages] [--no-cold] [--no-save]
Needs root, iproute2, ping and tcpdump.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dpkt

from l2mesh.lab import LabError, in_namespace, run

sys.path.insert(0, str(Path(__file__).resolve().parent))  # net.py and nsbench, next to this script
import net  # noqa: E402
import nsbench  # noqa: E402
from helpers import stage_log  # noqa: E402
from helpers.stage_log import percentiles  # noqa: E402
from nsbench import RESULTS_DIR, display_path, log, new_run  # noqa: E402

nsbench.set_program("latency")

HOPS = ("h1 out", "wire", "h2 in", "h2 host", "h2 out", "wire back", "h1 in")
CAPTURE_START_S = 1.0
HELPERS = Path(__file__).resolve().parent / "helpers"
STAGE_LOG_ENV = "L2MESH_STAGE_LOG"
COLD_PROBE_TIMEOUT_S = 120


@dataclass
class Capture:
    """Timestamps (ns) and lengths of what tcpdump saw on one interface."""

    name: str
    packets: list[tuple[int, bytes]]


def start_capture(ctx: net.Context, ns: str, device: str, bpf: str, out: Path) -> Any:
    argv = in_namespace(ns, ["tcpdump", "-i", device, "-nn", "-U", "-s", "200", "--time-stamp-precision=nano",
                              "-w", str(out), bpf])
    return ctx.procs.start(f"tcpdump-{ns}-{device}", argv, log=out.with_suffix(".log"))


def read_pcap(path: Path) -> list[tuple[int, bytes]]:
    with path.open("rb") as handle:
        # dpkt gives a nanosecond capture's times as Decimal seconds (exact), a microsecond one's as float.
        return [(int(ts * 10**9) if isinstance(ts, Decimal) else round(ts * 1e6) * 1000, bytes(buf))
                for ts, buf in dpkt.pcap.Reader(handle)]


def icmp_echoes(packets: list[tuple[int, bytes]]) -> dict[tuple[int, int], int]:
    """(type, seq) -> time for ICMP echo requests (8) and replies (0) in Ethernet frames."""
    seen: dict[tuple[int, int], int] = {}
    for ts, frame in packets:
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.icmp.ICMP):
            continue
        icmp = ip.data
        if icmp.type in (0, 8):
            seq = struct.unpack("!HH", bytes(icmp.data)[:4])[1]
            seen.setdefault((icmp.type, seq), ts)
    return seen


def udp_times(packets: list[tuple[int, bytes]], size: int) -> list[int]:
    """Times of the UDP datagrams of one size (a ping's) on a veth, in order."""
    times = []
    for ts, frame in packets:
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP) and len(ip.data.data) == size:
            times.append(ts)
    return times


def first_after(times: list[int], start: int) -> int | None:
    for t in times:
        if t >= start:
            return t
    return None


def ping_datagram_size(packets: list[tuple[int, bytes]]) -> int:
    """The most common UDP payload size on h1's veth: what a ping's frame becomes (keepalives are smaller)."""
    sizes = [len(dpkt.ethernet.Ethernet(f).data.data.data) for _, f in packets
             if isinstance(dpkt.ethernet.Ethernet(f).data, dpkt.ip.IP)
             and isinstance(dpkt.ethernet.Ethernet(f).data.data, dpkt.udp.UDP)]
    if not sizes:
        raise LabError("no UDP datagrams captured on h1's veth")
    return statistics.mode(sizes)


def hop_times(captures: dict[str, Capture]) -> dict[str, list[float]]:
    tap1, tap2 = icmp_echoes(captures["tap1"].packets), icmp_echoes(captures["tap2"].packets)
    size = ping_datagram_size(captures["eth1"].packets)
    eth1, eth2 = udp_times(captures["eth1"].packets, size), udp_times(captures["eth2"].packets, size)
    hops: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for (kind, seq), t_req1 in sorted(tap1.items()):
        if kind != 8:
            continue
        t_req2, t_rep2, t_rep1 = tap2.get((8, seq)), tap2.get((0, seq)), tap1.get((0, seq))
        if None in (t_req2, t_rep2, t_rep1):
            continue
        assert t_req2 is not None and t_rep2 is not None and t_rep1 is not None
        out1 = first_after(eth1, t_req1)
        in2 = first_after(eth2, out1) if out1 is not None else None
        out2 = first_after(eth2, t_rep2)
        in1 = first_after(eth1, out2) if out2 is not None else None
        points = [t_req1, out1, in2, t_req2, t_rep2, out2, in1, t_rep1]
        if any(p is None for p in points):
            continue
        stamps = [int(p) for p in points if p is not None]
        if any(b < a for a, b in zip(stamps, stamps[1:])):
            continue  # a keepalive of the same size in between: pairing unsure, left out
        for hop, (a, b) in zip(HOPS, zip(stamps, stamps[1:])):
            hops[hop].append((b - a) / 1000)
    return hops


def measure_rate(ctx: net.Context, overlay: net.Overlay, interval: str, count: int, work: Path) -> dict[str, Any]:
    """Pings at one interval with captures on both TAPs and veths; "monotonic_ns" is when they ran (for the stage logs)."""
    topo = ctx.topo
    tap = overlay.device
    port_filter = f"udp port {net.L2MESH_PORT}"
    work.mkdir(parents=True, exist_ok=True)
    files = {name: work / f"{name}-{interval}.pcap" for name in ("tap1", "eth1", "eth2", "tap2")}
    procs = [
        start_capture(ctx, topo.h1, tap, "icmp", files["tap1"]),
        start_capture(ctx, topo.h1, "eth0", port_filter, files["eth1"]),
        start_capture(ctx, topo.h2, "eth0", port_filter, files["eth2"]),
        start_capture(ctx, topo.h2, tap, "icmp", files["tap2"]),
    ]
    time.sleep(CAPTURE_START_S)
    try:
        started_ns = time.perf_counter_ns()  # CLOCK_MONOTONIC: the daemons' stamps use the same clock
        done = run(in_namespace(topo.h1, ["ping", "-q", "-c", str(count), "-i", interval, overlay.target]),
                   float(interval) * count + 20, check=False)
        ended_ns = time.perf_counter_ns()
        time.sleep(0.5)
    finally:
        for proc in procs:
            ctx.procs.stop(proc)
    captures = {name: Capture(name, read_pcap(path)) for name, path in files.items()}
    hops = hop_times(captures)
    summary = next((line for line in done.stdout.splitlines() if line.startswith("rtt")), "")
    return {"interval": interval, "count": count, "ping": summary, "hops": {h: percentiles(v) for h, v in hops.items()},
            "monotonic_ns": [started_ns, ended_ns]}


def sitecustomize_path(work: Path, switch_interval_s: float | None, stage_log: bool) -> Path:
    """A directory for PYTHONPATH whose sitecustomize sets the daemons' switch interval and/or loads the stage probe.

    The probe is loaded only in `l2mesh daemon` processes and only while
    L2MESH_STAGE_LOG is set (the stage pass); otherwise the hook is one
    environment lookup at start-up and the daemons run unwrapped.
    """
    site = work / "site"
    site.mkdir(parents=True, exist_ok=True)
    lines = ["import sys"]
    if switch_interval_s is not None:
        lines.append(f"sys.setswitchinterval({switch_interval_s!r})")
    if stage_log:
        lines += [
            "import os",
            f"if os.environ.get({STAGE_LOG_ENV!r}) and sys.argv[1:2] == ['daemon']:",
            "    import importlib.util",
            f"    spec = importlib.util.spec_from_file_location('l2mesh_stage_probe', {str(HELPERS / 'stage_probe.py')!r})",
            "    probe = importlib.util.module_from_spec(spec)",
            "    sys.modules['l2mesh_stage_probe'] = probe",
            "    spec.loader.exec_module(probe)",
            f"    probe.install(os.environ[{STAGE_LOG_ENV!r}])",
        ]
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    return site


def ping_avg_ms(summary: str) -> float | None:
    """The avg of ping's "rtt min/avg/max/mdev = 0.412/0.640/0.860/0.101 ms" line."""
    try:
        return float(summary.split("=")[1].split("/")[1])
    except (IndexError, ValueError):
        return None


def add_stage_summaries(dumps: dict[str, Path], rates: list[dict[str, Any]]) -> None:
    """Into each rate of the stage pass: "daemons" (host -> stage_log.summarize() of its stamps during those
    pings) and "send_overlap" (each daemon's sendto against the other daemon's arrival of the same datagram)."""
    stamps: dict[str, list[stage_log.Stamp]] = {}
    for host, path in dumps.items():
        try:
            stamps[host] = stage_log.load(path)
        except ValueError as exc:
            log(f"stage log of {host}'s daemon left out: {exc}")
    for rate in rates:
        window = rate["monotonic_ns"]
        rate["daemons"] = {host: stage_log.summarize(s, *window) for host, s in sorted(stamps.items())}
        hops = {host: stage_log.ping_hops(s, *window)[0] for host, s in stamps.items()}
        rate["send_overlap"] = {f"{a} out -> {b} in": stage_log.send_overlap(hops[a]["out"], hops[b]["in"])
                                for a, b in (("h1", "h2"), ("h2", "h1")) if a in hops and b in hops}


def overhead(plain: list[dict[str, Any]], staged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the stage wrappers cost: ping avg and capture-hop p50s of the stage pass minus the plain pass."""
    out = []
    for before, after in zip(plain, staged):
        avg_before, avg_after = ping_avg_ms(before["ping"]), ping_avg_ms(after["ping"])
        out.append({
            "interval": before["interval"],
            "ping_avg_ms": {"plain": avg_before, "stages": avg_after},
            "ping_avg_added_us": None if avg_before is None or avg_after is None else round((avg_after - avg_before) * 1000),
            "hop_p50_added_us": {
                hop: round(after["hops"][hop]["p50_us"] - before["hops"][hop]["p50_us"], 1)
                for hop in HOPS if after["hops"][hop]["p50_us"] is not None and before["hops"][hop]["p50_us"] is not None
            },
        })
    return out


def run_cold_probe() -> dict[str, Any]:
    """helpers/cold_probe.py in a fresh interpreter (ours, with our PYTHONPATH): its object, or {} with a log line."""
    try:
        done = subprocess.run([sys.executable, str(HELPERS / "cold_probe.py")], capture_output=True, text=True,
                              timeout=COLD_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        log(f"cold probe did not finish within {COLD_PROBE_TIMEOUT_S} s; left out")
        return {}
    try:
        probe: dict[str, Any] = json.loads(done.stdout)
        return probe
    except ValueError:
        log(f"cold probe failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:] or 'no output'}")
        return {}


def cell(p: dict[str, Any], keys: Sequence[str] = ("p50_us", "p90_us", "p99_us")) -> str:
    return "/".join("-" if p[k] is None else f"{p[k]:g}" for k in keys)


def print_rate(result: dict[str, Any]) -> None:
    print(f"ping -i {result['interval']} x {result['count']}: {result['ping']}")
    print(f"  {'hop':10} {'n':>5} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'max µs':>8}")
    for hop, p in result["hops"].items():
        print(f"  {hop:10} {p['n']:>5} " + " ".join(f"{'-' if p[k] is None else p[k]:>8}" for k in ("p50_us", "p90_us", "p99_us", "max_us")))


def print_stages(rate: dict[str, Any]) -> None:
    """One table per hop kind: a row per stage, a column per daemon, p50/p90/p99 in µs; then the sendto overlaps."""
    daemons = rate.get("daemons", {})
    hosts = [h for h in ("h1", "h2") if h in daemons]
    for kind, title in (("out", "TAP -> UDP"), ("in", "UDP -> TAP")):
        print(f"stages at ping -i {rate['interval']}, {title} ({kind}), µs p50/p90/p99:")
        headers = [f"{h} {kind} (n={daemons[h][kind]['hops']})" for h in hosts]
        print(f"  {'stage':18}" + "".join(f"{header:>24}" for header in headers))
        for stage, _, _ in stage_log.STAGES[kind]:
            print(f"  {stage:18}" + "".join(f"{cell(daemons[h][kind]['stages'][stage]):>24}" for h in hosts))
    for host in hosts:
        if daemons[host]["skipped"]:
            print(f"  {host}: wake-ups left out: " + ", ".join(f"{n} {why}" for why, n in daemons[host]["skipped"].items()))
    for pair, overlap in rate.get("send_overlap", {}).items():
        if overlap["pairs"]:
            at = ", ".join(f"{name} {us:g}" for name, us in overlap["p50_us"].items())
            print(f"  {pair}: µs p50 after the sendto began: {at}; the sendto returned after the peer's TAP write "
                  f"in {overlap['sendto_outlasts_peer_tap_write']:.0%} of {overlap['pairs']}")


def print_overhead(rows: list[dict[str, Any]]) -> None:
    print("cost of the stage wrappers (stage pass minus plain pass, one run each):")
    for row in rows:
        hops = ", ".join(f"{hop} {added:+g}" for hop, added in row["hop_p50_added_us"].items())
        added = "?" if row["ping_avg_added_us"] is None else f"{row['ping_avg_added_us']:+}"
        print(f"  -i {row['interval']}: ping avg {row['ping_avg_ms']['plain']} -> {row['ping_avg_ms']['stages']} ms "
              f"({added} µs); hop p50s µs: {hops}")


def print_cold(probe: dict[str, Any]) -> None:
    rows = probe["rows"]
    gaps = sorted({r["gap_ms"] for r in rows})
    print("cold code: µs p50/p90 after a gap asleep or spinning (fresh process, " + f"{rows[0]['tries']} tries each):")
    print(f"  {'work':34}" + "".join(f"{f'{g:g} ms':>14}" for g in gaps))
    for work, wait in dict.fromkeys((r["work"], r["wait"]) for r in rows):
        by_gap = {r["gap_ms"]: r for r in rows if r["work"] == work and r["wait"] == wait}
        print(f"  {f'{work}, {wait}':34}" + "".join(
            f"{cell(by_gap[g], ('p50_us', 'p90_us')) if g in by_gap else '-':>14}" for g in gaps))
    census = probe["interruptions"]
    print(f"  spinning {census['spun_s']} s: {census['per_s']:g} interruptions/s over {census['threshold_us']:g} µs, "
          f"p50 {census['p50_us']:g} µs, max {census['max_us']:g} µs, {census['share_pct']:g} % of the time")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="latency.py", description=__doc__.splitlines()[0])
    parser.add_argument("--count-slow", type=net.positive_int, default=50, metavar="N", help="pings at -i 0.2 (default 50)")
    parser.add_argument("--count-fast", type=net.positive_int, default=500, metavar="N", help="pings at -i 0.01 (default 500)")
    parser.add_argument("--switch-interval", type=float, metavar="S", help="the daemons' sys.setswitchinterval (default Python's 0.005)")
    parser.add_argument("--stages", action="store_true", help="a second pass with per-stage stamps inside the daemons")
    parser.add_argument("--cold", action=argparse.BooleanOptionalAction, default=True,
                        help="time work after sleeping or spinning, in a fresh process (default on, ~30 s)")
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG", help="extra argument for `l2mesh daemon`")
    parser.add_argument("--no-save", action="store_true", help="print only; write no results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nsbench.require(("ping", "tcpdump"), "iputils-ping tcpdump")
    stamp, lab = new_run()
    ctx = net.Context(lab, args.daemon_arg)
    results: list[dict[str, Any]] = []
    staged: list[dict[str, Any]] = []
    cold: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="l2mb-latency-"))
    saved_pythonpath = os.environ.get("PYTHONPATH")

    def measure_pass(system: net.L2mesh, label: str, into: list[dict[str, Any]]) -> net.Overlay:
        overlay = system.up()
        try:
            net.wait_reachable(ctx.topo.h1, overlay)
            time.sleep(2.0)  # sessions and ARP settled
            for interval, count in (("0.2", args.count_slow), ("0.01", args.count_fast)):
                log(f"{label}: ping -i {interval} x {count} with captures on both TAPs and veths")
                into.append(measure_rate(ctx, overlay, interval, count, work / label))
        finally:
            system.down()  # SIGTERM: a stage-logged daemon writes its log as its reactor ends
        return overlay

    def body() -> None:
        log(f"captures{' and stage logs' if args.stages else ''} go to {work}")
        if args.cold:
            log("cold probe: a no-op, a Python loop and a seal after sleeping or spinning 0-50 ms (~30 s)")
            cold.update(run_cold_probe())
        if args.switch_interval is not None or args.stages:
            site = sitecustomize_path(work, args.switch_interval, args.stages)
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), saved_pythonpath) if p)
        system = net.L2mesh(ctx)
        ctx.topo.create()
        measure_pass(system, "plain", results)
        if not args.stages:
            return
        prefix = work / "stages" / "daemon"
        prefix.parent.mkdir(parents=True, exist_ok=True)
        os.environ[STAGE_LOG_ENV] = str(prefix)
        try:
            overlay = measure_pass(system, "stages", staged)
        finally:
            os.environ.pop(STAGE_LOG_ENV, None)
        dumps = {proc.label.removeprefix("l2mesh-"): Path(f"{prefix}.{proc.pid}.json") for proc in overlay.daemons}
        add_stage_summaries(dumps, staged)

    with nsbench.environment_restored("PYTHONPATH"):
        nsbench.guarded_run(body, lambda: net.cleanup(ctx, None))
    if cold:
        print_cold(cold)
    for result in results:
        print_rate(result)
    stages: dict[str, Any] | None = None
    if staged:
        stages = {"rates": staged, "overhead": overhead(results, staged), "stage_notes": stage_log.STAGE_NOTES}
        print("with the stage log:")
        for result in staged:
            print_rate(result)
            print_stages(result)
        print_overhead(stages["overhead"])
    if not args.no_save:
        out = RESULTS_DIR / f"latency-{stamp}.json"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "latency", "timestamp": stamp, "host": socket.gethostname(),
                                   "switch_interval_s": args.switch_interval, "daemon_args": args.daemon_arg,
                                   "loadavg": os.getloadavg(), "rates": results, "stages": stages, "cold": cold},
                                  indent=2) + "\n")
        print(f"written {display_path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
