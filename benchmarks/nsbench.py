"""What the namespace benchmarks (net.py, control.py) share, on top of the namespace lab (l2mesh.lab).

The lab owns namespaces, veths and processes (stopped by PID, swept if a
run is killed); this file holds the benchmarks' own parts: the topology
they measure in (a router and hosts behind it, nothing in the root
namespace, nothing routed outside 198.18.0.0/15), waiting for a quiet
machine, the machine's description, the result file, the command line's
number types and the run's guard: whatever happens, every process and
namespace the run made is gone at the end.

Not a benchmark itself: imported by the scripts next to it, which call
set_program() first (the name in their log lines and error messages).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from rich.console import Console

from l2mesh.lab import Lab, LabError, NetnsHost, TeardownError, environment_problem, run

PREFIX = "l2mb-"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The l2mesh next to this interpreter, so any clone's venv benchmarks its own code.
BIN = Path(sys.executable).parent

_program = "nsbench"
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def set_program(name: str) -> None:
    """The benchmark's name: "[name] ..." on log lines, "name.py: error: ..." on failures."""
    global _program
    _program = name


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException so per-measurement error handling lets it through to cleanup."""


def log(message: str) -> None:
    _stderr.print(f"[{_program}] {message}", markup=False)


def fail(message: str, code: int) -> NoReturn:
    print(f"{_program}.py: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def display_path(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


# ------------------------------------------------------------------ topology
def build_underlay(lab: Lab, hosts: Sequence[str], ports: Sequence[str] | None = None,
                   check: Sequence[tuple[str, str]] = ()) -> dict[str, NetnsHost]:
    """A router and one namespace per host, each host on its own /24 behind it; then ping each (source, destination) of check.

    Host number i (from 1, in the order given) is 198.18.i.2 on its eth0, the
    router 198.18.i.1 on its end of the veth (named by ports, default lan<i>).
    Only the underlay range is routed; there is no default route anywhere.
    """
    lab.add_router()
    made = {}
    for index, name in enumerate(hosts, start=1):
        made[name] = lab.add_host(name, index, ports[index - 1] if ports else None)
    for src, dst in check:
        if lab.run_in(made[src].namespace, ["ping", "-c", "1", "-W", "2", made[dst].ip], 10, check=False).returncode:
            raise LabError(f"the underlay does not route {src} -> {dst}")
    return made


# ------------------------------------------------------------- machine load
def machine_ticks() -> tuple[int, int]:
    """(busy, idle) clock ticks summed over all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal, idle + iowait


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Busy share of all CPUs (0 to 1) between two machine_ticks() samples."""
    busy, idle = after[0] - before[0], after[1] - before[1]
    return busy / max(busy + idle, 1)


def wait_quiet(settle_s: float, quiet_pct: float, stop: threading.Event | None = None) -> float:
    """Wait (at most settle_s, or until stop is set) until under quiet_pct % of all CPUs are busy.

    Other jobs on a shared machine would skew the figures; the caller measures
    anyway once the time is up. Returns the last 1 s sample, as busy_share().
    """
    deadline = time.monotonic() + settle_s
    while True:
        before = machine_ticks()
        time.sleep(1.0)
        share = busy_share(before, machine_ticks())
        if share * 100 < quiet_pct or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return share


# ------------------------------------------------------------------ results
def tool_version(argv: list[str]) -> str | None:
    try:
        done = run(argv, 10, check=False)
    except LabError:
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def machine_info(versions: dict[str, str | None], **extra: Any) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else None,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "versions": versions,
        **extra,
    }


def write_results(path: Path, benchmark: str, stamp: str, head: dict[str, Any], machine: dict[str, Any],
                  tail: dict[str, Any]) -> None:
    """The result file: benchmark, timestamp, head's fields, machine, loadavg_end, tail's fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": benchmark,
        "timestamp": stamp,
        **head,
        "machine": machine,
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        **tail,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ------------------------------------------------------------- command line
class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)", 2)


def _number_type(convert: Callable[[str], Any], noun: str, ok: Callable[[Any], bool], bound: str,
                 name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value

    parse.__name__ = name
    return parse


positive_int: Callable[[str], int] = _number_type(int, "an integer", lambda v: v >= 1, "at least 1", "positive_int")
positive_float: Callable[[str], float] = _number_type(float, "a number", lambda v: v > 0, "more than 0", "positive_float")
non_negative_float: Callable[[str], float] = _number_type(float, "a number", lambda v: v >= 0, "0 or more",
                                                          "non_negative_float")


def require(tools: Sequence[str], debian_packages: str, tun: bool = False) -> None:
    """Root, the tools on PATH (and /dev/net/tun); else a usage error (exit 2)."""
    problem = environment_problem(tools, tun=tun)
    if problem is not None:
        fail(problem + ("" if problem.startswith("needs root") else f" (Debian: apt-get install {debian_packages})"), 2)


# ---------------------------------------------------------------------- run
def new_run() -> tuple[str, Lab]:
    """(UTC timestamp for the result file, the run's lab: namespaces l2mb-<run id>-*, a fresh work dir)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        return stamp, Lab(PREFIX)
    except LabError as exc:
        fail(str(exc), 1)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def environment_restored(name: str) -> Iterator[None]:
    """Environment variable name as it is now is put back on the way out, whatever the body set it to."""
    saved = os.environ.get(name)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def guarded_run(body: Callable[[], None], cleanup: Callable[[], None]) -> None:
    """body, then cleanup whatever happened; a LabError, Ctrl-C or SIGTERM in body then ends the script."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    error: tuple[str, int] | None = None
    try:
        body()
    except LabError as exc:
        error = (str(exc), 1)
    except KeyboardInterrupt:
        error = ("interrupted", 130)
    except Terminated:
        error = ("terminated", 143)
    finally:
        cleanup()
    if error:
        fail(*error)


def cleanup(lab: Lab, keep_logs: Path | None, copied: str, first: Callable[[], None] | None = None,
            ignore: Callable[[Any, list[str]], set[str]] | None = None) -> None:
    """Stop every process, delete every namespace and the work dir (copied to keep_logs first, if given).

    first runs once the signals are ignored, before the processes stop.
    """
    # A second Ctrl-C must not cut cleanup short and leave namespaces or processes behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if first is not None:
        first()
    lab.processes.stop_all()  # before the copy, so the logs are complete
    if keep_logs is not None:
        try:
            shutil.copytree(lab.work_dir, keep_logs, dirs_exist_ok=True, ignore=ignore)
            log(f"{copied} copied to {keep_logs}")
        except OSError as exc:
            log(f"could not copy logs to {keep_logs}: {exc}")
    try:
        lab.close()
    except TeardownError as exc:
        log(str(exc))
