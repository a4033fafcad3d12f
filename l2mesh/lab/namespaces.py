"""A lab run: network namespaces named <prefix><run id>-<role>, veth pairs between them, the run's processes, and its teardown.

Layout (DESIGN.md, "Testing on one machine"): a router namespace plays the
Internet; each host namespace sits on its own /24 of 198.18.0.0/15 behind it
(198.18.N.2 on eth0, gateway 198.18.N.1 on the router's port lanN), so hosts
share no Ethernet segment underneath. Veths are born inside their
namespaces: nothing is made in the root namespace, and only 198.18.0.0/15
(198.19.0.0/16 behind home routers, nat.py) is routed, with no default route
anywhere.

Names: a run's tag is its prefix (at most 5 characters, "l2mt-") and a run
id of 4 hex digits held by one run at a time (records.py), 9 characters in
all; its namespaces are <tag>-<role>. Interfaces are never named after the
run: each is born inside its namespace with a short name (eth0, lanN, wan,
lan), so no two runs can collide on one, and every name is checked against
the kernel's 15-character limit before `ip` runs.

Teardown never leaks: every namespace is written into the run's record
before it is made, processes are stopped by the PID the lab started, and
`close()` goes through every step whatever failed before, then raises
TeardownError naming what is left (the record stays, so the next run's sweep
retries).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from l2mesh.lab.commands import COMMAND_TIMEOUT_S, Runner, in_namespace, run, run_command
from l2mesh.lab.errors import LabError, TeardownError
from l2mesh.lab.processes import STOP_GRACE_S, Proc, Processes, Stopped
from l2mesh.lab.records import RECORD_DIR, new_record
from l2mesh.lab.sweep import existing_namespaces, sweep

UNDERLAY_NET = "198.18.0.0/15"  # RFC 2544 benchmarking range: one /24 per host
IFNAME_MAX = 15  # the kernel's limit on interface names (IFNAMSIZ - 1)
_PREFIX_RE = re.compile(r"[a-z0-9]{1,5}-")
_ROLE_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _warn(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr)


def check_ifname(name: str) -> str:
    """An interface name the kernel takes: 1 to 15 characters, no '/', ':' or whitespace."""
    if not 0 < len(name.encode()) <= IFNAME_MAX or re.search(r"[/:\s]", name):
        raise LabError(f"interface name {name!r} is not 1-{IFNAME_MAX} characters without '/', ':' or spaces")
    return name


@dataclass(frozen=True)
class NetnsHost:
    """A namespace on its own /24 behind the router (or behind a home router, nat.py)."""

    namespace: str
    ip: str  # its address on eth0
    gateway: str  # the router's address on the same /24
    lan: int  # N of 198.18.N.0/24


@dataclass
class Teardown:
    """What close() did."""

    processes: Stopped
    namespaces: int
    work_dir: Path | None  # removed, when the lab had made it

    def __str__(self) -> str:
        text = f"stopped {len(self.processes.stopped)} processes, deleted {self.namespaces} namespaces"
        if self.work_dir is not None:
            text += f", removed {self.work_dir}"
        notes = [*self.processes.unclean, *(f"{label} needed SIGKILL" for label in self.processes.killed)]
        return text + "".join(f"; {note}" for note in notes)


class Lab:
    """The namespaces, links and processes of one run, recorded as they are made, and their teardown.

    Use as a context manager, or call close() in a finally: whatever a failed
    set-up step had made by then is removed too.
    """

    def __init__(
        self,
        prefix: str,
        work_dir: Path | None = None,
        *,
        record_dir: Path = RECORD_DIR,
        runner: Runner = run_command,
        die_with_owner: bool = True,
        sweep_first: bool = True,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        """prefix: what every name starts with ("l2mt-" tests, "l2mb-" benchmarks, "l2md-" the demo).

        work_dir: where logs and files go; when None, a temp dir named after the
        run is made and removed with it. die_with_owner: processes get SIGTERM
        from the kernel if this process dies (off when they are to outlive it).
        sweep_first: remove first what dead runs (of any prefix) left behind.
        """
        if not _PREFIX_RE.fullmatch(prefix):
            raise LabError(f"lab prefix {prefix!r} is not 1-5 lowercase letters or digits and a '-'")
        self.prefix = prefix
        self.record_dir = record_dir
        self.runner = runner
        self.warn = warn
        self.namespaces: list[str] = []
        self.router: str | None = None
        self._lans: set[int] = set()
        self._owns_work_dir = False
        if sweep_first:
            for problem in sweep(record_dir, runner=runner).problems:
                warn(f"sweep: {problem}")
        try:
            self.record = new_record(prefix, record_dir, existing_namespaces(runner))
        except OSError as exc:
            raise LabError(f"cannot write the run record in {record_dir}: {exc.strerror or exc} (the lab needs root)") from None
        self.tag = self.record.tag
        if work_dir is None:
            try:
                # Named after the run: a sweep finds it by the tag even if this process dies right here.
                work_dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
            except BaseException:
                self.record.remove(record_dir)
                raise
            self._owns_work_dir = True
        self.work_dir = work_dir
        self.logs = work_dir / "logs"
        self.processes = Processes(self.logs, die_with_owner=die_with_owner, on_change=self._record_processes)
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.close()
            raise

    # -- names and the record ------------------------------------------------------------------------
    def name(self, role: str) -> str:
        """The namespace name of a role in this run: <prefix><run id>-<role>."""
        if not _ROLE_RE.fullmatch(role):
            raise LabError(f"role {role!r} is not 1-32 letters, digits, '_', '.' or '-'")
        return f"{self.tag}-{role}"

    def _save(self) -> None:
        self.record.namespaces = list(self.namespaces)
        self.record.save(self.record_dir)

    def _record_processes(self) -> None:
        self.record.processes = [{"pid": p.pid, "start": p.start_ticks, "label": p.label} for p in self.processes.live]
        self._save()

    # -- commands ------------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A short command in the root namespace (only `ip` set-up runs there)."""
        return run(argv, timeout_s, check, self.runner)

    def run_in(self, namespace: str, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """A short command inside a namespace; with check, a non-zero exit is a LabError."""
        return self.run(in_namespace(namespace, argv), timeout_s, check)

    def ip(self, *argv: str) -> None:
        """`ip ARGV`, checked (use -n NAMESPACE to act inside one)."""
        self.run(["ip", *argv])

    def run_parallel(self, commands: Sequence[tuple[str, Sequence[str]]],
                     timeout_s: float = COMMAND_TIMEOUT_S) -> list[subprocess.CompletedProcess[str]]:
        """Several short commands at once, each (namespace, argv); their results in order, unchecked."""
        started = [
            subprocess.Popen(in_namespace(ns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
            for ns, argv in commands
        ]
        deadline = time.monotonic() + timeout_s
        results = []
        try:
            for process, (namespace, argv) in zip(started, commands):
                try:
                    out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise LabError(f"`{' '.join(argv[:2])}` in {namespace} did not finish within {timeout_s:g} s") from None
                results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        finally:
            for process in started:  # by the PID each Popen holds, and only while unreaped
                if process.poll() is None:
                    process.kill()
                    process.wait()
        return results

    def sysctl(self, namespace: str, *settings: str) -> None:
        self.run_in(namespace, ["sysctl", "-qw", *settings])

    def nft(self, namespace: str, ruleset: str, name: str) -> None:
        """Load an nftables ruleset into a namespace (kept as work_dir/<name>.nft for reading)."""
        path = self.work_dir / f"{name}.nft"
        path.write_text(ruleset)
        self.run_in(namespace, ["nft", "-f", str(path)])

    # -- namespaces and links --------------------------------------------------------------------------
    def add_namespace(self, role: str) -> str:
        """A new namespace with lo up; its name is in the record before it exists."""
        name = self.name(role)
        if name in self.namespaces:
            raise LabError(f"namespace {name} is already part of this run")
        # Written down first: an `ip netns add` cut short by a timeout or a signal may still have made it.
        self.namespaces.append(name)
        self._save()
        self.ip("netns", "add", name)
        self.ip("-n", name, "link", "set", "lo", "up")
        return name

    def add_router(self, role: str = "rt") -> str:
        """The namespace that plays the Internet: it forwards between every host's /24."""
        router = self.add_namespace(role)
        self.router = router
        self.sysctl(router, "net.ipv4.ip_forward=1")
        return router

    def add_veth(self, namespace: str, name: str, peer_namespace: str, peer_name: str) -> None:
        """A veth pair, born with one end in each namespace (the root namespace never sees it), both down."""
        check_ifname(name)
        check_ifname(peer_name)
        self.ip("link", "add", name, "netns", namespace, "type", "veth", "peer", "name", peer_name, "netns", peer_namespace)

    def add_link(self, namespace: str, name: str, address: str, peer_namespace: str, peer_name: str, peer_address: str) -> None:
        """A veth pair with an address (CIDR) on each end, both up."""
        self.add_veth(namespace, name, peer_namespace, peer_name)
        for ns, ifname, cidr in ((namespace, name, address), (peer_namespace, peer_name, peer_address)):
            self.ip("-n", ns, "addr", "add", cidr, "dev", ifname)
            self.ip("-n", ns, "link", "set", ifname, "up")

    def allocate_lan(self, lan: int | None = None) -> int:
        """A /24 number for a new host: the one asked for, or the lowest free one from 1."""
        if lan is None:
            lan = next(n for n in range(1, 256) if n not in self._lans)
        if not 0 <= lan <= 255 or lan in self._lans:
            raise LabError(f"lan {lan} is taken or not 0-255")
        self._lans.add(lan)
        return lan

    def add_host(self, role: str, lan: int | None = None, port: str | None = None) -> NetnsHost:
        """A namespace on 198.18.<lan>.0/24 behind the router: 198.18.<lan>.2 on eth0, the router's port (lan<lan>) .1."""
        router = self.require_router()
        lan = self.allocate_lan(lan)
        namespace = self.add_namespace(role)
        self.add_link(namespace, "eth0", f"198.18.{lan}.2/24", router, port or f"lan{lan}", f"198.18.{lan}.1/24")
        self.ip("-n", namespace, "route", "add", UNDERLAY_NET, "via", f"198.18.{lan}.1")
        return NetnsHost(namespace, f"198.18.{lan}.2", f"198.18.{lan}.1", lan)

    def require_router(self) -> str:
        if self.router is None:
            raise LabError("this lab has no router yet: add_router() first")
        return self.router

    # -- processes ------------------------------------------------------------------------------------------
    def start(self, namespace: str, argv: Sequence[str], label: str, *, log: Path | None = None,
              stdin: int | IO[bytes] | None = subprocess.DEVNULL, stdout: int | IO[bytes] | None = None) -> Proc:
        """A long-running program inside a namespace, logging to logs/<label>.log (or log); recorded by PID."""
        return self.processes.start(label, in_namespace(namespace, argv), log=log, stdin=stdin, stdout=stdout)

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> int | None:
        """Signal one process by its PID, SIGKILL after grace_s; its exit code."""
        return self.processes.stop(proc, sig, grace_s)

    def log_of(self, label: str, chars: int = 2000) -> str:
        """The end of logs/<label>.log."""
        path = self.logs / f"{label}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    # -- the end ----------------------------------------------------------------------------------------------
    def keep(self) -> Path:
        """Leave everything running on purpose: no sweep touches this run until `sweep(include_kept=True)`."""
        self.record.kept = True
        self._save()
        return self.record.path(self.record_dir)

    def close(self, grace_s: float = STOP_GRACE_S) -> Teardown:
        """Stop every process, delete every namespace, remove the temp dir the lab made and the record.

        Every step runs whatever the one before did; a TeardownError at the end
        names what is left (a namespace `ip netns del` refused, a process that
        would not die), and the record then stays for a later sweep.
        """
        problems: list[str] = []
        stopped = self.processes.stop_all(grace_s)
        problems += [f"process {p} survived SIGKILL" for p in stopped.stuck]
        try:
            existing = existing_namespaces(self.runner)
        except LabError as exc:
            problems.append(f"cannot list namespaces: {exc}")
            existing = set(self.namespaces)
        deleted = 0
        for namespace in reversed(list(self.namespaces)):
            if namespace in existing:
                try:
                    self.ip("netns", "del", namespace)
                except LabError as exc:
                    problems.append(str(exc))
                    continue
                deleted += 1
            self.namespaces.remove(namespace)
        removed = None
        if self._owns_work_dir and self.work_dir.exists():
            shutil.rmtree(self.work_dir, ignore_errors=True)
            removed = self.work_dir
        if problems:
            self._save()
            raise TeardownError(problems)
        self.record.remove(self.record_dir)
        return Teardown(stopped, deleted, removed)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        except TeardownError as error:
            if exc is None:
                raise
            # The body's failure stays the one raised; what teardown left is noted on it and printed.
            exc.add_note(str(error))
            self.warn(str(error))
