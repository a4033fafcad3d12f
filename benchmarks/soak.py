"""Soak: long churn on a 10-member network in namespaces, and a trend test on every daemon's resources.

`make soak` runs it for SOAK_S seconds (default 1800). A standalone root, a
controller and --members members (soak_net.py) are built in l2mt-<run id>-*
namespaces; for the run's duration the churn (soak_churn.py) makes members
leave and rejoin, be deauthorized and authorized again, restarts member
daemons (SIGTERM and SIGKILL) and the controller, drops UDP between two
members in the router for a while, joins and leaves multicast groups, and
sends pings, multicast and UDP streams throughout, every choice from a
seeded RNG (--seed replays a run's choices). The first --long-lived members
are never left, deauthorized or restarted: theirs, the root's and the
controller's last lifetime (it is restarted in the first half of the run
only) are the long series a leak shows in.

Every --sample-s seconds each daemon's RSS (its own, and with its children),
open fds, threads and sessions are sampled (soak_sample.py); at the end each
process lifetime long enough is judged by the trend test (soak_trend.py:
still growing at the end by more than an allowance, not one high sample).
Then everything pending is undone and every member must reach every other
across the overlay. The exit code is 1 when a series grows without bound or
a pair stays unreachable.

Usage: .venv/bin/python benchmarks/soak.py [--duration S] [--seed N] [--members N] [--long-lived N]
           [--sample-s S] [--keep-logs DIR] [--no-save]
Needs root, iproute2, ping, nft, iperf3 and /dev/net/tun.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.integration.topology: the lab topology the integration tests build
sys.path.insert(0, str(REPO / "benchmarks"))  # nsbench and the soak_* modules, next to this script
import nsbench  # noqa: E402
from l2mesh.lab import LabError  # noqa: E402
from nsbench import RESULTS_DIR, display_path, log, positive_float, positive_int  # noqa: E402
from soak_churn import Churn  # noqa: E402
from soak_net import READY_TIMEOUT_S, Member, SoakNetwork  # noqa: E402
from soak_sample import ALLOWANCES, MIB, Sampler, growing, judge  # noqa: E402
from soak_trend import MIN_SAMPLES, WARMUP_FRACTION  # noqa: E402
from tests.integration.topology import Topology  # noqa: E402

nsbench.set_program("soak")  # after soak_sample imported memory, which names itself

DEFAULT_DURATION_S = 1800.0
STEP_PAUSE_S = (1.0, 4.0)  # between churn steps
FINAL_REACH_TIMEOUT_S = 90.0
# The controller is restarted in this first part of the run only, so its last lifetime (the rest) is judged.
CONTROLLER_CHURN_FRACTION = 0.5


def default_duration_s() -> float:
    text = os.environ.get("SOAK_S", "")
    if not text:
        return DEFAULT_DURATION_S
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError as exc:
        nsbench.fail(f"SOAK_S: {exc}", 2)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=positive_float, default=None, metavar="S",
                        help=f"seconds of churn (default: $SOAK_S, else {DEFAULT_DURATION_S:g})")
    parser.add_argument("--seed", type=int, default=None, help="the churn's RNG seed (default: from the clock; printed)")
    parser.add_argument("--members", type=positive_int, default=10, help="members in the network (default 10)")
    parser.add_argument("--long-lived", type=positive_int, default=3, metavar="N",
                        help="members never left, deauthorized or restarted (default 3)")
    parser.add_argument("--sample-s", type=positive_float, default=10.0, metavar="S", help="seconds between samples (default 10)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy configs and daemon logs to DIR before cleanup")
    parser.add_argument("--no-save", action="store_true", help="print only, write no result file")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = default_duration_s()
    if args.seed is None:
        args.seed = int(time.time())
    if args.members < 3 or args.long_lived >= args.members:
        parser.error("--members must be at least 3 and more than --long-lived")
    if args.duration < args.sample_s * MIN_SAMPLES / (1 - WARMUP_FRACTION):
        parser.error(f"--duration must give at least {MIN_SAMPLES} samples after the warm-up")
    return args


# ------------------------------------------------------------------ the run
def wait_all_ready(network: SoakNetwork, timeout_s: float) -> list[str]:
    """Wait until every member's network is OK with its address; the names of those that never got there."""
    deadline = time.monotonic() + timeout_s
    waiting = list(network.members)
    while waiting and time.monotonic() < deadline:
        waiting = [m for m in waiting if not network.is_ready(m)]
        if waiting:
            time.sleep(0.5)
    return [m.name for m in waiting]


def all_pairs_reach(network: SoakNetwork, timeout_s: float) -> list[str]:
    """Ping every ordered pair, retrying the failed ones until timeout_s; 'a->b' for each pair that never answered."""
    deadline = time.monotonic() + timeout_s
    pairs: list[tuple[Member, Member]] = [(a, b) for a in network.members for b in network.members if a is not b]
    while pairs:
        results = network.ping_pairs(pairs)
        pairs = [pair for pair, ok in zip(pairs, results) if not ok]
        if not pairs or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    return [f"{a.name}->{b.name}" for a, b in pairs]


def soak(network: SoakNetwork, args: argparse.Namespace, result: dict[str, Any]) -> None:
    log(f"building: root, controller, {args.members} members ({args.long_lived} long-lived)")
    network.build()
    not_ready = wait_all_ready(network, READY_TIMEOUT_S)
    if not_ready:
        raise LabError(f"members not ready after {READY_TIMEOUT_S:g} s: {', '.join(not_ready)}")
    unreachable = all_pairs_reach(network, 30.0)
    if unreachable:
        raise LabError(f"before the churn, unreachable pairs: {', '.join(unreachable)}")
    started_s = time.monotonic()
    churn = Churn(network, random.Random(args.seed), started_s=started_s,
                  controller_restarts_until_s=started_s + CONTROLLER_CHURN_FRACTION * args.duration)
    sampler = Sampler(network, args.sample_s)
    result["churn"], result["sampler"] = churn, sampler
    log(f"churn for {args.duration:g} s, seed {args.seed}, a sample every {args.sample_s:g} s")
    sampler.start()
    deadline = started_s + args.duration
    next_note = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            churn.step(time.monotonic())
            if time.monotonic() >= next_note:
                left = deadline - time.monotonic()
                log(f"{sum(churn.events.values())} events, {churn.traffic.pings_ok}/{churn.traffic.pings} pings, "
                    f"{max(left, 0):.0f} s left")
                next_note += 60
            time.sleep(min(churn.rng.uniform(*STEP_PAUSE_S), max(0.0, deadline - time.monotonic())))
    finally:
        sampler.stop()
    log("churn over: undoing what is pending, then every pair must reach every other")
    churn.settle()
    result["not_ready"] = wait_all_ready(network, READY_TIMEOUT_S)
    result["unreachable"] = all_pairs_reach(network, FINAL_REACH_TIMEOUT_S)


# ------------------------------------------------------------------ report
SAMPLE_FIELDS = ("t_s", "pid", *ALLOWANCES, "online_members")


def sample_table(series: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[Any]]]:
    """The samples as one row per sample under a shared field list: a 30-minute run's file stays readable and small."""
    return {label: {"fields": list(SAMPLE_FIELDS), "rows": [[s.get(f) for f in SAMPLE_FIELDS] for s in samples]}
            for label, samples in series.items()}


def one_line_lists(path: Path) -> None:
    """Rewrite an indented JSON file with every innermost list of plain values on one line."""
    text = path.read_text()
    path.write_text(re.sub(r"\[\n\s+([^\[\]{}]*?)\n\s+\]",
                           lambda m: "[" + " ".join(line.strip() for line in m.group(1).splitlines()) + "]", text))


def figure(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / MIB:.1f}" if metric.endswith("bytes") else f"{value:g}"


def print_report(report: dict[str, list[dict[str, Any]]]) -> None:
    """One row per judged process lifetime: first -> last sample of each figure, and what grows."""
    table = Table(title="judged process lifetimes (first -> last sample)", title_justify="left")
    shown = ("rss_bytes", "fds", "threads", "sessions")
    for column in ("daemon", "pid", "span s", "RSS MiB", "fds", "threads", "sessions", "verdict"):
        table.add_column(column, justify="left" if column in ("daemon", "verdict") else "right")
    for label, entries in report.items():
        for entry in entries:
            if not entry["judged"]:
                continue
            metrics = entry["metrics"]
            cells = [f"{figure(m, metrics[m]['first'])} -> {figure(m, metrics[m]['last'])}" if m in metrics else "-"
                     for m in shown]
            grows = [m for m, f in metrics.items() if f.get("verdict") == "GROWS"]
            verdict = f"GROWS: {', '.join(grows)}" if grows else "bounded"
            table.add_row(label, str(entry["pid"]), f"{entry['to_s'] - entry['from_s']:.0f}", *cells, verdict)
    Console(highlight=False, width=max(100, shutil.get_terminal_size().columns)).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nsbench.require(("ping", "nft", "iperf3", "setpriv"), "iproute2 iputils-ping nftables iperf3 util-linux", tun=True)
    machine = nsbench.machine_info({"iperf3": nsbench.tool_version(["iperf3", "--version"])})
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work_dir = Path(tempfile.mkdtemp(prefix="l2mesh-soak-"))
    try:
        topology = Topology(work_dir)
    except LabError as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        nsbench.fail(str(exc), 1)
    network = SoakNetwork(topology, args.members, args.long_lived)
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            soak(network, args, result)
        except AssertionError as exc:  # the topology's waits fail as tests do
            raise LabError(str(exc).strip().splitlines()[0]) from None

    def cleanup() -> None:
        nsbench.cleanup(topology.lab, args.keep_logs, "logs and configs")
        shutil.rmtree(work_dir, ignore_errors=True)

    started = time.monotonic()
    nsbench.guarded_run(body, cleanup)
    churn: Churn = result["churn"]
    sampler: Sampler = result["sampler"]
    report = judge(sampler.series, args.duration)
    grows = growing(report)
    print_report(report)
    print(f"events: {dict(sorted(churn.events.items()))}")
    print(f"failed steps: {sum(churn.failures.values())}; pings {churn.traffic.pings_ok}/{churn.traffic.pings}, "
          f"between settled members {churn.traffic.settled_pings_ok}/{churn.traffic.settled_pings}")
    print(f"growing without bound: {', '.join(grows) if grows else 'none'}")
    print(f"after the churn: not ready {result['not_ready'] or 'none'}; unreachable pairs {result['unreachable'] or 'none'}")
    if not args.no_save:
        out = RESULTS_DIR / f"soak-{stamp}.json"
        head = {"options": {"duration_s": args.duration, "seed": args.seed, "members": args.members,
                            "long_lived": args.long_lived, "sample_s": args.sample_s},
                "method": {"trend": "soak_trend.py: warm-up dropped, median of the last third vs the middle third, "
                                    "Theil-Sen slope of the last half with Sen's 95 % lower bound x span vs the allowance",
                           "allowances": {k: {"abs": a, "rel": r} for k, (a, r) in ALLOWANCES.items()},
                           "rss_bytes": "VmRSS of the daemon's process", "tree_rss_bytes": "Rss of it and its descendants",
                           "sessions": "members: peers with a session (controller and root included); controller: its sessions"}}
        tail = {"wall_s": round(time.monotonic() - started, 1), "events": dict(churn.events),
                "failed_steps": dict(churn.failures), "traffic": churn.traffic.to_json(),
                "not_ready": result["not_ready"], "unreachable": result["unreachable"],
                "growing": grows, "verdicts": report, "samples": sample_table(sampler.series)}
        nsbench.write_results(out, "soak", stamp, head, machine, tail)
        one_line_lists(out)
        print(f"written {display_path(out)}")
    return 1 if grows or result["unreachable"] or result["not_ready"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
