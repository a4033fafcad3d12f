"""The namespace lab's promises, without root: set-up failures still tear down, teardown reports what it could
not remove, the sweep removes only dead runs, processes are stopped by the PID the lab started.

`ip` is played by FakeIp (a set of namespaces); processes are real (sleep, python).
tests/integration/test_lab.py checks the same against real namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from l2mesh.lab import (
    IFNAME_MAX,
    Lab,
    LabError,
    Processes,
    RunRecord,
    TeardownError,
    is_running,
    load_records,
    process_start_ticks,
    sweep,
    wait_until,
)


class FakeIp:
    """Plays `ip` for a lab: namespaces come and go in a set; a command containing `fail_on` fails (once, if once)."""

    def __init__(self, fail_on: str | None = None, once: bool = False) -> None:
        self.namespaces: set[str] = set()
        self.calls: list[str] = []
        self.fail_on = fail_on
        self.once = once

    def __call__(self, argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        command = " ".join(argv)
        self.calls.append(command)
        if self.fail_on is not None and self.fail_on in command:
            if self.once:
                self.fail_on = None
            return subprocess.CompletedProcess(list(argv), 1, "", "RTNETLINK answers: Operation not permitted (injected)")
        args = list(argv)
        if args[:3] == ["ip", "netns", "list"]:
            return subprocess.CompletedProcess(args, 0, "".join(f"{n} (id: 1)\n" for n in sorted(self.namespaces)), "")
        if args[:3] == ["ip", "netns", "add"]:
            if args[3] in self.namespaces:
                return subprocess.CompletedProcess(args, 1, "", "File exists")
            self.namespaces.add(args[3])
        elif args[:3] == ["ip", "netns", "del"]:
            if args[3] not in self.namespaces:
                return subprocess.CompletedProcess(args, 1, "", "No such file or directory")
            self.namespaces.remove(args[3])
        elif args[:2] == ["ip", "-n"] and args[2] not in self.namespaces:
            return subprocess.CompletedProcess(args, 1, "", f"Cannot open network namespace \"{args[2]}\"")
        return subprocess.CompletedProcess(args, 0, "", "")

    def mine(self, tag: str) -> set[str]:
        return {n for n in self.namespaces if n.startswith(f"{tag}-")}


def new_lab(tmp_path: Path, ip: FakeIp) -> Lab:
    return Lab("l2mu-", tmp_path / "work", record_dir=tmp_path / "runs", runner=ip)


def dead_pid() -> int:
    """A PID no process has any more (a child that ran and was reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def record_file(tmp_path: Path, tag: str) -> Path:
    return tmp_path / "runs" / f"{tag}.json"


# -- 1. a failed set-up step still removes everything made so far ------------------------------------------------------
def test_a_failing_sysctl_in_the_router_still_removes_the_router_namespace(tmp_path: Path) -> None:
    ip = FakeIp(fail_on="sysctl")
    with pytest.raises(LabError, match="sysctl"):
        with new_lab(tmp_path, ip) as lab:
            lab.add_router()
    assert ip.namespaces == set()
    assert not record_file(tmp_path, lab.tag).exists()


def test_a_failing_netns_add_removes_the_namespaces_made_before_it(tmp_path: Path) -> None:
    ip = FakeIp(fail_on="netns add l2mu-")
    with new_lab(tmp_path, ip) as lab:
        ip.fail_on = f"netns add {lab.tag}-b"
        lab.add_router()
        lab.add_host("a")
        with pytest.raises(LabError, match="netns add"):
            lab.add_host("b")
        assert ip.mine(lab.tag) == {f"{lab.tag}-rt", f"{lab.tag}-a"}
    assert ip.namespaces == set()
    # The namespace that was never made is not "deleted" (that would fail and be reported).
    assert f"ip netns del {lab.tag}-b" not in ip.calls


def test_a_failing_link_add_removes_both_namespaces(tmp_path: Path) -> None:
    ip = FakeIp(fail_on="link add eth0")
    with pytest.raises(LabError, match="link add"):
        with new_lab(tmp_path, ip) as lab:
            lab.add_router()
            lab.add_host("a")
    assert ip.namespaces == set()
    assert not record_file(tmp_path, lab.tag).exists()


def test_a_namespace_is_in_the_record_before_ip_netns_add_runs(tmp_path: Path) -> None:
    seen: list[list[str]] = []
    ip = FakeIp()

    def recording(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        if list(argv[:3]) == ["ip", "netns", "add"]:
            seen.append(load_records(tmp_path / "runs")[0].namespaces)
        return ip(argv, timeout_s)

    with Lab("l2mu-", tmp_path / "work", record_dir=tmp_path / "runs", runner=recording) as lab:
        lab.add_router()
    assert seen == [[f"{lab.tag}-rt"]]


def test_a_lab_without_a_work_dir_makes_one_named_after_the_run_and_removes_it(tmp_path: Path) -> None:
    with Lab("l2mu-", record_dir=tmp_path / "runs", runner=FakeIp()) as lab:
        assert lab.work_dir.name.startswith(f"{lab.tag}-") and lab.logs.is_dir()
    assert not lab.work_dir.exists()


# -- 2. ip netns del failures are reported, after every other step ------------------------------------------------------
def test_a_failing_netns_del_is_reported_and_every_other_namespace_is_still_deleted(tmp_path: Path) -> None:
    ip = FakeIp()
    lab = new_lab(tmp_path, ip)
    lab.add_router()
    lab.add_host("a")
    lab.add_host("b")
    ip.fail_on = f"netns del {lab.tag}-a"
    with pytest.raises(TeardownError) as raised:
        lab.close()
    assert ip.mine(lab.tag) == {f"{lab.tag}-a"}
    assert len(raised.value.problems) == 1 and f"{lab.tag}-a" in raised.value.problems[0]
    # What is left stays on record, for a later sweep; closing again once `ip` works finishes the job.
    assert json.loads(record_file(tmp_path, lab.tag).read_text())["namespaces"] == [f"{lab.tag}-a"]
    ip.fail_on = None
    assert lab.close().namespaces == 1
    assert ip.namespaces == set() and not record_file(tmp_path, lab.tag).exists()


def test_a_teardown_failure_after_a_failed_body_is_noted_on_the_body_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ip = FakeIp()
    with pytest.raises(ValueError, match="the test failed") as raised:
        with new_lab(tmp_path, ip) as lab:
            lab.add_router()
            ip.fail_on = "netns del"
            raise ValueError("the test failed")
    assert any(f"{lab.tag}-rt" in note for note in raised.value.__notes__)
    assert f"{lab.tag}-rt" in capsys.readouterr().err


# -- 3. the sweep: dead runs go, live and kept ones stay -------------------------------------------------------------
def write_record(tmp_path: Path, ip: FakeIp, tag: str, owner_pid: int, owner_start: int | None, kept: bool = False,
                 processes: list[dict[str, object]] | None = None) -> list[str]:
    names = [f"{tag}-rt", f"{tag}-a"]
    ip.namespaces.update(names)
    (tmp_path / "runs").mkdir(exist_ok=True)
    RunRecord(tag, owner_pid, owner_start, names, processes or [], kept).save(tmp_path / "runs")
    return names


def test_the_sweep_removes_a_run_whose_owner_is_gone(tmp_path: Path) -> None:
    ip = FakeIp()
    write_record(tmp_path, ip, "l2mu-dead", dead_pid(), 12345)
    ip.namespaces.add("l2mu-dead-late")  # made after the last record update: the tag still says whose it is
    swept = sweep(tmp_path / "runs", runner=ip)
    assert swept.runs == ["l2mu-dead"] and swept.namespaces == 3 and not swept.problems
    assert ip.namespaces == set()
    assert load_records(tmp_path / "runs") == []


def test_the_sweep_leaves_a_run_whose_owner_is_alive(tmp_path: Path) -> None:
    ip = FakeIp()
    names = write_record(tmp_path, ip, "l2mu-live", os.getpid(), process_start_ticks(os.getpid()))
    assert sweep(tmp_path / "runs", runner=ip).runs == []
    assert ip.namespaces == set(names)
    assert [r.tag for r in load_records(tmp_path / "runs")] == ["l2mu-live"]


def test_a_reused_pid_does_not_protect_a_dead_run(tmp_path: Path) -> None:
    ip = FakeIp()
    # Our PID is alive, but it was not this run's owner: the owner started at another time.
    start = process_start_ticks(os.getpid())
    assert start is not None
    write_record(tmp_path, ip, "l2mu-reuse", os.getpid(), start - 1)
    assert sweep(tmp_path / "runs", runner=ip).runs == ["l2mu-reuse"]
    assert ip.namespaces == set()


def test_a_kept_run_is_swept_only_when_asked(tmp_path: Path) -> None:
    ip = FakeIp()
    names = write_record(tmp_path, ip, "l2mu-kept", dead_pid(), 1, kept=True)
    assert sweep(tmp_path / "runs", runner=ip).runs == []
    assert ip.namespaces == set(names)
    assert sweep(tmp_path / "runs", runner=ip, include_kept=True, prefix="l2mu-").runs == ["l2mu-kept"]
    assert ip.namespaces == set()


def test_a_sweep_that_cannot_delete_a_namespace_reports_it_and_keeps_the_record(tmp_path: Path) -> None:
    ip = FakeIp()
    write_record(tmp_path, ip, "l2mu-stuck", dead_pid(), 1)
    ip.fail_on = "netns del l2mu-stuck-a"
    swept = sweep(tmp_path / "runs", runner=ip)
    assert swept.runs == [] and len(swept.problems) == 1 and "l2mu-stuck-a" in swept.problems[0]
    assert ip.namespaces == {"l2mu-stuck-a"}
    ip.fail_on = None
    assert sweep(tmp_path / "runs", runner=ip).runs == ["l2mu-stuck"]


def test_a_new_lab_sweeps_dead_runs_of_any_prefix_first(tmp_path: Path) -> None:
    ip = FakeIp()
    write_record(tmp_path, ip, "l2mv-gone", dead_pid(), 1)
    with new_lab(tmp_path, ip) as lab:
        assert ip.namespaces == set()
        assert [r.tag for r in load_records(tmp_path / "runs")] == [lab.tag]


def test_the_sweep_stops_a_dead_runs_processes_by_recorded_pid_and_start_time(tmp_path: Path) -> None:
    ip = FakeIp()
    ours = subprocess.Popen(["sleep", "60"])
    other = subprocess.Popen(["sleep", "60"])
    try:
        processes: list[dict[str, object]] = [
            {"pid": ours.pid, "start": process_start_ticks(ours.pid), "label": "ours"},
            # Same PID as a live process, another start time: a process that reused the number. Not touched.
            {"pid": other.pid, "start": (process_start_ticks(other.pid) or 0) - 1, "label": "reused"},
        ]
        write_record(tmp_path, ip, "l2mu-procs", dead_pid(), 1, processes=processes)
        swept = sweep(tmp_path / "runs", runner=ip, grace_s=5.0)
        assert swept.processes == 1
        assert ours.wait(5) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        for child in (ours, other):
            child.kill()
            child.wait()


# -- 4. processes: by the PID the lab started -----------------------------------------------------------------------
def test_a_process_is_stopped_by_its_own_pid_not_by_name(tmp_path: Path) -> None:
    processes = Processes(tmp_path)
    first = processes.start("first", ["sleep", "60"])
    twin = processes.start("twin", ["sleep", "60"])  # the same program and arguments
    assert processes.stop(first) == -signal.SIGTERM
    assert twin.poll() is None and is_running(twin.pid, twin.start_ticks)
    stopped = processes.stop_all()
    assert stopped.stopped == ["twin"] and twin.returncode == -signal.SIGTERM
    assert processes.live == []


IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_time(tmp_path: Path) -> None:
    processes = Processes(tmp_path)
    stubborn = processes.start("stubborn", [sys.executable, "-c", IGNORES_SIGTERM])
    deadline = time.monotonic() + 10
    while "ready" not in stubborn.log_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    stopped = processes.stop_all(grace_s=0.3)
    assert stopped.killed == ["stubborn"] and stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_every_started_process_is_on_record_until_stopped(tmp_path: Path) -> None:
    ip = FakeIp()
    with new_lab(tmp_path, ip) as lab:
        proc = lab.processes.start("sleeper", ["sleep", "60"])
        recorded = json.loads(record_file(tmp_path, lab.tag).read_text())["processes"]
        assert recorded == [{"pid": proc.pid, "start": proc.start_ticks, "label": "sleeper"}]
        lab.stop(proc)
        assert json.loads(record_file(tmp_path, lab.tag).read_text())["processes"] == []


OWNER = """
import sys, time
from pathlib import Path
from l2mesh.lab import Processes
proc = Processes(Path(sys.argv[1])).start("sleeper", ["sleep", "60"])
print(proc.pid, flush=True)
time.sleep(60)
"""


def test_processes_die_with_an_owner_that_was_killed(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    start = process_start_ticks(pid)
    # setpriv execs the program (once it has set the parent-death signal): the PID becomes the program's own.
    wait_until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep", 5, what="sleep to be exec'd", error=AssertionError)
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 5
    while is_running(pid, start) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not is_running(pid, start)


# -- names ---------------------------------------------------------------------------------------------------------
def test_two_runs_get_different_ids_and_names_carry_them(tmp_path: Path) -> None:
    ip = FakeIp()
    with new_lab(tmp_path, ip) as one, new_lab(tmp_path, ip) as two:
        assert one.tag != two.tag
        assert len(one.tag) == len("l2mu-") + 4
        assert one.name("rt") == f"{one.tag}-rt"


def test_a_run_id_already_on_record_is_never_handed_out_again(tmp_path: Path) -> None:
    ip = FakeIp()
    with new_lab(tmp_path, ip) as lab:
        assert not RunRecord(lab.tag, os.getpid(), None).create(tmp_path / "runs")


def test_interface_names_over_the_kernel_limit_are_refused_before_ip_runs(tmp_path: Path) -> None:
    ip = FakeIp()
    with new_lab(tmp_path, ip) as lab:
        router = lab.add_router()
        a = lab.add_namespace("a")
        with pytest.raises(LabError, match="interface name"):
            lab.add_veth(a, "x" * (IFNAME_MAX + 1), router, "ok")
        assert not any("link add" in call for call in ip.calls)


def test_bad_prefixes_and_roles_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="prefix"):
        Lab("L2MT", tmp_path, record_dir=tmp_path / "runs", runner=FakeIp())
    with new_lab(tmp_path, FakeIp()) as lab:
        with pytest.raises(LabError, match="role"):
            lab.add_namespace("a/b")


def test_the_lab_stun_responder_tells_the_source_it_saw() -> None:
    from l2mesh.lab.stun import MAGIC_COOKIE, binding_response

    transaction = bytes(range(12))
    # A Binding request as miniupnpd sends it: one CHANGE-REQUEST attribute (ignored: one address, one port here).
    request = bytes.fromhex("0001 0008 2112a442") + transaction + bytes.fromhex("0003 0004 00000006")
    response = binding_response(request, ("198.18.1.2", 37626))
    assert response is not None and response[:2] == b"\x01\x01" and response[8:20] == transaction
    x_port, x_address = int.from_bytes(response[26:28], "big"), int.from_bytes(response[28:32], "big")
    assert x_port ^ (MAGIC_COOKIE >> 16) == 37626
    assert (x_address ^ MAGIC_COOKIE).to_bytes(4, "big") == bytes([198, 18, 1, 2])
    assert binding_response(b"\x01\x01" + request[2:], ("198.18.1.2", 1)) is None  # not a request
    assert binding_response(request[:10], ("198.18.1.2", 1)) is None
