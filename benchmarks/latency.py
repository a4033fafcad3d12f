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

Usage: .venv/bin/python benchmarks/latency.py [--count-slow N] [--count-fast N] [--switch-interval S] [--no-save]
Needs root, iproute2, ping and tcpdump.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
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
from nsbench import RESULTS_DIR, display_path, log, new_run  # noqa: E402

nsbench.set_program("latency")

HOPS = ("h1 out", "wire", "h2 in", "h2 host", "h2 out", "wire back", "h1 in")
CAPTURE_START_S = 1.0


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


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_us": None, "p90_us": None, "p99_us": None, "max_us": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"n": len(ordered), "p50_us": at(0.5), "p90_us": at(0.9), "p99_us": at(0.99), "max_us": round(ordered[-1], 1)}


def measure_rate(ctx: net.Context, overlay: net.Overlay, interval: str, count: int, work: Path) -> dict[str, Any]:
    topo = ctx.topo
    tap = overlay.device
    port_filter = f"udp port {net.L2MESH_PORT}"
    files = {name: work / f"{name}-{interval}.pcap" for name in ("tap1", "eth1", "eth2", "tap2")}
    procs = [
        start_capture(ctx, topo.h1, tap, "icmp", files["tap1"]),
        start_capture(ctx, topo.h1, "eth0", port_filter, files["eth1"]),
        start_capture(ctx, topo.h2, "eth0", port_filter, files["eth2"]),
        start_capture(ctx, topo.h2, tap, "icmp", files["tap2"]),
    ]
    time.sleep(CAPTURE_START_S)
    try:
        done = run(in_namespace(topo.h1, ["ping", "-q", "-c", str(count), "-i", interval, overlay.target]),
                   float(interval) * count + 20, check=False)
        time.sleep(0.5)
    finally:
        for proc in procs:
            ctx.procs.stop(proc)
    captures = {name: Capture(name, read_pcap(path)) for name, path in files.items()}
    hops = hop_times(captures)
    summary = next((line for line in done.stdout.splitlines() if line.startswith("rtt")), "")
    return {"interval": interval, "count": count, "ping": summary, "hops": {h: percentiles(v) for h, v in hops.items()}}


def switch_interval_path(seconds: float, work: Path) -> Path:
    site = work / "switch-interval"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(f"import sys\nsys.setswitchinterval({seconds!r})\n")
    return site


def print_rate(result: dict[str, Any]) -> None:
    print(f"ping -i {result['interval']} x {result['count']}: {result['ping']}")
    print(f"  {'hop':10} {'n':>5} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'max µs':>8}")
    for hop, p in result["hops"].items():
        print(f"  {hop:10} {p['n']:>5} " + " ".join(f"{'-' if p[k] is None else p[k]:>8}" for k in ("p50_us", "p90_us", "p99_us", "max_us")))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="latency.py", description=__doc__.splitlines()[0])
    parser.add_argument("--count-slow", type=net.positive_int, default=50, metavar="N", help="pings at -i 0.2 (default 50)")
    parser.add_argument("--count-fast", type=net.positive_int, default=500, metavar="N", help="pings at -i 0.01 (default 500)")
    parser.add_argument("--switch-interval", type=float, metavar="S", help="the daemons' sys.setswitchinterval (default Python's 0.005)")
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG", help="extra argument for `l2mesh daemon`")
    parser.add_argument("--no-save", action="store_true", help="print only; write no results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nsbench.require(("ping", "tcpdump"), "iputils-ping tcpdump")
    stamp, lab = new_run()
    ctx = net.Context(lab, args.daemon_arg)
    results: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="l2mb-latency-"))
    saved_pythonpath = os.environ.get("PYTHONPATH")

    def body() -> None:
        if args.switch_interval is not None:
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(switch_interval_path(args.switch_interval, work)), saved_pythonpath) if p)
        system = net.L2mesh(ctx)
        ctx.topo.create()
        overlay = system.up()
        try:
            net.wait_reachable(ctx.topo.h1, overlay)
            time.sleep(2.0)  # sessions and ARP settled
            for interval, count in (("0.2", args.count_slow), ("0.01", args.count_fast)):
                log(f"ping -i {interval} x {count} with captures on both TAPs and veths")
                results.append(measure_rate(ctx, overlay, interval, count, work))
        finally:
            system.down()

    try:
        nsbench.guarded_run(body, lambda: net.cleanup(ctx, None))
    finally:
        if saved_pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_pythonpath
    for result in results:
        print_rate(result)
    if not args.no_save:
        out = RESULTS_DIR / f"latency-{stamp}.json"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "latency", "timestamp": stamp, "host": socket.gethostname(),
                                   "switch_interval_s": args.switch_interval, "daemon_args": args.daemon_arg,
                                   "loadavg": os.getloadavg(), "rates": results}, indent=2) + "\n")
        print(f"written {display_path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
