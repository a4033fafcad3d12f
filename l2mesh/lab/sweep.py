"""The sweep: what runs that died left behind (processes, namespaces, temp dirs) is removed; live and kept runs are left alone.

A run is dead when its owner is: no process with the recorded PID and kernel
start time exists (a PID reused by another process does not keep a dead run
alive). Every lab sweeps when it starts, so a SIGKILLed test worker or
benchmark leaves nothing behind for long, while the runs of other workers
and other checkouts on this machine carry on untouched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from l2mesh.lab.commands import Runner, run, run_command
from l2mesh.lab.errors import LabError
from l2mesh.lab.processes import STOP_GRACE_S, is_running
from l2mesh.lab.records import RECORD_DIR, RunRecord, load_records


@dataclass
class Swept:
    """What a sweep removed, and what it could not (those runs' records stay, for the next sweep)."""

    runs: list[str] = field(default_factory=list)  # tags
    processes: int = 0
    namespaces: int = 0
    problems: list[str] = field(default_factory=list)


def existing_namespaces(runner: Runner = run_command) -> set[str]:
    out = run(["ip", "netns", "list"], timeout_s=10, runner=runner).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def sweep(
    record_dir: Path = RECORD_DIR,
    *,
    prefix: str = "",
    include_kept: bool = False,
    runner: Runner = run_command,
    grace_s: float = STOP_GRACE_S,
) -> Swept:
    """Remove what every dead run (tag starting with prefix; kept ones too with include_kept) left behind."""
    swept = Swept()
    if not record_dir.is_dir():
        return swept
    # One sweeper at a time; a run that starts while another sweeps goes on without waiting.
    with open(record_dir / ".sweep.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return swept
        dead = [r for r in load_records(record_dir, prefix) if not r.owner_alive() and (include_kept or not r.kept)]
        if not dead:
            return swept
        existing = existing_namespaces(runner)
        for record in dead:
            problems = remove_run(record, existing, runner, grace_s, swept)
            if problems:
                swept.problems.extend(f"{record.tag}: {p}" for p in problems)
            else:
                record.remove(record_dir)
                swept.runs.append(record.tag)
    return swept


def remove_run(record: RunRecord, existing: set[str], runner: Runner, grace_s: float, swept: Swept) -> list[str]:
    """Stop a dead run's processes, delete its namespaces and its temp dir; the problems met."""
    swept.processes += stop_recorded(record.processes, grace_s)
    problems = []
    # Names with the run's tag are the run's own, recorded or not (a tag is held by one run at a time).
    names = [*record.namespaces, *sorted(n for n in existing if n.startswith(f"{record.tag}-") and n not in record.namespaces)]
    for namespace in reversed(names):
        if namespace not in existing:
            continue
        try:
            run(["ip", "netns", "del", namespace], timeout_s=10, runner=runner)
            swept.namespaces += 1
        except LabError as exc:
            problems.append(str(exc))
    # A temp dir the lab made for the run is named after it (tests bring their own, which is never touched).
    for work_dir in Path(tempfile.gettempdir()).glob(f"{record.tag}-*"):
        shutil.rmtree(work_dir, ignore_errors=True)
    return problems


def stop_recorded(processes: Iterable[dict[str, object]], grace_s: float) -> int:
    """SIGTERM, then SIGKILL, the recorded processes that are still the ones started; how many there were."""
    ours = []
    for entry in processes:
        pid, start = entry.get("pid"), entry.get("start")
        if isinstance(pid, int) and isinstance(start, int) and is_running(pid, start):
            ours.append((pid, start))
    for pid, _ in ours:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(is_running(pid, start) for pid, start in ours) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid, start in ours:
        if is_running(pid, start):
            _signal(pid, signal.SIGKILL)
    return len(ours)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
