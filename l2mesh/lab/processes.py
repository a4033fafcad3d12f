"""Background processes of a lab run: started with a log file, stopped by the PID the lab started, never by name.

A process is stopped with SIGTERM and, after a grace time, SIGKILL. Its
kernel start time is kept next to its PID, so that a sweep after the run
died (sweep.py) signals only a process that is still the one started, not
another that reused the number.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from l2mesh.lab.commands import last_line
from l2mesh.lab.errors import LabError

STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
KILL_WAIT_S = 5.0  # after SIGKILL: a process still there now is stuck in the kernel


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on; [] when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name (field 2) may contain spaces and parentheses: count fields after its last ')'.
    return stat.rpartition(")")[2].split()


def process_start_ticks(pid: int) -> int | None:
    """The kernel's start time of pid (clock ticks since boot, field 22 of /proc/PID/stat), or None when there is none."""
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def is_running(pid: int, start_ticks: int | None) -> bool:
    """pid is still the process that had this start time: not gone, not a zombie, not another that reused the number."""
    fields = _stat_fields(pid)
    return (start_ticks is not None and len(fields) > 19 and fields[0] != "Z"
            and fields[19].isdigit() and int(fields[19]) == start_ticks)


@dataclass(eq=False)
class Proc:
    """One background process: what the lab started, where its output goes, when."""

    label: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float  # monotonic, just before the fork
    start_ticks: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout_s: float | None = None) -> int:
        return self.popen.wait(timeout_s)

    def send_signal(self, sig: int) -> None:
        # Popen signals only a child it has not reaped yet, so a recycled PID is never hit.
        self.popen.send_signal(sig)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> list[str]:
        return self.log_text().splitlines()[-lines:]

    def last_log_line(self) -> str:
        return last_line("\n".join(self.log_tail()))


@dataclass
class Stopped:
    """What stopping a set of processes took."""

    stopped: list[str] = field(default_factory=list)  # labels of those still running when asked to stop
    unclean: list[str] = field(default_factory=list)  # "label exited N": a non-zero exit on SIGTERM
    killed: list[str] = field(default_factory=list)  # labels that needed SIGKILL
    stuck: list[str] = field(default_factory=list)  # "label (pid N)" still there after SIGKILL


class Processes:
    """Every background process a lab run started and has not stopped yet, so cleanup stops exactly those."""

    def __init__(self, log_dir: Path, *, die_with_owner: bool = True, on_change: Callable[[], None] | None = None) -> None:
        """die_with_owner: the kernel sends each process SIGTERM when the thread that started it dies,
        so none outlives a run that was SIGKILLed (off for the demo's --keep, whose processes stay)."""
        self.log_dir = log_dir
        self.die_with_owner = die_with_owner
        self.on_change = on_change
        self.live: list[Proc] = []

    def start(
        self,
        label: str,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = None,
    ) -> Proc:
        """argv in the background; its output (stderr only, when stdout is given) appended to log (default log_dir/label.log)."""
        log_path = log if log is not None else self.log_dir / f"{label}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = list(argv)
        # The parent-death signal follows the thread that forked, not the process: only the main
        # thread's children get it (a worker thread's end would otherwise stop them).
        if self.die_with_owner and threading.current_thread() is threading.main_thread():
            command = ["setpriv", "--pdeathsig", "TERM", *command]  # setpriv execs: the PID stays the program's
        with open(log_path, "ab") as out:
            started = time.monotonic()
            try:
                popen = subprocess.Popen(
                    command,
                    stdin=stdin,
                    stdout=out if stdout is None else stdout,
                    stderr=out,
                    # Its own session: a Ctrl-C on the terminal reaches only the owner, which stops
                    # everything in order (tincd 1.0, for one, takes SIGINT as "more debug output").
                    start_new_session=True,
                )
            except OSError as exc:
                raise LabError(f"cannot start {label} ({argv[0]}): {exc.strerror or exc}") from None
        proc = Proc(label, popen, log_path, started, process_start_ticks(popen.pid))
        self.live.append(proc)
        self._changed()
        return proc

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> int | None:
        """Signal proc (by its PID), SIGKILL after grace_s; its exit code (None if it would not die)."""
        try:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.wait(KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            return None
        finally:
            self._close_pipes(proc)
            if proc.poll() is not None:
                self._forget(proc)
        return proc.returncode

    def finish(self, proc: Proc, timeout_s: float) -> int:
        """Wait for a command that ends by itself; stopped, and a LabError, after timeout_s."""
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise LabError(f"{proc.label} did not finish within {timeout_s:g} s") from None
        finally:
            if proc.poll() is not None:
                self._close_pipes(proc)
                self._forget(proc)

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> Stopped:
        """SIGTERM to all at once (daemons remove their TAPs on it), SIGKILL to what is left after grace_s."""
        result = Stopped()
        procs = list(reversed(self.live))
        running = [p for p in procs if p.poll() is None]
        for proc in running:
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        for proc in running:
            result.stopped.append(proc.label)
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                result.killed.append(proc.label)
                try:
                    proc.wait(KILL_WAIT_S)
                except subprocess.TimeoutExpired:
                    result.stuck.append(f"{proc.label} (pid {proc.pid})")
                continue
            if proc.returncode != 0:
                result.unclean.append(f"{proc.label} exited {proc.returncode}")
        for proc in procs:
            self._close_pipes(proc)
            if proc.poll() is not None:
                self._forget(proc)
        return result

    def _forget(self, proc: Proc) -> None:
        if proc in self.live:
            self.live.remove(proc)
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    @staticmethod
    def _close_pipes(proc: Proc) -> None:
        for pipe in (proc.popen.stdin, proc.popen.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
