"""The namespace lab against real namespaces: set-up failures still tear down, `ip netns del` failures are reported,
a killed run is swept while a live one carries on, processes are stopped by the PID the lab started.

Failures are injected by wrapping the real command runner; everything else is real (`ip`, sysctl, processes).
tests/unit/test_lab.py checks the same logic without root.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from l2mesh.lab import (
    Lab,
    LabError,
    TeardownError,
    existing_namespaces,
    is_running,
    process_start_ticks,
    run_command,
    sweep,
    wait_until,
)


class FailOn:
    """The real runner, except that a command containing `pattern` fails without running."""

    def __init__(self) -> None:
        self.pattern: str | None = None

    def __call__(self, argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        if self.pattern is not None and self.pattern in " ".join(argv):
            return subprocess.CompletedProcess(list(argv), 2, "", "injected failure")
        return run_command(argv, timeout_s)


def left_of(tag: str) -> set[str]:
    return {n for n in existing_namespaces() if n.startswith(f"{tag}-")}


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Path]:
    """A record dir of the test's own; whatever its runs left is swept (and would fail the test) at the end."""
    path = tmp_path / "runs"
    yield path
    swept = sweep(path, include_kept=True)
    assert not swept.problems


def new_lab(tmp_path: Path, records: Path, runner: FailOn) -> Lab:
    return Lab("l2mt-", tmp_path / "work", record_dir=records, runner=runner)


def test_a_failing_sysctl_still_removes_the_router_namespace(tmp_path: Path, records: Path) -> None:
    runner = FailOn()
    runner.pattern = "sysctl"
    with pytest.raises(LabError, match="injected failure"):
        with new_lab(tmp_path, records, runner) as lab:
            lab.add_router()
    assert left_of(lab.tag) == set()


def test_a_failing_ip_netns_add_still_removes_what_was_made_before(tmp_path: Path, records: Path) -> None:
    runner = FailOn()
    with pytest.raises(LabError, match="netns add"):
        with new_lab(tmp_path, records, runner) as lab:
            lab.add_router()
            lab.add_host("a")
            runner.pattern = f"netns add {lab.tag}-b"
            lab.add_host("b")
    assert left_of(lab.tag) == set()


def test_a_failing_ip_link_add_still_removes_both_namespaces(tmp_path: Path, records: Path) -> None:
    runner = FailOn()
    runner.pattern = "link add eth0"
    with pytest.raises(LabError, match="link add"):
        with new_lab(tmp_path, records, runner) as lab:
            lab.add_router()
            lab.add_host("a")
    assert left_of(lab.tag) == set()


def test_a_failing_ip_netns_del_is_reported_not_swallowed(tmp_path: Path, records: Path) -> None:
    runner = FailOn()
    lab = new_lab(tmp_path, records, runner)
    try:
        lab.add_router()
        host = lab.add_host("a")
        sleeper = lab.start(host.namespace, ["sleep", "60"], "sleeper")
        runner.pattern = f"netns del {host.namespace}"
        with pytest.raises(TeardownError, match=host.namespace):
            lab.close()
        assert left_of(lab.tag) == {host.namespace}
        assert sleeper.returncode == -signal.SIGTERM  # the other steps went on
    finally:
        runner.pattern = None
        lab.close()
    assert left_of(lab.tag) == set()


def test_processes_in_namespaces_are_the_programs_themselves_and_stop_by_pid(tmp_path: Path, records: Path) -> None:
    with new_lab(tmp_path, records, FailOn()) as lab:
        lab.add_router()
        host = lab.add_host("a")
        first = lab.start(host.namespace, ["sleep", "60"], "first")
        twin = lab.start(host.namespace, ["sleep", "60"], "twin")
        # setpriv and `ip netns exec` exec the program: the PID the lab holds becomes the program's own.
        wait_until(lambda: Path(f"/proc/{first.pid}/comm").read_text().strip() == "sleep", 5, what="sleep to be exec'd",
                   error=AssertionError)
        assert lab.stop(first) == -signal.SIGTERM
        assert twin.poll() is None
    assert twin.returncode == -signal.SIGTERM


RUN = """
import sys
from pathlib import Path
from l2mesh.lab import Lab
with Lab("l2mt-", Path(sys.argv[2]), record_dir=Path(sys.argv[1]), die_with_owner=False) as lab:
    lab.add_router()
    host = lab.add_host("a")
    sleeper = lab.start(host.namespace, ["sleep", "600"], "sleeper")
    print(lab.tag, sleeper.pid, flush=True)
    sys.stdin.read()  # until the test closes stdin (a clean end) or kills this process
"""


def start_run(records: Path, work: Path) -> tuple[subprocess.Popen[str], str, int, int | None]:
    """Another process's lab run: (process, its tag, its sleeper's PID and start time)."""
    work.mkdir(parents=True)
    run = subprocess.Popen([sys.executable, "-c", RUN, str(records), str(work)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    line = run.stdout.readline().split()
    assert len(line) == 2, f"the run did not start (exit {run.poll()})"
    pid = int(line[1])
    return run, line[0], pid, process_start_ticks(pid)


def test_a_killed_run_is_swept_and_a_live_run_is_left_alone(tmp_path: Path, records: Path) -> None:
    dead, dead_tag, dead_sleeper, dead_start = start_run(records, tmp_path / "dead")
    live, live_tag, live_sleeper, live_start = start_run(records, tmp_path / "live")
    try:
        dead.kill()
        dead.wait()
        assert left_of(dead_tag) == {f"{dead_tag}-rt", f"{dead_tag}-a"}  # what SIGKILL leaves
        assert is_running(dead_sleeper, dead_start)
        swept = sweep(records)
        assert swept.runs == [dead_tag] and swept.namespaces == 2 and swept.processes == 1
        assert left_of(dead_tag) == set()
        assert not is_running(dead_sleeper, dead_start)
        # The live run has all it had.
        assert left_of(live_tag) == {f"{live_tag}-rt", f"{live_tag}-a"}
        assert is_running(live_sleeper, live_start)
        assert live.stdin is not None
        live.stdin.close()
        assert live.wait(30) == 0
        assert left_of(live_tag) == set() and not is_running(live_sleeper, live_start)
    finally:
        for run in (dead, live):
            if run.poll() is None:
                run.kill()
                run.wait()
