"""A/B of UDP segmentation offload on the receiving TAP (issue 17): iperf3 -u -b 0 across l2mesh, USO on and off.

In net.py's topology (h1 -- rt -- h2), per round and interleaved: l2mesh up
with USO (the default) and with L2MESH_NO_USO=1, 64-byte and 1400-byte UDP
floods h1 -> h2, delivered pkt/s and loss from iperf3's receiver, and the
receiving daemon's coalescing counters (`l2mesh status --json`: uso_writes,
uso_datagrams). Medians at the end; one JSON line per measurement on stdout.

Usage: .venv/bin/python benchmarks/uso_ab.py [--rounds N] [--time S]   (root; iperf3, ping)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import net  # noqa: E402
import nsbench  # noqa: E402
import small_packets  # noqa: E402
from l2mesh.lab import in_namespace, run  # noqa: E402

MODES = {"uso": {}, "no-uso": {"L2MESH_NO_USO": "1"}}


def receiver_counters(system: net.L2mesh) -> dict[str, int]:
    argv = [str(net.L2MESH_EXE), "status", "--json", "--state-dir", str(system.state_dir("h2"))]
    done = run(in_namespace(system.ctx.topo.h2, argv), 15, check=False)
    try:
        return dict(json.loads(done.stdout)["counters"].get("uso", {}))
    except (ValueError, KeyError):
        return {}


def measure(ctx: net.Context, mode: str, seconds: int) -> list[dict[str, Any]]:
    os.environ.pop("L2MESH_NO_USO", None)
    os.environ.update(MODES[mode])
    system = net.L2mesh(ctx)
    rows = []
    try:
        overlay = system.up()
        net.wait_reachable(ctx.topo.h1, overlay)
        for payload in small_packets.UDP_PAYLOADS:
            before = receiver_counters(system)
            report = net.iperf_run(ctx, overlay.target, ["-u", "-b", "0", "-l", str(payload)], seconds)
            after = receiver_counters(system)
            delivered = small_packets.udp_delivered(report, payload)
            coalesced = {key: after.get(key, 0) - before.get(key, 0) for key in ("uso_writes", "uso_datagrams")}
            rows.append({"mode": mode, "payload": payload, **delivered, **coalesced})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        system.down()
        os.environ.pop("L2MESH_NO_USO", None)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=nsbench.positive_int, default=3)
    parser.add_argument("--time", type=nsbench.positive_int, default=5, help="seconds per iperf3 flood (default 5)")
    args = parser.parse_args()
    nsbench.require(("ping", "iperf3"), "iputils-ping iperf3")
    _, lab = nsbench.new_run()
    ctx = net.Context(lab, [])
    rows: list[dict[str, Any]] = []

    def body() -> None:
        ctx.topo.create()
        for round_no in range(args.rounds):
            order = list(MODES) if round_no % 2 == 0 else list(reversed(MODES))
            for mode in order:
                rows.extend(measure(ctx, mode, args.time))

    nsbench.guarded_run(body, lambda: nsbench.cleanup(ctx.lab, None, "logs"))
    for payload in small_packets.UDP_PAYLOADS:
        for mode in MODES:
            picked = [r for r in rows if r["mode"] == mode and r["payload"] == payload]
            if picked:
                each = ", ".join(f"{r['pps']:,}" for r in picked)
                print(
                    f"{payload:>5} B {mode:>7}: median {statistics.median(r['pps'] for r in picked):>9,.0f} pkt/s, "
                    f"loss {statistics.median(r['loss_pct'] for r in picked):5.1f} %, "
                    f"datagrams per coalesced write {sum(r['uso_datagrams'] for r in picked) / max(1, sum(r['uso_writes'] for r in picked)):.1f}"
                    f" ({len(picked)} runs: {each})"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
