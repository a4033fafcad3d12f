"""`make demo`: a real l2mesh network on this host — a controller and three members in network namespaces.

Topology (DESIGN.md, "Testing on one machine"): a router namespace plays the
Internet; the controller and members m1..m3 each live in their own namespace
on their own /24 of 198.18.0.0/15 behind it (198.18.N.2, gateway 198.18.N.1),
so they share no Ethernet segment underneath and only l2mesh can carry frames
between them. The namespaces, veths and processes come from the namespace
lab (l2mesh.lab) the tests and benchmarks use too: every name starts with
`l2md-<run id>-`, processes are stopped by the PID the lab started, the root
namespace is never touched and only 198.18.0.0/15 and 10.147.0.0/16 are ever
used.

The demo drives the real CLIs as processes (`l2mesh-ctl serve`, `l2mesh
daemon`, `l2mesh join`, `l2mesh-ctl member authorize`, ...), then shows what a
LAN can do over the overlay: members and their peer paths, a ping matrix, an
ARP request answered across it, and an mDNS service registered on m1 and
resolved from m2 (python-zeroconf). It tears everything down afterwards, also
on failure, Ctrl-C and SIGTERM, and exits 0 only when every step passed.

    demo.py            run the demo and clean up
    demo.py --keep     leave the network running and print how to explore it
    demo.py --cleanup  stop what a --keep run left behind and delete its namespaces
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from l2mesh.lab import (
    RECORD_DIR,
    Lab,
    LabError,
    Proc,
    TeardownError,
    existing_namespaces,
    last_line,
    load_records,
    run,
    sweep,
    wait_until,
)

BIN_DIR = Path(sys.executable).parent
L2MESH = str(BIN_DIR / "l2mesh")
L2MESH_CTL = str(BIN_DIR / "l2mesh-ctl")
MDNS_HELPER = Path(__file__).resolve().with_name("mdns_helper.py")

PREFIX = "l2md-"
CONTROLLER_PORT = 9994
NETWORK_NAME = "demo"
POOL = "10.147.17.0/24"
MEMBER_NAMES = ("m1", "m2", "m3")
COMMAND_TIMEOUT_S = 15.0
# A watchdog for the whole run; teardown (< 15 s) fits in what is left of two minutes.
TIME_BUDGET_S = 100

T = TypeVar("T")


class DemoError(LabError):
    """A failure that stops the demo; its message is the one line the user sees."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP or the time budget ran out.

    A BaseException so that no `except Exception` on the way swallows it:
    it has to reach the teardown.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- small helpers -------------------------------------------------------------------------------------
def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.2) -> T:
    """Call probe until it returns something other than None/False; DemoError naming `what` after timeout_s."""
    value = wait_until(probe, timeout_s, interval_s=interval_s, what=what, error=DemoError)
    assert value is not None  # wait_until returns only what is truthy
    return value


def checked(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise DemoError(f"{what} failed: {last_line(result.stderr or result.stdout)}")
    return result


# -- what the user sees ------------------------------------------------------------------------------------
@dataclass
class Step:
    title: str
    state: str = "pending"  # pending, running, ok, failed, skipped
    detail: str = ""


@dataclass
class MemberView:
    name: str
    namespace: str = ""
    underlay: str = ""
    node_id: str = ""
    ip: str = ""
    status: str = ""
    mac: str = ""
    iface: str = ""


@dataclass
class Check:
    """One row of the "LAN over the overlay" table (ARP, mDNS)."""

    name: str
    between: str
    state: str = "pending"
    detail: str = ""


STATE_MARK = {"pending": ("·", "dim"), "ok": ("✓", "bold green"), "failed": ("✗", "bold red"), "skipped": ("-", "dim")}


def mark(state: str) -> RenderableType:
    if state == "running":
        return Spinner("dots", style="cyan")
    symbol, style = STATE_MARK[state]
    return Text(symbol, style=style)


class Board:
    """Everything the display shows; demo steps fill it in, render() draws it."""

    def __init__(self, steps: Sequence[str]) -> None:
        self.header = "l2mesh demo"
        self.steps = [Step(title) for title in steps]
        self.members: dict[str, MemberView] = {}
        self.peers: list[list[str]] = []
        self.pings: dict[tuple[str, str], Text] = {}
        self.checks = [Check("ARP", "m1 → m3"), Check("mDNS", "m1 → m2")]
        self.names: dict[str, str] = {}  # node id -> m1/m2/m3/controller, for the peers table

    def step(self, title: str) -> Step:
        return next(s for s in self.steps if s.title == title)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def failed(self) -> list[str]:
        return [s.title for s in self.steps if s.state == "failed"]  # the checks mirror their steps

    # -- rendering -----------------------------------------------------------------------------------
    def render(self) -> RenderableType:
        parts: list[RenderableType] = [
            Text(self.header, style="bold"),
            self.titled("Steps", self.steps_table()),
            self.titled(f"Members of network {NETWORK_NAME}", self.members_table()),
        ]
        if self.pings:
            parts.append(self.titled("Ping over the overlay (avg of ping -c 3 -i 0.2)", self.ping_table()))
        if self.peers:
            parts.append(self.titled("Peers as each member sees them", self.peers_table()))
        if any(c.state != "pending" for c in self.checks):
            parts.append(self.titled("LAN services over the overlay", self.checks_table()))
        return Group(*parts)

    @staticmethod
    def table(*columns: str) -> Table:
        table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=column not in ("detail", "result"))
        return table

    @staticmethod
    def titled(title: str, table: Table) -> Group:
        # A title line of its own: a Table title would wrap to the width of a narrow table.
        return Group(Text(""), Text(title, style="bold cyan"), table)

    def steps_table(self) -> Table:
        table = self.table("", "step", "detail")
        for step in list(self.steps):
            table.add_row(mark(step.state), step.title, Text(step.detail, style="red" if step.state == "failed" else ""))
        return table

    def members_table(self) -> Table:
        table = self.table("name", "node id", "namespace", "underlay", "overlay IP", "status", "MAC", "iface")
        for m in list(self.members.values()):
            style = {"OK": "green", "ACCESS_DENIED": "yellow", "REQUESTING": "yellow"}.get(m.status, "red")
            table.add_row(m.name, m.node_id, m.namespace, m.underlay, m.ip or "-", Text(m.status or "-", style=style), m.mac or "-", m.iface or "-")
        return table

    def ping_table(self) -> Table:
        names = list(MEMBER_NAMES)
        table = self.table("from \\ to", *names)
        for source in names:
            cells = [Text("·", style="dim") if source == target else self.pings.get((source, target), Text("…", style="dim")) for target in names]
            table.add_row(source, *cells)
        return table

    def peers_table(self) -> Table:
        table = self.table("member", "peer", "role", "path", "endpoint", "latency ms")
        for row in list(self.peers):
            table.add_row(*row)
        return table

    def checks_table(self) -> Table:
        table = self.table("", "check", "between", "result")
        for check in self.checks:
            table.add_row(mark(check.state), check.name, check.between, Text(check.detail, style="red" if check.state == "failed" else ""))
        return table


class Display:
    """A rich Live view on a terminal; without one, a line per finished step and the tables at the end."""

    def __init__(self, board: Board, console: Console) -> None:
        self.board = board
        self.console = console
        self.live = Live(get_renderable=board.render, console=console, refresh_per_second=8) if console.is_terminal else None

    def __enter__(self) -> Display:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.stop()  # draws the final state in full
        else:
            self.console.print()
            self.console.print(self.board.render())

    def snapshot(self, renderable: RenderableType) -> None:
        """Show an intermediate state that the final tables will no longer show (non-terminal only)."""
        if self.live is None:
            self.console.print(renderable)

    @contextmanager
    def running(self, title: str) -> Iterator[Step]:
        """Mark a step running; ok when the body returns (unless it marked itself failed), failed on a LabError (DemoError among them)."""
        step = self.board.step(title)
        step.state = "running"
        try:
            yield step
        except LabError as exc:
            step.state, step.detail = "failed", str(exc)
            raise
        except Interrupted as exc:
            step.state, step.detail = "failed", str(exc)
            raise
        else:
            if step.state == "running":
                step.state = "ok"
        finally:
            self.log(step)

    def log(self, step: Step) -> None:
        if self.live is None:
            symbol, style = STATE_MARK.get(step.state, ("?", ""))
            self.console.print(Text.assemble((symbol, style), f" {step.title}", (f" — {step.detail}" if step.detail else "", "dim")))


# -- the demo ------------------------------------------------------------------------------------------------
STEPS = (
    "Build the underlay",
    "Start the controller",
    "Start members and join",
    "Authorize members",
    "Ping matrix",
    "Peer paths",
    "ARP across the overlay",
    "mDNS service discovery",
    "Tear down",
)


@dataclass
class Member:
    name: str
    namespace: str
    underlay_ip: str
    state_dir: Path
    node_id: str = ""
    ip: str = ""
    iface: str = ""
    mac: str = ""


class Demo:
    """The steps of the demo, each driving the real CLIs and filling in the board."""

    def __init__(self, lab: Lab, board: Board, display: Display) -> None:
        self.lab = lab
        self.board = board
        self.display = display
        self.controller_ns = ""
        self.controller_state = lab.work_dir / "ctl"
        self.controller_endpoint = ""
        self.network_id = ""
        self.members: list[Member] = []

    # -- CLI wrappers -----------------------------------------------------------------------------------
    def ctl(self, *argv: str) -> str:
        result = self.run_in(self.controller_ns, [L2MESH_CTL, *argv, "--state-dir", str(self.controller_state)])
        return checked(result, f"l2mesh-ctl {' '.join(argv[:2])}").stdout

    def node(self, member: Member, *argv: str) -> str:
        result = self.run_in(member.namespace, [L2MESH, *argv, "--state-dir", str(member.state_dir)])
        return checked(result, f"l2mesh {argv[0]} on {member.name}").stdout

    def node_json_all(self, command: str) -> list[Any]:
        """`l2mesh <command> --json` on every member at once."""
        results = self.lab.run_parallel([(m.namespace, [L2MESH, command, "--json", "--state-dir", str(m.state_dir)]) for m in self.members],
                                        COMMAND_TIMEOUT_S)
        return [json.loads(checked(r, f"l2mesh {command} on {m.name}").stdout) for r, m in zip(results, self.members)]

    def run_in(self, namespace: str, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """A short command in a namespace, unchecked (callers say what a failure means)."""
        return self.lab.run_in(namespace, argv, timeout_s, check=False)

    def view(self, member: Member) -> MemberView:
        return self.board.members[member.name]

    # -- steps ------------------------------------------------------------------------------------------
    def build_underlay(self) -> None:
        with self.display.running("Build the underlay") as step:
            router = self.lab.add_router()
            controller = self.lab.add_host("ctl", 0)
            self.controller_ns = controller.namespace
            self.controller_endpoint = f"{controller.ip}:{CONTROLLER_PORT}"
            for lan, name in enumerate(MEMBER_NAMES, start=1):
                host = self.lab.add_host(name, lan)
                self.members.append(Member(name, host.namespace, host.ip, self.lab.work_dir / name))
                self.board.members[name] = MemberView(name, host.namespace, host.ip)
            step.detail = f"router {router}; controller and {len(self.members)} members each on a /24 of 198.18.0.0/15"

    def start_controller(self) -> None:
        with self.display.running("Start the controller") as step:
            process = self.lab.start(self.controller_ns, [L2MESH_CTL, "serve", "--state-dir", str(self.controller_state),
                                                          "--listen", f"0.0.0.0:{CONTROLLER_PORT}"], "controller")
            wait_for("the controller's admin API (api.json)",
                     lambda: self.alive(process, "controller") and (self.controller_state / "api.json").exists(), 15)
            created = json.loads(self.ctl("network", "create", NETWORK_NAME, "--pool", POOL, "--json"))
            self.network_id = created["id"]
            self.board.names[self.network_id[:10]] = "controller"  # a network id starts with its controller's node id
            self.board.header = (f"l2mesh demo · run {self.lab.tag} · network {NETWORK_NAME} {self.network_id} ({POOL})"
                                 f" · controller {self.controller_endpoint}")
            step.detail = f"{self.controller_endpoint}; created network {NETWORK_NAME} = {self.network_id}, pool {POOL}"

    def alive(self, process: Proc, what: str) -> bool:
        if process.poll() is not None:
            raise DemoError(f"{what} exited with status {process.returncode}: {process.last_log_line()}")
        return True

    def start_members(self) -> None:
        with self.display.running("Start members and join") as step:
            self.start_daemons()
            for member in self.members:
                self.node(member, "join", self.network_id, "--controller", self.controller_endpoint)
            statuses = self.await_denial()
            asking = json.loads(self.ctl("member", "list", self.network_id, "--json"))
            unauthorized = sum(1 for m in asking if not m["authorized"])
            step.detail = (", ".join(f"{m.name} {s}" for m, s in zip(self.members, statuses))
                           + f"; the controller lists {unauthorized} unauthorized members")
            self.display.snapshot(self.board.titled("Members before authorization", self.board.members_table()))

    def start_daemons(self) -> None:
        """`l2mesh id` then `l2mesh daemon` in each member namespace; returns once every control socket is up."""
        daemons = {}
        for member in self.members:
            member.node_id = self.node(member, "id").strip()
            self.view(member).node_id = member.node_id
            self.board.names[member.node_id] = member.name
            daemons[member.name] = self.lab.start(member.namespace, [L2MESH, "daemon", "--state-dir", str(member.state_dir)],
                                                  f"{member.name}-daemon")
        for member in self.members:
            wait_for(f"{member.name}'s daemon control socket",
                     lambda m=member: self.alive(daemons[m.name], f"{m.name}-daemon") and (m.state_dir / "control.sock").exists(), 15)

    def await_denial(self) -> list[str]:
        """Wait (bounded) until the controller has answered every unauthorized member; returns their statuses."""
        # ACCESS_DENIED is the controller's answer; REQUESTING, the moment before it, is also a correct
        # "not yet authorized", so a slow answer is shown as it is rather than failed.
        try:
            wait_for("ACCESS_DENIED", lambda: all(s == "ACCESS_DENIED" for s in self.refresh_members()), 8, 0.3)
        except DemoError:
            pass
        statuses = self.refresh_members()
        if not all(s in ("REQUESTING", "ACCESS_DENIED") for s in statuses):
            raise DemoError(f"unexpected statuses before authorization: {', '.join(statuses)}")
        return statuses

    def refresh_members(self) -> list[str]:
        """Poll `l2mesh networks --json` on every member into the board; returns their statuses."""
        statuses = []
        for member, networks in zip(self.members, self.node_json_all("networks")):
            network = next((n for n in networks if n["id"] == self.network_id), None)
            view = self.view(member)
            view.status = network["status"] if network else "NOT JOINED"
            if network:
                member.ip = view.ip = network["ips"][0] if network["ips"] else ""
                member.iface = view.iface = network["iface"] or ""
                member.mac = view.mac = network["mac"] or ""
            statuses.append(view.status)
        return statuses

    def authorize_members(self) -> None:
        with self.display.running("Authorize members") as step:
            timings = []
            for member in self.members:
                started = time.monotonic()
                self.ctl("member", "authorize", self.network_id, member.node_id, "--name", member.name)
                wait_for(f"{member.name} to be OK with an address",
                         lambda m=member: self.refresh_members()[self.members.index(m)] == "OK" and m.ip and self.tap_has_ip(m), 15, 0.1)
                timings.append(f"{member.name} {member.ip} in {time.monotonic() - started:.1f} s")
            step.detail = "OK: " + ", ".join(timings)

    def tap_has_ip(self, member: Member) -> bool:
        shown = self.run_in(member.namespace, ["ip", "-o", "-4", "addr", "show", "dev", member.iface]).stdout
        return f" {member.ip}/" in shown

    def ping_matrix(self) -> None:
        with self.display.running("Ping matrix") as step:
            clean = 0
            for source in self.members:
                for target in self.members:
                    if source is not target:
                        self.board.pings[(source.name, target.name)] = cell = self.ping(source, target)
                        clean += cell.style == "green"
            pairs = len(self.members) * (len(self.members) - 1)
            step.detail = f"{clean}/{pairs} ordered pairs answered 3/3"
            if clean < pairs:
                step.state = "failed"

    def ping(self, source: Member, target: Member) -> Text:
        # One warm-up probe first: the first packet to a new peer waits for ARP and a Noise handshake,
        # which is a one-off cost the matrix should not average in.
        try:
            wait_for(f"{source.name} to reach {target.name}",
                     lambda: self.run_in(source.namespace, ["ping", "-n", "-q", "-c", "1", "-W", "1", target.ip]).returncode == 0,
                     6, 0.1)
        except DemoError:
            return Text("unreachable", style="red")  # shown in the matrix; the other pairs still run
        result = self.run_in(source.namespace, ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", target.ip])
        counts = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
        rtt = re.search(r"= [\d.]+/([\d.]+)/", result.stdout)
        received = int(counts.group(2)) if counts else 0
        if received == 0 or rtt is None:
            return Text("no reply", style="red")
        text = f"{float(rtt.group(1)):.2f} ms"
        return Text(text, style="green") if received == 3 else Text(f"{text} ({received}/3)", style="yellow")

    def peer_paths(self) -> None:
        with self.display.running("Peer paths") as step:
            rows, linked = [], 0
            for member, peers in zip(self.members, self.node_json_all("peers")):
                # Members in name order, the controller last: easier to read than node-id order.
                for peer in sorted(peers, key=lambda p: (p["role"] == "controller", self.board.names.get(p["id"], p["id"]))):
                    latency = "-" if peer.get("latency_ms") is None else f"{peer['latency_ms']:.2f}"
                    rows.append([member.name, f"{self.board.names.get(peer['id'], '?')} {peer['id']}", peer["role"],
                                 peer["path"], peer["endpoint"] or "-", latency])
                    linked += peer["role"] == "member" and peer["path"] in ("direct", "relay")
            self.board.peers = rows
            pairs = len(self.members) * (len(self.members) - 1)
            step.detail = f"{linked}/{pairs} member-to-member paths up"
            if linked < pairs:
                step.state = "failed"

    def arp_check(self) -> None:
        source, target = self.members[0], self.members[2]
        check = self.board.check("ARP")
        with self.display.running("ARP across the overlay") as step:
            result = self.run_in(source.namespace, ["arping", "-c", "3", "-w", "4", "-I", source.iface, target.ip], 10)
            replies = re.findall(r"reply from ([\d.]+) \[([0-9A-Fa-f:]+)\]\s+([\d.]+)ms", result.stdout)
            if not replies:
                check.state, check.detail = "failed", f"no ARP reply from {target.ip}: {last_line(result.stderr or result.stdout)}"
            else:
                macs = {mac.lower() for _, mac, _ in replies}
                avg = sum(float(ms) for *_, ms in replies) / len(replies)
                matches = macs == {target.mac.lower()}
                check.state = "ok" if matches else "failed"
                check.detail = (f"who-has {target.ip}? {len(replies)}/3 replies: {', '.join(sorted(macs))} ({avg:.2f} ms), "
                                + (f"{target.name}'s own MAC" if matches else f"expected {target.name}'s MAC {target.mac}"))
            step.state, step.detail = check.state, check.detail

    def mdns_check(self) -> None:
        owner, seeker = self.members[0], self.members[1]
        check = self.board.check("mDNS")
        with self.display.running("mDNS service discovery") as step:
            try:
                check.detail = self.mdns_roundtrip(owner, seeker)
                check.state = "ok"
            except DemoError as exc:
                # Not fatal: the table shows it and the exit status says so.
                check.state, check.detail = "failed", str(exc)
            step.state, step.detail = check.state, check.detail

    def mdns_roundtrip(self, owner: Member, seeker: Member) -> str:
        helper = [sys.executable, str(MDNS_HELPER)]
        instance = f"l2mesh demo on {owner.name}"
        registrar = self.lab.start(owner.namespace, [*helper, "register", owner.ip, "--instance", instance,
                                                     "--host", f"{owner.name}-{owner.node_id}"], "mdns-register")
        wait_for(f"the mDNS registration on {owner.name}",
                 lambda: self.alive(registrar, "mdns-register") and "REGISTERED" in registrar.log_text(), 15)
        result = self.run_in(seeker.namespace, [*helper, "browse", seeker.ip, "--timeout", "10"], 20)
        if result.returncode != 0:
            raise DemoError(f"{seeker.name} did not resolve it: {last_line(result.stderr or result.stdout)}")
        found = json.loads(last_line(result.stdout))
        addresses = found["addresses"]
        if owner.ip not in addresses:
            raise DemoError(f"{seeker.name} resolved {found['name']} to {', '.join(addresses)}, not {owner.ip}")
        return (f"{owner.name} registered \"{instance}\" ({found['name'].split('.', 1)[1].rstrip('.')}); "
                f"{seeker.name} browsed and resolved it to {', '.join(addresses)}:{found['port']} ({found['server']})")

    def run(self) -> None:
        self.build_underlay()
        self.start_controller()
        self.start_members()
        self.authorize_members()
        self.ping_matrix()
        self.peer_paths()
        self.arp_check()
        self.mdns_check()

    def explore_help(self) -> list[str]:
        m1, m2 = self.members[0], self.members[1]
        return [
            f"The demo network is still running (run {self.lab.tag}, logs in {self.lab.logs}). Try:",
            f"  ip netns exec {m1.namespace} ping {m2.ip}",
            f"  ip netns exec {m1.namespace} arping -c 2 -I {m1.iface} {m2.ip}",
            f"  ip netns exec {m1.namespace} {L2MESH} peers --state-dir {m1.state_dir}",
            f"  ip netns exec {m2.namespace} {L2MESH} networks --state-dir {m2.state_dir}",
            f"  ip netns exec {self.controller_ns} {L2MESH_CTL} member list {self.network_id} --state-dir {self.controller_state}",
            f"  ip netns exec {m2.namespace} tcpdump -eni {m2.iface}        # the overlay, in clear",
            f"  ip netns exec {m2.namespace} tcpdump -ni eth0 udp port 9993   # the underlay: encrypted UDP",
            "Clean up later with:",
            f"  make demo DEMO_ARGS=--cleanup      (or: {sys.executable} {Path(__file__).resolve()} --cleanup)",
        ]


# -- running, signals, cleanup ---------------------------------------------------------------------------------
def on_signal(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise Interrupted(f"the demo ran past its time budget of {TIME_BUDGET_S} s", 1)
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}", 128 + signum)  # the shell's convention


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM/SIGHUP while tearing down: a second Ctrl-C must not leave namespaces behind."""
    signal.alarm(0)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def preflight() -> None:
    if os.geteuid() != 0:
        raise DemoError("the demo needs root (network namespaces, TAP devices): run `sudo make demo`")
    if not os.path.exists("/dev/net/tun"):
        raise DemoError("the demo needs /dev/net/tun (modprobe tun)")
    for program in (L2MESH, L2MESH_CTL):
        if not os.access(program, os.X_OK):
            raise DemoError(f"{program} not found: install l2mesh into this virtual environment (make demo does)")
    for tool in ("ip", "setpriv", "ping", "arping"):
        if shutil.which(tool) is None:
            raise DemoError(f"the demo needs `{tool}` (make deps installs it)")
    # What dead runs left goes now; two live runs would fight over nothing (names are random), but a
    # forgotten --keep run is better found now.
    sweep(prefix=PREFIX)
    runs = sorted({r.tag for r in load_records(RECORD_DIR, PREFIX)} | {tag_of(ns) for ns in unrecorded_namespaces()})
    if runs:
        raise DemoError(f"a previous demo is still set up (run {', '.join(runs)}); remove it first with: make demo DEMO_ARGS=--cleanup")


def tag_of(namespace: str) -> str:
    return "-".join(namespace.split("-")[:2])


def unrecorded_namespaces() -> list[str]:
    """Namespaces named like the demo's that no run record claims (left by an older version of the demo)."""
    recorded = {r.tag for r in load_records(RECORD_DIR)}
    return sorted(ns for ns in existing_namespaces() if ns.startswith(PREFIX) and tag_of(ns) not in recorded)


def run_demo(keep: bool, console: Console) -> int:
    """Run every step, then tear down (or keep); 0 only if every step and check passed."""
    board = Board(STEPS)
    lab: Lab | None = None
    demo: Demo | None = None
    error: str | None = None
    interrupted: Interrupted | None = None
    with Display(board, console) as display:
        try:
            # A kept run's processes must outlive the demo; the kernel stops the others if the demo is killed.
            lab = Lab(PREFIX, die_with_owner=not keep)
            demo = Demo(lab, board, display)
            demo.run()
        except LabError as exc:  # DemoError among them
            error = str(exc)
        except Interrupted as exc:
            error, interrupted = str(exc), exc
        except Exception as exc:  # a bug in the demo itself: still one line, still cleaned up
            error = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            with signals_deferred():
                for step in board.steps:
                    if step.state in ("pending", "running") and step.title != "Tear down":
                        step.state = "skipped" if step.state == "pending" else "failed"
                if lab is not None:
                    finish(lab, board, display, keep and interrupted is None)
    if keep and lab is not None and demo is not None and interrupted is None:
        console.print()
        for line in (demo.explore_help() if demo.members and demo.network_id else
                     [f"Kept what was built (run {lab.tag}). Clean up with: make demo DEMO_ARGS=--cleanup"]):
            console.print(line, highlight=False, markup=False)
    if error is not None:
        Console(stderr=True, highlight=False, soft_wrap=True).print(Text.assemble(("demo: error: ", "bold red"), error))
        return interrupted.exit_code if interrupted is not None else 1
    failed = board.failed()
    if failed:
        Console(stderr=True, highlight=False, soft_wrap=True).print(Text.assemble(("demo: failed: ", "bold red"), ", ".join(failed)))
        return 1
    return 0


def finish(lab: Lab, board: Board, display: Display, keep: bool) -> None:
    with display.running("Tear down") as step:
        if keep:
            step.title, step.detail = "Keep running (--keep)", f"processes and namespaces recorded in {lab.keep()}"
            return
        try:
            step.detail = str(lab.close())
        except TeardownError as exc:  # the step fails, the exit status says so, the rest of the output still shows
            step.state, step.detail = "failed", str(exc)


def cleanup_leftovers(console: Console) -> int:
    """--cleanup: stop the recorded processes of earlier (kept or killed) runs, delete their namespaces and temp dirs."""
    if os.geteuid() != 0:
        raise DemoError("--cleanup needs root")
    swept = sweep(prefix=PREFIX, include_kept=True)
    deleted = swept.namespaces
    for namespace in unrecorded_namespaces():
        if run(["ip", "netns", "pids", namespace], check=False).stdout.strip():
            console.print(f"warning: processes still run in {namespace} (not started by a recorded run); "
                          f"see `ip netns pids {namespace}`", highlight=False, markup=False)
        deleted += run(["ip", "netns", "del", namespace], check=False).returncode == 0
    for problem in swept.problems:
        console.print(f"could not clean up: {problem}", highlight=False, markup=False)
    if swept.processes or deleted:
        console.print(f"cleaned up: stopped {swept.processes} processes, deleted {deleted} namespaces", highlight=False)
    elif not swept.problems:
        console.print("nothing to clean up", highlight=False)
    return 1 if swept.problems else 0


def make_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped output defaults to 80 columns, which would fold the tables; logs can be wider.
        console = Console(highlight=False, width=int(os.environ.get("COLUMNS", "160")))
    return console


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error (the usage stays under --help)."""

    def error(self, message: str) -> NoReturn:
        print(f"demo: error: {message} (see demo/demo.py --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--keep", action="store_true", help="leave the network running and print how to explore it")
    group.add_argument("--cleanup", action="store_true", help="remove what an earlier --keep run left behind")
    args = parser.parse_args(argv)
    console = make_console()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, on_signal)
    try:
        if args.cleanup:
            with signals_deferred():
                return cleanup_leftovers(console)
        preflight()
        signal.alarm(TIME_BUDGET_S)
        return run_demo(args.keep, console)
    except (LabError, Interrupted) as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(Text.assemble(("demo: error: ", "bold red"), str(exc)))
        return exc.exit_code if isinstance(exc, Interrupted) else 1


if __name__ == "__main__":
    sys.exit(main())
