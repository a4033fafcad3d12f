"""The floor under a Python overlay's latency: a minimal Python forwarder's added RTT beside tinc's and l2mesh's.

Issue 17 asks l2mesh to add no more to a ping than tinc does. On these VMs
a daemon hop costs far more after idle than in a hot loop (latency.py), so
the question is what the least possible Python forwarder adds:
helpers/floor_forwarder.py (one TAP, one UDP socket, one peer, an epoll
loop, a frame sealed or opened per hop, nothing else) is run in net.py's
topology with no cipher, libsodium's and OpenSSL's ChaCha20-Poly1305, and
measured in the same rounds as the raw path, tinc and l2mesh: ping -i 0.2
and -i 0.01, avg and max. Rounds are interleaved; the summary gives each
system's median avg and its added RTT (minus the raw path's median).

Usage: .venv/bin/python benchmarks/python_floor.py [--rounds N] [--count-slow N] [--count-fast N]
                                                   [--cipher NAME ...] [--no-save]
Needs root, iproute2, ping, tincd (tinc is left out without it).
Results: benchmarks/results/floor-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import net  # noqa: E402
import nsbench  # noqa: E402
import small_packets  # noqa: E402

HELPER = Path(__file__).resolve().parent / "helpers" / "floor_forwarder.py"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FLOOR_PORT = 9950
FLOOR_DEV = "l2mbfloor"
RATES = ("0.2", "0.01")


class Floor(net.System):
    """helpers/floor_forwarder.py on both hosts, with one cipher."""

    layer, encrypted = "L2", True

    def __init__(self, ctx: net.Context, cipher: str, key: str) -> None:
        self.name = f"floor-{cipher}"
        self.encrypted = cipher != "none"
        super().__init__(ctx)
        self.cipher_name, self.key = cipher, key
        self.overlay: net.Overlay | None = None

    def up(self) -> net.Overlay:
        topo = self.ctx.topo
        daemons = []
        for label, ns, local, peer, address in (("h2", topo.h2, net.UL_B, net.UL_A, net.OV_B),
                                                ("h1", topo.h1, net.UL_A, net.UL_B, net.OV_A)):
            argv = [sys.executable, str(HELPER), "--tap", FLOOR_DEV, "--address", f"{address}/{net.OV_PREFIX}",
                    "--listen", f"{local}:{FLOOR_PORT}", "--peer", f"{peer}:{FLOOR_PORT}", "--key", self.key,
                    "--cipher", self.cipher_name]
            daemons.append(self.start_daemon(f"{self.name}-{label}", ns, argv))
        self.overlay = net.Overlay(target=net.OV_B, device=FLOOR_DEV, daemons=daemons)
        return self.overlay

    def down(self) -> None:
        self.stop_daemons(self.overlay)
        self.overlay = None


def measure(ctx: net.Context, system: net.System, args: argparse.Namespace) -> dict[str, Any]:
    overlay = system.up()
    try:
        net.wait_reachable(ctx.topo.h1, overlay)
        nsbench.wait_quiet(args.settle, net.QUIET_PCT)
        counts = {"0.2": args.count_slow, "0.01": args.count_fast}
        return {small_packets.ping_key(rate): small_packets.ping_stats(ctx.topo.h1, overlay.target, rate, counts[rate])
                for rate in RATES}
    finally:
        system.down()


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per system: median avg and max of each rate, and the avg's excess over the raw path's median."""
    systems = list(dict.fromkeys(row["system"] for row in rows))
    summary: dict[str, dict[str, Any]] = {}
    for name in systems:
        mine = [row for row in rows if row["system"] == name]
        summary[name] = {}
        for rate in RATES:
            key = small_packets.ping_key(rate)
            avg = small_packets.median_of(mine, key, "avg_ms")
            worst = max((row[key]["max_ms"] for row in mine if row[key]["max_ms"] is not None), default=None)
            summary[name][key] = {"avg_ms": avg, "max_ms": worst}
    base = summary.get("underlay")
    for name, figures in summary.items():
        for rate in RATES:
            key = small_packets.ping_key(rate)
            figures[key]["added_ms"] = (small_packets.added(figures[key]["avg_ms"], base[key]["avg_ms"])
                                        if base else None)
    return summary


def print_summary(summary: dict[str, dict[str, Any]], rounds: int) -> None:
    print(f"ping over each system, median of {rounds} round(s): avg (max) and added to the raw path, ms")
    print(f"  {'system':18}" + "".join(f"{f'-i {rate}':>28}" for rate in RATES))
    for name, figures in summary.items():
        cells = []
        for rate in RATES:
            f = figures[small_packets.ping_key(rate)]
            avg, worst, plus = (("-" if v is None else f"{v:.3f}") for v in (f["avg_ms"], f["max_ms"], f["added_ms"]))
            cells.append(f"{avg} ({worst}) +{plus}")
        print(f"  {name:18}" + "".join(f"{cell:>28}" for cell in cells))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="python_floor.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=net.positive_int, default=3, metavar="N", help="interleaved rounds (default 3)")
    parser.add_argument("--count-slow", type=net.positive_int, default=50, metavar="N", help="pings at -i 0.2 (default 50)")
    parser.add_argument("--count-fast", type=net.positive_int, default=500, metavar="N", help="pings at -i 0.01 (default 500)")
    parser.add_argument("--cipher", nargs="+", choices=("none", "libsodium", "openssl"), default=["none", "libsodium"],
                        metavar="NAME", help="the floor forwarder's ciphers: none, libsodium, openssl (default none libsodium)")
    parser.add_argument("--settle", type=float, default=5.0, metavar="S", help="wait up to S s for a quiet machine (default 5)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    nsbench.set_program("python_floor")
    args = parse_args(argv)
    nsbench.require(("ping", "ip"), "iproute2 iputils-ping", tun=True)
    machine = net.machine_info()
    stamp, lab = nsbench.new_run()
    ctx = net.Context(lab, [])
    key = secrets.token_hex(32)
    rows: list[dict[str, Any]] = []

    def body() -> None:
        net.cache_bytecode(ctx.work)  # the l2mesh daemons load cached bytecode, as an installed one does
        ctx.topo.create()
        systems: list[net.System] = [net.Underlay(ctx)]
        if shutil.which("tincd"):
            systems.append(net.Tinc(ctx))
        else:
            nsbench.log("tincd not installed: tinc left out")
        systems += [Floor(ctx, cipher, key) for cipher in args.cipher]
        systems.append(net.L2mesh(ctx))
        for round_no in range(1, args.rounds + 1):
            for system in systems:
                row = {"system": system.name, "round": round_no, **measure(ctx, system, args)}
                rows.append(row)
                nsbench.log(f"round {round_no}: {system.name} " + ", ".join(
                    f"-i {rate} avg {row[small_packets.ping_key(rate)]['avg_ms']} ms" for rate in RATES))

    nsbench.guarded_run(body, lambda: nsbench.cleanup(lab, None, "logs"))
    summary = summarize(rows)
    print_summary(summary, args.rounds)
    if not args.no_save:
        out = RESULTS_DIR / f"floor-{stamp}.json"
        nsbench.write_results(out, "python_floor", stamp, {"options": {"rounds": args.rounds, "ciphers": args.cipher}},
                              machine, {"rows": rows, "summary": summary})
        print(f"written {nsbench.display_path(out)}")
    if "underlay" not in summary:
        nsbench.fail("the raw path was not measured; no added RTT is meaningful", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
