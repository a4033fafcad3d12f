"""Memory of an idle member daemon: RSS, PSS and USS of all its processes, idle and under load.

Issue 17's target: an idle member daemon under 25 MiB of resident memory,
all its processes together (ZeroTier One idles at 13-15 MB). Two `l2mesh
daemon`s, members of one static network (net.py's l2mesh system: h1 -- router
-- h2 in namespaces of this run's lab), are started, pinged across the
overlay once (so each holds a session with the other), left idle, and read:

- rss_bytes: the sum of VmRSS over the daemon's process and its children
  (what `ps` and the issue count; shared library pages count in full);
- pss_bytes / uss_bytes: the same processes from /proc/PID/smaps_rollup,
  shared pages split between their users / private pages only;
- threads: the daemon's threads (each has a stack of its own).

With iperf3 installed, one TCP stream h1 -> h2 for --load seconds follows,
and the peak of the same figures during it (sampled every 0.2 s) and the
figures after it (idle again) are reported too.

command_lines: each daemon's /proc/PID/cmdline (it re-executes itself under
`python -OO -X no_debug_ranges`: l2mesh/edge/reexec.py).

import_probe: a fresh interpreter's RSS (with the daemon's options) bare
and after importing what `l2mesh daemon` imports (the CLI's module, then the daemon's), and the
third-party packages that import loads (what the daemon pays before it does
anything); kept_out: the modules l2mesh/edge/deferred_imports.py left as
stand-ins (or blocked, as OpenSSL's hashes), not loaded.

sessions.bytes_per_session: what a member's NodeCore holds per peer in use
(session, keys, path state) beyond the record of an idle known member, in
process (the unit tests' harness, SESSION_PEERS peers; object sizes reachable
from the core). Bytes per idle known member are benchmarks/idle_peers.py's.

Bytecode is cached, as for an installed l2mesh: a daemon that compiles its
modules from source at start-up (PYTHONDONTWRITEBYTECODE in a checkout)
holds about 1 MiB more. The cache goes to the run's work directory
(PYTHONPYCACHEPREFIX), filled before the daemons start by one import as
the daemon starts (plain) and one as it runs (-OO -X no_debug_ranges).

Usage: .venv/bin/python benchmarks/memory.py [--idle S] [--load S] [--keep-logs DIR] [--no-save]
Needs root, iproute2 and ping; the load part needs iperf3.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from l2mesh.lab import LabError, Proc

sys.path.insert(0, str(Path(__file__).resolve().parent))  # net.py and nsbench, next to this script
import net  # noqa: E402
import nsbench  # noqa: E402
from scale import retained_bytes  # noqa: E402
from net import DAEMON_FLAGS, DAEMON_IMPORTS  # noqa: E402
from nsbench import RESULTS_DIR, display_path, log, new_run, non_negative_float  # noqa: E402

nsbench.set_program("memory")  # after importing net, which names itself

TARGET_RSS_BYTES = 25 * 1024 * 1024
SAMPLE_INTERVAL_S = 0.2
SESSION_PEERS = 100

# ------------------------------------------------------------------ reading /proc
def _children(pid: int) -> list[int]:
    """Every descendant of pid (children of each of its threads, recursively)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        for child in (int(c) for c in text.split()):
            out.append(child)
            out.extend(_children(child))
    return out


def _kib_fields(path: str) -> dict[str, int]:
    """'Name:   123 kB' lines of a /proc file, in bytes."""
    fields: dict[str, int] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) * 1024
    return fields


def process_tree_memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS summed over pid and its descendants; the threads of pid."""
    totals = {"processes": 0, "rss_bytes": 0, "pss_bytes": 0, "uss_bytes": 0, "threads": 0}
    for each in [pid, *_children(pid)]:
        rollup = _kib_fields(f"/proc/{each}/smaps_rollup")
        if not rollup:
            continue  # gone meanwhile
        totals["processes"] += 1
        totals["rss_bytes"] += rollup.get("Rss", 0)
        totals["pss_bytes"] += rollup.get("Pss", 0)
        totals["uss_bytes"] += rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            totals["threads"] = int(line.split()[1])
    return totals


def command_line(pid: int) -> list[str]:
    """What pid runs now: after the daemon's re-execution, the interpreter's options show -OO."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]


def peak(samples: list[dict[str, int]]) -> dict[str, int]:
    return {key: max(s[key] for s in samples) for key in samples[0]} if samples else {}


class Sampler:
    """Samples the daemons' memory on a thread until stopped; keeps each figure's peak."""

    def __init__(self, daemons: list[Proc]) -> None:
        self.daemons = daemons
        self.samples: dict[str, list[dict[str, int]]] = {p.label: [] for p in daemons}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            for proc in self.daemons:
                self.samples[proc.label].append(process_tree_memory(proc.pid))

    def peaks(self) -> dict[str, dict[str, int]]:
        return {label: peak(samples) for label, samples in self.samples.items()}


# ------------------------------------------------------------------ import probe
PROBE = """
import json, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
before, loaded = rss(), set(sys.modules)
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
from l2mesh.edge.deferred_imports import pending
kept_out = sorted(m for m, module in sys.modules.items() if module is None or pending(module))
stdlib = set(sys.stdlib_module_names)
third = sorted({m.split('.')[0] for m in set(sys.modules) - loaded - set(kept_out)} - stdlib - {'l2mesh'})
print(json.dumps({'optimize': sys.flags.optimize, 'bare_rss_bytes': before, 'imported_rss_bytes': rss(),
                  'modules': len(sys.modules) - len(kept_out),
                  'third_party': third, 'kept_out': kept_out}))
"""


def import_probe() -> dict[str, Any]:
    """What importing the daemon's module costs a fresh interpreter run as the daemon is (DAEMON_FLAGS; this tree's code)."""
    done = subprocess.run([sys.executable, *DAEMON_FLAGS, "-c", PROBE, *DAEMON_IMPORTS], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout)


# ------------------------------------------------------------------ bytes per session
# Shared by every core (code, classes, modules): not what a peer costs.
def session_bytes(peers: int) -> dict[str, Any]:
    """What a member's NodeCore holds per peer in use (session, keys, path state) beyond its idle record.

    In process, through the unit tests' harness: peers + 1 members of one static network; the first sends
    one frame to each of the others, which makes a peer with a session of each.
    """
    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)  # tests.unit: the sans-IO harness
    from tests.unit.test_core import Mesh, udp_frame

    mesh = Mesh(peers + 1)
    member, others = mesh.members[0], mesh.members[1:]
    mesh.run(1.0)
    outside: list[object] = [mesh, mesh.network, member.transmit]
    for other in others:
        outside += [other, other.core, other.transmit]
    gc.collect()
    idle = retained_bytes(member.core, outside)
    for other in others:
        member.send(udp_frame(member, other.mac()), now=mesh.now)
        mesh.settle()
    if len(member.core.table.sessions) != peers:
        raise LabError(f"{len(member.core.table.sessions)} sessions, not {peers}")
    member.transmit.datagrams.clear()
    member.transmit.frames.clear()
    member.transmit.segmented.clear()
    gc.collect()
    in_use = retained_bytes(member.core, outside)
    return {"peers": peers, "core_idle_bytes": idle, "core_in_use_bytes": in_use,
            "bytes_per_session": round((in_use - idle) / peers)}


# ------------------------------------------------------------------ the run
def measure(ctx: net.Context, args: argparse.Namespace) -> dict[str, Any]:
    system = net.L2mesh(ctx)
    overlay = system.up()
    try:
        net.wait_reachable(ctx.topo.h1, overlay)
        log(f"overlay up; idle {args.idle:g} s")
        time.sleep(args.idle)
        result: dict[str, Any] = {"idle": {p.label: process_tree_memory(p.pid) for p in overlay.daemons},
                                  "command_lines": {p.label: command_line(p.pid) for p in overlay.daemons}}
        if args.load > 0 and shutil.which("iperf3"):
            log(f"one TCP stream h1 -> h2 for {args.load} s")
            server = net.start_iperf_server(ctx, overlay.target)
            try:
                with Sampler(overlay.daemons) as sampler:
                    report = net.iperf_client(ctx, overlay.target, args.load)
            finally:
                ctx.procs.stop(server)
            result["load_peak"] = sampler.peaks()
            result["load_gbps"] = round(report["end"]["sum_received"]["bits_per_second"] / 1e9, 3)
            time.sleep(2.0)
            result["after_load"] = {p.label: process_tree_memory(p.pid) for p in overlay.daemons}
        elif args.load > 0:
            log("iperf3 not installed: no figures under load")
        for proc in overlay.daemons:
            if proc.popen.poll() is not None:
                raise LabError(f"{proc.label} exited with code {proc.popen.returncode}: {proc.last_log_line()}")
        return result
    finally:
        system.down()


def mib(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


def print_summary(result: dict[str, Any], probe: dict[str, Any]) -> None:
    for phase in ("idle", "load_peak", "after_load"):
        for label, figures in result.get(phase, {}).items():
            print(f"{phase:10} {label}: RSS {mib(figures['rss_bytes'])}, PSS {mib(figures['pss_bytes'])}, "
                  f"USS {mib(figures['uss_bytes'])}, {figures['processes']} process(es), {figures['threads']} threads")
    if "imported_rss_bytes" in probe:
        print(f"import of {' + '.join(DAEMON_IMPORTS)} (python {' '.join(DAEMON_FLAGS)}): RSS {mib(probe['bare_rss_bytes'])} bare -> "
              f"{mib(probe['imported_rss_bytes'])}, {probe['modules']} modules; third-party: {', '.join(probe['third_party'])}; "
              f"kept out: {', '.join(probe['kept_out'])}")
    sessions = result["sessions"]
    print(f"per peer in use (session, keys, path state; {sessions['peers']} peers, in process): "
          f"{sessions['bytes_per_session']:,} bytes beyond an idle known member (benchmarks/idle_peers.py)")
    worst = max(f["rss_bytes"] for f in result["idle"].values())
    print(f"idle member daemon RSS (all processes, worst of two) {mib(worst)}: target < {mib(TARGET_RSS_BYTES)}: "
          f"{'met' if worst < TARGET_RSS_BYTES else 'NOT met'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="memory.py", description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=non_negative_float, default=10.0, metavar="S",
                        help="seconds idle after the first ping before reading (default 10)")
    parser.add_argument("--load", type=int, default=5, metavar="S", help="iperf3 seconds under load; 0: none (default 5)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy configs and daemon logs to DIR before cleanup")
    parser.add_argument("--no-save", action="store_true", help="print only, write no result file")
    args = parser.parse_args(argv)
    if args.load < 0:
        parser.error("--load must be 0 or more")
    args.daemon_args = []
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nsbench.require(("ping", "ss"), "iproute2 iputils-ping", tun=True)
    machine = nsbench.machine_info({"iperf3": nsbench.tool_version(["iperf3", "--version"]),
                                    "l2mesh": nsbench.tool_version([str(net.L2MESH_EXE), "--version"])})
    stamp, lab = new_run()
    ctx = net.Context(lab, args.daemon_args)
    result: dict[str, Any] = {}
    probe: dict[str, Any] = {}

    def body() -> None:
        nonlocal result
        log(f"namespaces {', '.join(ctx.topo.names)}")
        net.cache_bytecode(ctx.work)
        ctx.topo.create()
        result = measure(ctx, args)
        probe.update(import_probe())  # while the cache is there

    nsbench.guarded_run(body, lambda: nsbench.cleanup(ctx.lab, args.keep_logs, "logs and configs"))
    result["sessions"] = session_bytes(SESSION_PEERS)
    print_summary(result, probe)
    worst = max(f["rss_bytes"] for f in result["idle"].values())
    tail = {**result, "import_probe": probe, "target_rss_bytes": TARGET_RSS_BYTES,
            "idle_rss_bytes_worst": worst, "target_met": worst < TARGET_RSS_BYTES}
    print(json.dumps({"benchmark": "memory", **tail}))
    if not args.no_save:
        out = RESULTS_DIR / f"memory-{stamp}.json"
        head = {"options": {"idle_s": args.idle, "load_s": args.load},
                "method": {"rss_bytes": "sum of Rss over the daemon and its descendants (smaps_rollup)",
                           "pss_bytes": "sum of Pss", "uss_bytes": "sum of Private_Clean + Private_Dirty",
                           "load": "one TCP stream h1 -> h2 (iperf3), peaks sampled every 0.2 s",
                           "bytecode": "cached (PYTHONPYCACHEPREFIX in the run's work dir), as installed, plain and with the daemon's options"}}
        nsbench.write_results(out, "memory", stamp, head, machine, tail)
        print(f"written {display_path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
