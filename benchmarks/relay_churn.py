"""Relayed throughput while an admin script changes members: do the controller's storage writes stall its relay?

The controller relays every packet between members that have no direct path,
on the same process that serves the admin API and commits each change to
SQLite with an fsync. This measures one TCP stream h1 -> h2 through the relay
(iperf3) in rounds of two phases: idle (no admin changes) and churn (a loop
in the controller's namespace authorizes and deauthorizes 100 pre-authorized
dummy members over the admin API, one PATCH after the other, for the whole
stream). The figure is churn Gbit/s / idle Gbit/s, per round and its median.

The relayed set-up is net.py's l2mesh-relay system, reused as it is:
h1 -- router -- h2 in namespaces, the controller in the router, direct UDP
between h1 and h2 dropped there by nftables. Result:
benchmarks/results/relay_churn-<UTC timestamp>.json.

Usage: .venv/bin/python benchmarks/relay_churn.py [--rounds N] [--time S] [--members N]
       [--rate N] [--settle S] [--keep-logs DIR]
Needs root, iproute2, iperf3, ping and nft. To measure another checkout's l2mesh
with this script, put it first on PYTHONPATH (the daemons inherit it); the
result names the l2mesh measured.
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

from l2mesh.lab import LabError, Proc, in_namespace, run  # noqa: E402

nsbench.set_program("relay_churn")

DUMMY_ID_BASE = 0x10_0000_0000  # dummy member ids: never a real node's, never reserved
PHASES = ("idle", "churn")
WORKER_GRACE_S = 20.0


# ------------------------------------------------------------------ the churn loop (runs in the router namespace)
def api_client(ctl_state: Path) -> Any:
    import httpx  # only the worker needs it

    url = json.loads((ctl_state / "api.json").read_text())["url"]
    token = (ctl_state / "api.token").read_text().strip()
    return httpx.Client(base_url=f"{url}/api/v1", headers={"authorization": f"Bearer {token}"}, timeout=30.0)


def dummy_ids(count: int) -> list[str]:
    return [f"{DUMMY_ID_BASE + i:010x}" for i in range(count)]


def worker(args: argparse.Namespace) -> int:
    """Pre-authorize the dummies (seconds=0), or flip their authorization in turn for `seconds`; JSON to --out."""
    ids = dummy_ids(args.members)
    latencies_ms: list[float] = []
    errors: dict[str, int] = {}
    with api_client(args.ctl_state) as client:
        setup = args.seconds == 0
        started = time.monotonic()
        deadline = started + args.seconds
        step = 0
        while (step < len(ids)) if setup else (time.monotonic() < deadline):
            authorized = setup or (step // len(ids)) % 2 == 1  # set-up authorizes them all; churn starts by deauthorizing
            if args.rate and not setup:
                time.sleep(max(0.0, started + step / args.rate - time.monotonic()))
            t0 = time.monotonic()
            response = client.patch(f"/networks/{args.network}/members/{ids[step % len(ids)]}", json={"authorized": authorized})
            latencies_ms.append((time.monotonic() - t0) * 1000)
            if response.status_code != 200:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            step += 1
        elapsed_s = time.monotonic() - started
    latencies_ms.sort()
    result = {
        "changes": len(latencies_ms),
        "seconds": round(elapsed_s, 3),
        "changes_per_s": round(len(latencies_ms) / elapsed_s, 1) if elapsed_s else None,
        "api_ms": {
            "median": round(statistics.median(latencies_ms), 2),
            "p99": round(latencies_ms[min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))], 2),
            "max": round(latencies_ms[-1], 2),
        } if latencies_ms else None,
        "errors": errors,
    }
    args.out.write_text(json.dumps(result) + "\n")
    return 0 if not errors else 1


# ------------------------------------------------------------------ the benchmark
def run_worker(ctx: net.Context, relay: net.L2meshRelay, name: str, seconds: float, members: int, rate: float = 0.0) -> Proc:
    out = ctx.work / f"{name}.json"
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--ctl-state", str(relay.ctl_state),
            "--network", relay.network_id, "--members", str(members), "--seconds", str(seconds), "--out", str(out),
            "--rate", str(rate)]
    return ctx.procs.start(name, in_namespace(ctx.topo.rt, argv), log=ctx.work / f"{name}.log")


def worker_result(ctx: net.Context, proc: Proc, timeout_s: float) -> dict[str, Any]:
    code = ctx.procs.finish(proc, timeout_s)
    out = ctx.work / f"{proc.label}.json"
    if not out.exists():
        raise LabError(f"{proc.label} exited with code {code}: {proc.last_log_line()}")
    result: dict[str, Any] = json.loads(out.read_text())
    if code != 0:
        raise LabError(f"{proc.label}: admin API errors {result['errors']}")
    return result


def measure(ctx: net.Context, relay: net.L2meshRelay, overlay: net.Overlay, phase: str, round_no: int,
            args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"round": round_no, "phase": phase}
    # The last 1 s sample before the phase, in % of all CPUs (near 0 for clean figures).
    row["busy_before_pct"] = round(nsbench.wait_quiet(args.settle, net.QUIET_PCT) * 100, 1)
    server = net.start_iperf_server(ctx, overlay.target)
    churn = None
    try:
        if phase == "churn":
            # Started first and running past the stream's end, so every second of it sees changes.
            churn = run_worker(ctx, relay, f"churn-{round_no}", args.time + 1.0, args.members, args.rate)
            time.sleep(0.5)
        sampled = overlay.daemons + ([churn] if churn is not None else [])  # the loop's own CPU is shown too
        before = net.Sample.take(sampled)
        report = net.iperf_client(ctx, overlay.target, args.time)
        after = net.Sample.take(sampled)
    finally:
        ctx.procs.stop(server)
    if churn is not None:
        row["churn"] = worker_result(ctx, churn, args.time + WORKER_GRACE_S)
    row["gbps"] = round(report["end"]["sum_received"]["bits_per_second"] / 1e9, 3)
    row["retransmits"] = report["end"]["sum_sent"].get("retransmits")
    row["cpu_pct"], row["busy_pct"] = net.cpu_figures(before, after)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["phase"]] = row
    ratios = [r["churn"]["gbps"] / r["idle"]["gbps"] for r in by_round.values() if len(r) == 2 and r["idle"]["gbps"]]
    summary: dict[str, Any] = {
        f"{phase}_gbps": statistics.median([r["gbps"] for r in rows if r["phase"] == phase]) for phase in PHASES
    }
    churned = [r["churn"] for r in rows if r["phase"] == "churn"]
    summary["changes_per_s"] = statistics.median([c["changes_per_s"] for c in churned]) if churned else None
    summary["api_median_ms"] = statistics.median([c["api_ms"]["median"] for c in churned]) if churned else None
    summary["ratio_per_round"] = [round(r, 3) for r in ratios]
    summary["ratio"] = round(statistics.median(ratios), 3) if ratios else None
    return summary


def code_measured() -> dict[str, Any]:
    """Which l2mesh the daemons ran: where its package is, and that tree's commit and changes."""
    # -P: as the daemons' entry scripts do, not from the current directory first.
    where = run([sys.executable, "-P", "-c", "import l2mesh; print(l2mesh.__file__)"], 30).stdout.strip()
    tree = str(Path(where).parent.parent)
    head = run(["git", "-C", tree, "rev-parse", "HEAD"], 10, check=False).stdout.strip()
    dirty = run(["git", "-C", tree, "status", "--porcelain", "--", "l2mesh"], 10, check=False).stdout.splitlines()
    return {"package": where, "commit": head or None, "uncommitted": [line[3:] for line in dirty]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="relay_churn.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=nsbench.positive_int, default=3, metavar="N",
                        help="idle and churn phases N times each, interleaved (default 3)")
    parser.add_argument("--time", type=nsbench.positive_int, default=10, metavar="S", help="iperf3 seconds per phase (default 10)")
    parser.add_argument("--members", type=nsbench.positive_int, default=100, metavar="N",
                        help="dummy members the churn loop changes in turn (default 100)")
    parser.add_argument("--rate", type=nsbench.non_negative_float, default=0.0, metavar="N",
                        help="changes per second in the churn phase; 0 (default): back to back, as fast as the API answers")
    parser.add_argument("--settle", type=nsbench.non_negative_float, default=10.0, metavar="S",
                        help="wait up to S seconds for the machine to be quiet before each phase (default 10)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the daemons' logs to DIR before cleanup")
    # The churn loop: this script again, in the controller's namespace.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ctl-state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--network", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    nsbench.require(("ping", "iperf3", "ss", "nft"), "iproute2 iputils-ping iperf3 nftables")
    machine = nsbench.machine_info({"iperf3": nsbench.tool_version(["iperf3", "--version"])}, code=code_measured())
    stamp, lab = nsbench.new_run()
    ctx = net.Context(lab, [])
    relay = net.L2meshRelay(ctx)
    rows: list[dict[str, Any]] = []

    def body() -> None:
        nsbench.log(f"namespaces {', '.join(ctx.topo.names)}; load average {machine['loadavg']}")
        ctx.topo.create()
        overlay = relay.up()
        net.wait_reachable(ctx.topo.h1, overlay)
        nsbench.log(f"relayed path up; pre-authorizing {args.members} dummy members")
        worker_result(ctx, run_worker(ctx, relay, "setup", 0, args.members), 60.0)
        for round_no in range(1, args.rounds + 1):
            for phase in PHASES:
                row = measure(ctx, relay, overlay, phase, round_no, args)
                print(json.dumps(row), flush=True)
                rows.append(row)
        rows.append({"phase": "report", **relay.report()})

    try:
        nsbench.guarded_run(body, lambda: nsbench.cleanup(ctx.lab, args.keep_logs, "logs", first=relay.down))
    finally:
        measured = [r for r in rows if r["phase"] in PHASES]
        if measured:
            summary = summarize(measured)
            out = nsbench.RESULTS_DIR / f"relay_churn-{stamp}.json"
            head = {"options": {"rounds": args.rounds, "time_s": args.time, "members": args.members, "rate": args.rate,
                                "settle_s": args.settle},
                    "method": "one TCP stream h1 -> h2 through the controller's relay (direct UDP dropped); churn: "
                              "PATCH {authorized: true/false} on dummy members in turn over the admin API, back to back "
                              "or --rate per second, "
                              "from the controller's namespace; ratio = churn / idle Gbit/s of the same round"}
            nsbench.write_results(out, "relay_churn", stamp, head, machine, {"rounds": rows, "summary": summary})
            print(json.dumps(summary))
            print(f"written {nsbench.display_path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
