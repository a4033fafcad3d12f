"""The machinery of the crash loops (test_crash_loops.py): SIGKILL a real process at a random moment of a
stream of changes, restart it on the same state, and compare what it holds with what it acknowledged.

A change whose answer came back was either acknowledged (it must survive every later crash) or refused
(it changed nothing); a change the kill cut off is in doubt: after the restart it must be there whole or
not at all. Each start waits for systemd's READY=1 on a notify socket (a path: every namespace reaches
it), never for a guessed sleep. The choices (kill mode, delays, changes) come from one seeded RNG: a
failure names the seed and the iteration to replay (CRASH_SEED).
"""

from __future__ import annotations

import ctypes
import os
import random
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from l2mesh.lab import Proc

T = TypeVar("T")

CRASH_N_ENV = "CRASH_N"  # iterations per loop (`make crashloop` sets 200)
CRASH_SEED_ENV = "CRASH_SEED"
DEFAULT_SEED = 16  # issue 16
READY_TIMEOUT_S = 30.0
CHANGE_TIMEOUT_S = 30.0
STREAM_WINDOW_S = 0.5  # a stream of changes is cut within this
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def crash_iterations(default: int) -> int:
    text = os.environ.get(CRASH_N_ENV, "").strip()
    return int(text) if text else default


def crash_seed() -> int:
    text = os.environ.get(CRASH_SEED_ENV, "").strip()
    return int(text) if text else DEFAULT_SEED


# -- readiness and namespaces -------------------------------------------------------------------------
class NotifySocket:
    """A notify socket as systemd makes one; READY=1 from the process started last ends a start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)

    def env(self) -> list[str]:
        """The argv prefix that hands a program this socket (`env` execs: the PID stays the program's)."""
        return ["env", f"NOTIFY_SOCKET={self.path}"]

    def wait_ready(self, process: Proc, log_text: Callable[[], str]) -> None:
        """Until `process` says READY=1 (a killed predecessor's late datagram is skipped); AssertionError if it exits."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{process.label} exited {process.returncode} while starting: {log_text()}")
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            except socket.timeout:
                continue
            sender = next((_UCRED.unpack(c[: _UCRED.size])[0] for level, kind, c in ancillary
                           if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS), None)
            if sender == process.pid and data.split(b"\n")[0] == b"READY=1":
                return
        raise AssertionError(f"{process.label} not ready within {READY_TIMEOUT_S:g} s: {log_text()}")

    def close(self) -> None:
        self.sock.close()


def _enter_namespace(namespace: str) -> None:
    """setns(2) for the calling thread only: the sockets it opens from now on are the namespace's."""
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class Worker:
    """One thread that runs the changes (inside a network namespace, when given one), so the test's
    thread stays free to kill the process at any moment."""

    def __init__(self, namespace: str | None = None) -> None:
        if namespace is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="crash-worker")
        else:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="crash-worker", initializer=_enter_namespace, initargs=(namespace,))

    def submit(self, function: Callable[[], T]) -> Future[T]:
        return self._pool.submit(function)

    def call(self, function: Callable[[], T]) -> T:
        return self.submit(function).result(CHANGE_TIMEOUT_S * 4)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# -- outcomes and the loop ---------------------------------------------------------------------------
class Verdict(Enum):
    ACKED = "acknowledged"
    REFUSED = "refused"  # a definite no: nothing changed
    IN_DOUBT = "in doubt"  # no answer: the kill cut it off


@dataclass
class Outcome:
    change: Any
    verdict: Verdict
    latency_s: float


class Subject(Protocol):
    """A process under a crash loop and a model of what it acknowledged."""

    worker: Worker

    def launch(self) -> None:
        """Start the process, not waiting for it."""

    def start(self) -> None:
        """Start the process and return once it is ready."""

    def kill(self) -> None:
        """SIGKILL it by PID; AssertionError if it had already exited by itself."""

    def change(self, rng: random.Random) -> Outcome:
        """Make one random change (on the worker thread); the model follows what was acknowledged."""

    def check(self, in_doubt: Any | None) -> bool | None:
        """After a start: everything acknowledged is there, the in-doubt change whole or absent (whether it took effect)."""


class KillMode(Enum):
    AFTER_ACK = "right after an acknowledged change"
    STREAM = "at a random moment of a stream of changes"
    MID_REQUEST = "while one change is in flight"
    DURING_START = "while starting"


@dataclass
class LoopStats:
    iterations: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    in_doubt_applied: int = 0
    in_doubt_absent: int = 0
    start_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> str:
        starts = sorted(self.start_s) or [0.0]
        latency = statistics.median(self.latency_s) if self.latency_s else 0.0
        return (
            f"{self.iterations} kills in {self.wall_s:.1f} s ({self.wall_s / max(1, self.iterations):.2f} s each); "
            f"modes {self.modes}; changes {self.verdicts}; in doubt: {self.in_doubt_applied} took effect, "
            f"{self.in_doubt_absent} did not; start median {statistics.median(starts):.2f} s, max {starts[-1]:.2f} s; "
            f"change median {latency * 1000:.1f} ms"
        )


def _changes(subject: Subject, rng: random.Random, count: int, stop: threading.Event, stats: LoopStats) -> Outcome | None:
    """Up to count changes, one after another, until stopped; the in-doubt one that ends the run, if any."""
    for _ in range(count):
        if stop.is_set():
            return None
        outcome = subject.change(rng)
        stats.verdicts[outcome.verdict.value] = stats.verdicts.get(outcome.verdict.value, 0) + 1
        if outcome.verdict is Verdict.IN_DOUBT:
            return outcome
        stats.latency_s.append(outcome.latency_s)
    return None


def _kill_during(subject: Subject, run: Future[Outcome | None], delay_s: float, stop: threading.Event) -> Outcome | None:
    time.sleep(delay_s)
    subject.kill()
    stop.set()
    return run.result(CHANGE_TIMEOUT_S)


def run_crash_loop(subject: Subject, iterations: int, seed: int, log: Callable[[str], None] = print) -> LoopStats:
    """iterations kills, each at a moment drawn from the seeded RNG, each followed by a restart and a check;
    the subject is left running after the last check."""
    rng = random.Random(seed)
    stats = LoopStats()
    began = time.monotonic()
    in_doubt: Outcome | None = None
    for iteration in range(iterations):
        # The first kill lands in the very first start, on an empty state directory (identity, token, schema).
        mode = KillMode.DURING_START if iteration == 0 else rng.choice(list(KillMode))
        stats.modes[mode.name] = stats.modes.get(mode.name, 0) + 1
        worker_rng = random.Random(rng.getrandbits(64))
        context = f"seed {seed}, iteration {iteration} (kill {mode.value})"
        try:
            if mode is KillMode.DURING_START:
                # No check: the state is checked at the next start, the in-doubt change still in doubt.
                start_estimate = statistics.median(stats.start_s) if stats.start_s else 1.0
                subject.launch()
                time.sleep(rng.uniform(0, start_estimate * 1.2))
                subject.kill()
                stats.iterations += 1
                continue
            started = time.monotonic()
            subject.start()
            stats.start_s.append(time.monotonic() - started)
            _count_in_doubt(stats, subject.check(in_doubt.change if in_doubt else None))
            stop = threading.Event()
            if mode is KillMode.AFTER_ACK:
                count = rng.randint(1, 4)
                in_doubt = subject.worker.call(lambda: _changes(subject, worker_rng, count, stop, stats))
                subject.kill()
            elif mode is KillMode.STREAM:
                run = subject.worker.submit(lambda: _changes(subject, worker_rng, 10_000, stop, stats))
                in_doubt = _kill_during(subject, run, rng.uniform(0, STREAM_WINDOW_S), stop)
            else:
                latency = statistics.median(stats.latency_s[-50:]) if stats.latency_s else 0.02
                run = subject.worker.submit(lambda: _changes(subject, worker_rng, 1, stop, stats))
                in_doubt = _kill_during(subject, run, rng.uniform(0, latency * 1.5), stop)
        except AssertionError as exc:
            raise AssertionError(f"{context}: {exc}") from exc
        stats.iterations += 1
    try:
        subject.start()
        _count_in_doubt(stats, subject.check(in_doubt.change if in_doubt else None))
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}, after the last kill: {exc}") from exc
    stats.wall_s = time.monotonic() - began
    log(stats.summary())
    return stats


def _count_in_doubt(stats: LoopStats, applied: bool | None) -> None:
    if applied is True:
        stats.in_doubt_applied += 1
    elif applied is False:
        stats.in_doubt_absent += 1


# -- comparing states --------------------------------------------------------------------------------
class _Any:
    """A value the check cannot know beforehand (an address from a pool, a new network's id)."""

    def __repr__(self) -> str:
        return "<any>"


ANY: Any = _Any()


def differences(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Where actual is not expected (ANY matches anything), one line each."""
    if expected is ANY:
        return []
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual), key=str):
            path = f"{where}/{key}"
            if key not in actual:
                out.append(f"{path}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{path}: unexpected {actual[key]!r}")
            else:
                out += differences(expected[key], actual[key], path)
        return out
    if expected != actual:
        return [f"{where or '/'}: expected {expected!r}, found {actual!r}"]
    return []


def temporary_files(state_dir: Path) -> list[str]:
    """Half-written files (statefile.py's temporary names) anywhere in a state directory."""
    return sorted(str(p.relative_to(state_dir)) for p in state_dir.rglob(".*") if ".tmp." in p.name or ".new." in p.name)


def log_since(proc_log: Path, offset: int) -> str:
    try:
        with open(proc_log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def log_size(proc_log: Path) -> int:
    try:
        return proc_log.stat().st_size
    except OSError:
        return 0
