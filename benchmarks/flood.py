"""An established iperf3 stream during handshake floods: do initiations anyone can send slow existing sessions?

h1 and h2 are l2mesh members with a static network config (net.py's l2mesh
system: h1 -- router -- h2 in namespaces). A third namespace (fl) sends
HANDSHAKE_INIT packets to h2's UDP port at --rate per second from --sources
addresses of its /24 (benchmarks/helpers/handshake_flooder.py) while one TCP
stream runs h1 -> h2. Each round has three phases: none (no flood), garbage
(random bytes: they fail mac1) and mac1 (random Noise content with a correct
mac1: what whoever knows h2's public key can send; h2 goes under load and
answers with cookies instead of a DH each). The figures are each flooded
phase's Gbit/s over the same round's unflooded one (issue 16's targets:
>= 0.9 garbage, >= 0.8 mac1), and the median over rounds.

Result: benchmarks/results/flood-<UTC timestamp>.json.

Usage: .venv/bin/python benchmarks/flood.py [--rounds N] [--time S] [--rate N] [--sources N]
       [--settle S] [--keep-logs DIR]
Needs root, iproute2, iperf3 and ping. To measure another checkout's l2mesh,
put it first on PYTHONPATH (the daemons and the flooder inherit it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # net and nsbench, next to this script
import net  # noqa: E402
import nsbench  # noqa: E402
from relay_churn import code_measured  # noqa: E402

from l2mesh.lab import LabError, NetnsHost, Proc, in_namespace  # noqa: E402

nsbench.set_program("flood")

FLOODER = Path(__file__).resolve().parent / "helpers" / "handshake_flooder.py"
PHASES = ("none", "garbage", "mac1")
FLOOD_LAN = 3
TARGETS = {"garbage": 0.9, "mac1": 0.8}
FLOODER_GRACE_S = 20.0


def add_flooder_host(ctx: net.Context, sources: int) -> tuple[NetnsHost, list[str]]:
    """The fl namespace on 198.18.3.0/24, with `sources` more addresses to send from."""
    host = ctx.lab.add_host("fl", FLOOD_LAN)
    addresses = [f"198.18.{FLOOD_LAN}.{10 + i}" for i in range(sources)]
    for address in addresses:
        ctx.lab.ip("-n", host.namespace, "addr", "add", f"{address}/24", "dev", "eth0")
    return host, addresses


def start_flood(ctx: net.Context, flooder: NetnsHost, sources: list[str], kind: str, h2_key: str, seconds: float,
                rate: float, label: str) -> Proc:
    target = f"198.18.2.2:{net.L2MESH_PORT}"
    argv = [sys.executable, str(FLOODER), target, "--kind", kind, "--key", h2_key, "--rate", str(rate),
            "--seconds", str(seconds), "--sources", ",".join(sources)]
    return ctx.procs.start(label, in_namespace(flooder.namespace, argv), log=ctx.work / f"{label}.log")


def flood_result(ctx: net.Context, proc: Proc) -> dict[str, Any]:
    code = ctx.procs.finish(proc, FLOODER_GRACE_S)
    lines = (ctx.work / f"{proc.label}.log").read_text().strip().splitlines()
    if code != 0 or not lines:
        raise LabError(f"{proc.label} exited with code {code}: {proc.last_log_line()}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["rate_per_s"] = round(result["sent"] / result["seconds"]) if result["seconds"] else None
    return result


def h2_drops(ctx: net.Context, state: Path) -> dict[str, int]:
    """h2's handshake drop counters (its daemon's status): what the screening did with the flood."""
    done = net.run(in_namespace(ctx.topo.h2, [str(net.L2MESH_EXE), "status", "--json", "--state-dir", str(state)]), 30,
                   check=False)
    try:
        drops: dict[str, int] = json.loads(done.stdout)["counters"]["drops"]
    except (ValueError, KeyError):
        return {}
    return {k: v for k, v in drops.items() if k.startswith("handshake_") or k == "initiation_rejected"}


def measure(ctx: net.Context, overlay: net.Overlay, flooder: NetnsHost, sources: list[str], h2_key: str, h2_state: Path,
            phase: str, round_no: int, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"round": round_no, "phase": phase}
    row["busy_before_pct"] = round(nsbench.wait_quiet(args.settle, net.QUIET_PCT) * 100, 1)
    server = net.start_iperf_server(ctx, overlay.target)
    flood = None
    drops_before = h2_drops(ctx, h2_state)
    try:
        if phase != "none":
            # Started first and running past the stream's end, so every second of the stream is flooded.
            flood = start_flood(ctx, flooder, sources, phase, h2_key, args.time + 2.0, args.rate, f"flood-{phase}-{round_no}")
            time.sleep(1.0)
        sampled = overlay.daemons + ([flood] if flood is not None else [])
        before = net.Sample.take(sampled)
        report = net.iperf_client(ctx, overlay.target, args.time)
        after = net.Sample.take(sampled)
    finally:
        ctx.procs.stop(server)
    if flood is not None:
        row["flood"] = flood_result(ctx, flood)
    drops_after = h2_drops(ctx, h2_state)
    row["h2_drops"] = {k: v - drops_before.get(k, 0) for k, v in drops_after.items() if v != drops_before.get(k, 0)}
    row["gbps"] = round(report["end"]["sum_received"]["bits_per_second"] / 1e9, 3)
    row["retransmits"] = report["end"]["sum_sent"].get("retransmits")
    row["cpu_pct"], row["busy_pct"] = net.cpu_figures(before, after)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["phase"]] = row
    summary: dict[str, Any] = {f"{p}_gbps": statistics.median([r["gbps"] for r in rows if r["phase"] == p]) for p in PHASES}
    for kind, target in TARGETS.items():
        ratios = [r[kind]["gbps"] / r["none"]["gbps"] for r in by_round.values() if kind in r and "none" in r and r["none"]["gbps"]]
        summary[f"{kind}_ratio_per_round"] = [round(x, 3) for x in ratios]
        summary[f"{kind}_ratio"] = round(statistics.median(ratios), 3) if ratios else None
        summary[f"{kind}_target"] = target
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="flood.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=nsbench.positive_int, default=3, metavar="N",
                        help="the three phases N times each, interleaved (default 3)")
    parser.add_argument("--time", type=nsbench.positive_int, default=10, metavar="S", help="iperf3 seconds per phase (default 10)")
    parser.add_argument("--rate", type=nsbench.positive_float, default=10_000.0, metavar="N",
                        help="initiations per second in a flooded phase (default 10000)")
    parser.add_argument("--sources", type=nsbench.positive_int, default=64, metavar="N",
                        help="source addresses the flood comes from (default 64, at most 200)")
    parser.add_argument("--settle", type=nsbench.non_negative_float, default=10.0, metavar="S",
                        help="wait up to S seconds for the machine to be quiet before each phase (default 10)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the daemons' logs to DIR before cleanup")
    args = parser.parse_args(argv)
    if args.sources > 200:
        parser.error("--sources: at most 200 (they are 198.18.3.10 to .209)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nsbench.require(("ping", "iperf3", "ss"), "iproute2 iputils-ping iperf3")
    machine = nsbench.machine_info({"iperf3": nsbench.tool_version(["iperf3", "--version"])}, code=code_measured())
    stamp, lab = nsbench.new_run()
    ctx = net.Context(lab, [])
    mesh = net.L2mesh(ctx)
    rows: list[dict[str, Any]] = []

    def body() -> None:
        nsbench.log(f"namespaces {', '.join(ctx.topo.names)} and fl; load average {machine['loadavg']}")
        ctx.topo.create()
        flooder, sources = add_flooder_host(ctx, args.sources)
        overlay = mesh.up()
        net.wait_reachable(ctx.topo.h1, overlay)
        h2_key = mesh.identities["h2"]["x25519"]
        nsbench.log(f"direct path up; flooding h2 at {args.rate:g}/s from {len(sources)} addresses in the flooded phases")
        for round_no in range(1, args.rounds + 1):
            for phase in PHASES:
                row = measure(ctx, overlay, flooder, sources, h2_key, mesh.state_dir("h2"), phase, round_no, args)
                print(json.dumps(row), flush=True)
                rows.append(row)

    try:
        nsbench.guarded_run(body, lambda: nsbench.cleanup(ctx.lab, args.keep_logs, "logs", first=mesh.down))
    finally:
        if rows:
            summary = summarize(rows)
            out = nsbench.RESULTS_DIR / f"flood-{stamp}.json"
            head = {"options": {"rounds": args.rounds, "time_s": args.time, "rate": args.rate, "sources": args.sources,
                                "settle_s": args.settle},
                    "method": "one TCP stream h1 -> h2 over l2mesh (direct path) while a third namespace sends "
                              "HANDSHAKE_INIT packets to h2 from --sources addresses at --rate/s: garbage (fails mac1) "
                              "or random Noise with a correct mac1; ratio = flooded / unflooded Gbit/s of the same round"}
            nsbench.write_results(out, "flood", stamp, head, machine, {"rounds": rows, "summary": summary})
            print(json.dumps(summary))
            print(f"written {nsbench.display_path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
