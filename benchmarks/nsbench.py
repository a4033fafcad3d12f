"""What the namespace benchmarks (net.py, control.py) share.

Processes started in the background and stopped by PID, a topology of
network namespaces (a router and hosts behind it, nothing in the root
namespace, nothing routed outside 198.18.0.0/15), waiting for a quiet
machine, the machine's description, the result file, the command line's
number types and the run's guard: whatever happens, every process and
namespace the run made is gone at the end.

Not a benchmark itself: imported by the scripts next to it, which call
set_program() first (the name in their log lines and error messages).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from rich.console import Console

NS_PREFIX = "l2mb-"
UNDERLAY_NET = "198.18.0.0/15"  # RFC 2544 benchmarking range, one /24 per host
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The l2mesh next to this interpreter, so any clone's venv benchmarks its own code.
BIN = Path(sys.executable).parent

_program = "nsbench"
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def set_program(name: str) -> None:
    """The benchmark's name: "[name] ..." on log lines, "name.py: error: ..." on failures."""
    global _program
    _program = name


class BenchError(Exception):
    """A step failed; the message is one line fit for the report."""


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException so per-measurement error handling lets it through to cleanup."""


def log(message: str) -> None:
    _stderr.print(f"[{_program}] {message}", markup=False)


def fail(message: str, code: int) -> NoReturn:
    print(f"{_program}.py: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def display_path(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


# ----------------------------------------------------------------- processes
def run(argv: Sequence[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion; a timeout or (if check) a failure becomes a BenchError."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{shlex.join(argv)} timed out after {timeout:g} s") from None
    except FileNotFoundError:
        raise BenchError(f"{argv[0]} not found") from None
    if check and done.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} failed ({done.returncode}): {last_line(done.stderr or done.stdout)}")
    return done


def in_ns(ns: str, *argv: str) -> list[str]:
    # `ip netns exec` execs the command, so a Popen's PID is the program's own.
    return ["ip", "netns", "exec", ns, *argv]


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the script is SIGKILLed its finally block never runs; the kernel then
    # still sends our processes SIGTERM, so none outlives the run. (Background
    # processes are started from the main thread only: the signal follows the
    # death of the thread that forked.)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Proc:
    label: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float  # monotonic, just before the fork

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> list[str]:
        return self.log_text().splitlines()[-lines:]

    def last_log_line(self) -> str:
        return last_line("\n".join(self.log_tail()))


class Processes:
    """Every process this run started in the background, so cleanup stops exactly those (by PID)."""

    def __init__(self) -> None:
        self._live: list[Proc] = []

    def start(self, label: str, argv: Sequence[str], log_path: Path, stdin: int | None = subprocess.DEVNULL,
              stdout: int | None = None) -> Proc:
        """argv in the background, its output (stderr only, when stdout is given) to log_path."""
        with open(log_path, "wb") as out:
            started = time.monotonic()
            popen = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=out if stdout is None else stdout,
                stderr=out,
                # Own session: a Ctrl-C on the terminal reaches only us, and we
                # stop them in order (tincd 1.0 would take SIGINT as "raise the
                # debug level" and keep running).
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        proc = Proc(label, popen, log_path, started)
        self._live.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        # Popen only signals a child it has not reaped yet, so a recycled PID is never hit.
        if proc.popen.poll() is None:
            proc.popen.terminate()
            try:
                proc.popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(STOP_GRACE_S)
        for pipe in (proc.popen.stdin, proc.popen.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if proc in self._live:
            self._live.remove(proc)

    def finish(self, proc: Proc, timeout: float) -> int:
        """Wait for a command that ends by itself; killed (and a BenchError) after timeout."""
        try:
            return proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise BenchError(f"{proc.label} did not finish within {timeout:g} s") from None
        finally:
            if proc.popen.poll() is not None and proc in self._live:
                self._live.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._live)):
            try:
                self.stop(proc)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log(f"could not stop {proc.label} (pid {proc.pid}): {exc}")


# ------------------------------------------------------------------ topology
class Topology:
    """A router namespace and one namespace per host, each host on its own /24 behind it.

    Host number i (from 1, in the order given) is 198.18.i.2 on its eth0, the
    router 198.18.i.1 on its end of the veth (named by ports, default lan<i>).
    Only the underlay range is routed; there is no default route anywhere.
    """

    def __init__(self, suffix: str, hosts: Sequence[str], ports: Sequence[str] | None = None) -> None:
        self.prefix = f"{NS_PREFIX}{suffix}"
        self.router = f"{self.prefix}-rt"
        self.hosts = tuple(hosts)
        self.ports = tuple(ports) if ports is not None else tuple(f"lan{i}" for i in range(1, len(self.hosts) + 1))
        self.ns = {name: f"{self.prefix}-{name}" for name in self.hosts}
        self.created: list[str] = []

    @property
    def names(self) -> list[str]:
        return [*self.ns.values(), self.router]

    def underlay_ip(self, host: str) -> str:
        return f"198.18.{self.hosts.index(host) + 1}.2"

    def create(self, check: Sequence[tuple[str, str]]) -> None:
        """Make the namespaces and links, then ping each (source host, destination host) of check."""
        existing = existing_namespaces()
        for ns in self.names:
            if ns in existing:
                raise BenchError(f"namespace {ns} already exists (another run?); remove it: ip netns del {ns}")
        for ns in self.names:
            run(["ip", "netns", "add", ns], timeout=10)
            self.created.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"], 10)
        run(in_ns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1"), 10)
        for index, (name, port) in enumerate(zip(self.hosts, self.ports), start=1):
            ns = self.ns[name]
            # veths are born inside the namespaces, so the root namespace never sees them.
            run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.router], 10)
            run(["ip", "-n", ns, "addr", "add", f"198.18.{index}.2/24", "dev", "eth0"], 10)
            run(["ip", "-n", ns, "link", "set", "eth0", "up"], 10)
            run(["ip", "-n", self.router, "addr", "add", f"198.18.{index}.1/24", "dev", port], 10)
            run(["ip", "-n", self.router, "link", "set", port, "up"], 10)
            run(["ip", "-n", ns, "route", "add", UNDERLAY_NET, "via", f"198.18.{index}.1"], 10)
        for src, dst in check:
            if run(in_ns(self.ns[src], "ping", "-c", "1", "-W", "2", self.underlay_ip(dst)), 10, check=False).returncode:
                raise BenchError(f"the underlay does not route {src} -> {dst}")

    def delete(self) -> None:
        for ns in reversed(self.created):
            try:
                run(["ip", "netns", "del", ns], timeout=10)
            except BenchError as exc:
                log(f"could not delete namespace {ns}: {exc}")
        self.created.clear()


def existing_namespaces() -> set[str]:
    out = run(["ip", "netns", "list"], timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


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
        done = run(argv, timeout=10, check=False)
    except BenchError:
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


def require(why_root: str, tools: Sequence[str], debian_packages: str) -> None:
    """Root, and the tools on PATH; else a usage error (exit 2)."""
    if os.geteuid() != 0:
        fail(f"needs root ({why_root})", 2)
    for tool in tools:
        if not shutil.which(tool):
            fail(f"{tool} not found (Debian: apt-get install {debian_packages})", 2)


# ---------------------------------------------------------------------- run
def new_run() -> tuple[str, str, Path]:
    """(UTC timestamp for the result file, random suffix of the namespace names, a fresh work dir)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = secrets.token_hex(2)
    return stamp, suffix, Path(tempfile.mkdtemp(prefix=f"{NS_PREFIX}{suffix}-"))


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def guarded_run(body: Callable[[], None], cleanup: Callable[[], None]) -> None:
    """body, then cleanup whatever happened; a BenchError, Ctrl-C or SIGTERM in body then ends the script."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    error: tuple[str, int] | None = None
    try:
        body()
    except BenchError as exc:
        error = (str(exc), 1)
    except KeyboardInterrupt:
        error = ("interrupted", 130)
    except Terminated:
        error = ("terminated", 143)
    finally:
        cleanup()
    if error:
        fail(*error)


def cleanup(procs: Processes, topo: Topology, work: Path, keep_logs: Path | None, copied: str,
            first: Callable[[], None] | None = None, ignore: Callable[[Any, list[str]], set[str]] | None = None) -> None:
    """Stop every process, delete every namespace and the work dir (copied to keep_logs first, if given).

    first runs once the signals are ignored, before the processes stop.
    """
    # A second Ctrl-C must not cut cleanup short and leave namespaces or processes behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if first is not None:
        first()
    procs.stop_all()
    topo.delete()
    if keep_logs is not None:
        try:
            shutil.copytree(work, keep_logs, dirs_exist_ok=True, ignore=ignore)
            log(f"{copied} copied to {keep_logs}")
        except OSError as exc:
            log(f"could not copy logs to {keep_logs}: {exc}")
    shutil.rmtree(work, ignore_errors=True)
