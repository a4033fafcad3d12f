"""Control-plane benchmark: how fast a controller change takes effect on the members.

Three figures, each measured in N rounds (median and max reported), in a
topology of network namespaces: a controller and three members a, b, c, each
on its own /24 of 198.18.0.0/15 behind a router namespace, and a namespace n
where fresh members (new identities) come and go.

1. deauthorize -> cut off. With a, b, c authorized and reaching each other,
   `l2mesh-ctl member deauthorize NETID <b>`; from just before the command
   starts until b's networks show ACCESS_DENIED, a and c no longer list b as a
   member peer, b's managed IP is gone from its TAP, and the last frame of a
   10 ms UDP stream a -> b reaches b's TAP. b is then re-authorized, which is
   measured as figure 2 for a known member ("reauthorize").
2. authorize -> reachable. A member that has joined and is ACCESS_DENIED
   (b after 1., and a fresh member that never was authorized): from just
   before `l2mesh-ctl member authorize` until its status is OK, its managed IP
   is on its TAP, and a's `ping -c1 -W 0.2` (repeated back to back) answers.
3. join -> OK. A fresh, pre-authorized member: from just before `l2mesh join`
   until status OK, IP on the TAP and the first ping from a.

Every change is triggered twice per round: through the CLI a user would type
(which includes Python start-up, also measured bare: `l2mesh-ctl --version`,
`l2mesh --version`) and without it: a PATCH to the controller's admin API from
a small resident helper in the controller's namespace (deauthorize,
authorize), or the daemon's control-socket request that `l2mesh join` sends
(join). Member state is polled every 10 ms through the daemons' control
sockets, with the very requests `l2mesh networks --json` and `l2mesh peers
--json` send (the CLIs' own start-up would make the polling interval ~0.35 s);
the real CLIs are run afterwards to confirm they show the same.

The benchmark drives the real CLIs and daemons as processes; from l2mesh it
imports only the control-socket client the CLIs use, for the polls, and the
namespace lab (l2mesh.lab). The helpers it runs inside namespaces are in
benchmarks/helpers/. Results: a rich table, and
benchmarks/results/control-<UTC timestamp>.json.

Usage: .venv/bin/python benchmarks/control.py [--rounds N] [--settle S] [--max-seconds S] [--keep-logs DIR]
Needs root, iproute2 and ping.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table

from l2mesh.edge.node.control_client import ControlError, call_daemon
from l2mesh.lab import Lab, LabError, NetnsHost, Proc, Processes, in_namespace, run

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nsbench, next to this script
import nsbench  # noqa: E402
from nsbench import (  # noqa: E402
    BIN, RESULTS_DIR, display_path, fail, log, machine_ticks, new_run, non_negative_float, positive_float,
    positive_int, tool_version,
)

nsbench.set_program("control")

# ------------------------------------------------------------------ constants
# One /24 each behind the router: 198.18.<index>.2 the host, .1 the router.
HOST_NAMES = ("ctl", "a", "b", "c", "n")
CTL_PORT = 9994
NODE_PORT = 9993
POOL = "10.147.17.0/24"

POLL_S = 0.01  # control-socket polls (a request costs ~1 ms)
POLL_SUBPROCESS_S = 0.02  # polls that run `ip`
COMMAND_POLL_S = 0.002  # has the triggering command returned?
PING_WAIT_S = "0.2"  # ping -W: how long one reachability attempt waits for its reply
PROBE_PORT = 40147
PROBE_INTERVAL_S = 0.01  # the UDP stream a -> b during deauthorize
PROBE_FLOW_FRAMES = 20  # frames b must see before the change is triggered
CUT_TIMEOUT_S = 5.0  # deauthorize: how long each condition gets
GRACE_S = 1.0  # deauthorize: the stream keeps running this long after the last condition
REACH_TIMEOUT_S = 15.0  # authorize / join: how long each condition gets
START_TIMEOUT_S = 15.0  # a daemon or the controller getting ready
DENIED_TIMEOUT_S = 10.0  # a fresh member's join answered with ACCESS_DENIED
SETTLE_S = 0.3  # after a change, before the next measurement
STARTUP_SAMPLES = 3  # bare CLI start-up samples per round and CLI
DEFAULT_MAX_SECONDS = 480.0  # no new round starts after this long
QUIET_PCT = 25  # "machine quiet" before a round: under 25 % of all CPUs busy
DEFAULT_SETTLE_S = 5.0

# Targets from the issue, and ZeroTier One on a comparable machine.
TARGET_DEAUTH_S = 0.5
TARGET_AUTH_S = 2.0
ZEROTIER_DEAUTH_S = 0.1
ZEROTIER_JOIN_PING_S = 10.0

L2MESH = str(BIN / "l2mesh")
L2MESH_CTL = str(BIN / "l2mesh-ctl")
STOP = threading.Event()  # set on interrupt and at cleanup: every poller thread ends


# ------------------------------------------------------------ helper scripts
# Run with this interpreter inside the namespaces; they share CLOCK_MONOTONIC
# with this process (network namespaces do not virtualize clocks), so every
# timestamp below is comparable.
HELPERS = Path(__file__).resolve().parent / "helpers"
PROBE = HELPERS / "probe.py"  # UDP stream a -> b, and the AF_PACKET sniffer on b's TAP
API_CLIENT = HELPERS / "api_client.py"  # resident admin-API client in the controller's namespace


# ------------------------------------------------------------------ topology
def tap_ipv4(ns: str, dev: str) -> list[str]:
    """IPv4 addresses on a device ([] when it does not exist)."""
    done = run(["ip", "-j", "-n", ns, "-4", "addr", "show", "dev", dev], timeout_s=5, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return []
    try:
        links = json.loads(done.stdout)
    except ValueError:
        return []
    return [a["local"] for link in links for a in link.get("addr_info", []) if a.get("local")]


def in_pool(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(POOL)


def ping_once(ns: str, target: str) -> bool:
    done = run(in_namespace(ns, ["ping", "-n", "-q", "-c", "1", "-W", PING_WAIT_S, target]), timeout_s=5, check=False)
    return done.returncode == 0


# ------------------------------------------------------- daemon control socket
def daemon_call(state_dir: Path, command: str, **arguments: Any) -> Any:
    """One request on a daemon's control socket: the one `l2mesh <command> --json` sends, without its start-up.

    l2mesh's own client; a failure is a LabError, which the pollers retry.
    """
    try:
        return call_daemon(state_dir, command, **arguments)
    except ControlError as exc:
        raise LabError(f"control socket of {state_dir}: {exc}") from None


def network_entry(state_dir: Path, network_id: str) -> dict[str, Any] | None:
    for network in daemon_call(state_dir, "networks"):
        if network["id"] == network_id:
            return network
    return None


def member_peers(state_dir: Path) -> set[str]:
    return {p["id"] for p in daemon_call(state_dir, "peers") if p.get("role") == "member"}


# -------------------------------------------------------------------- watcher
class Watcher:
    """Polls conditions, each in its own thread, and keeps the monotonic time each was first seen true.

    A check gets the watcher, so checks can share what they learn (the
    member's IP) through `values`. The time kept is when the check that saw
    the condition returned: an upper bound, late by at most one poll interval
    plus the check's own duration.
    """

    active: set["Watcher"] = set()

    def __init__(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.seen: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []
        self._halt = threading.Event()

    def add(self, name: str, check: Callable[["Watcher"], bool], interval: float = POLL_S) -> None:
        self._threads.append(threading.Thread(target=self._loop, args=(name, check, interval), daemon=True, name=f"watch-{name}"))

    def start(self) -> "Watcher":
        Watcher.active.add(self)
        for thread in self._threads:
            thread.start()
        return self

    def _loop(self, name: str, check: Callable[["Watcher"], bool], interval: float) -> None:
        while not STOP.is_set() and not self._halt.is_set() and time.monotonic() < self.deadline:
            try:
                ok = check(self)
            except LabError as exc:  # e.g. the control socket busy: try again
                ok = False
                self.errors[name] = str(exc)
            except Exception as exc:  # a bug in a check: stop this one, report it
                self.errors[name] = f"{type(exc).__name__}: {exc}"
                return
            if ok:
                self.seen[name] = time.monotonic()
                self.errors.pop(name, None)
                return
            time.sleep(interval)

    def halt(self) -> None:
        """Stop polling now (for watchers that only make load)."""
        self._halt.set()
        self.wait()

    def wait(self) -> "Watcher":
        for thread in self._threads:
            thread.join(max(0.0, self.deadline - time.monotonic()) + 10.0)
        Watcher.active.discard(self)
        return self

    def after(self, name: str, t0: float) -> float | None:
        return round(self.seen[name] - t0, 4) if name in self.seen else None

    @classmethod
    def join_all(cls, timeout: float) -> None:
        for watcher in list(cls.active):
            for thread in watcher._threads:
                thread.join(timeout)


# ------------------------------------------------------------ admin API helper
class ApiHelper:
    """The resident admin-API client (helpers/api_client.py) in the controller's namespace."""

    def __init__(self, procs: Processes, ns: str, state_dir: Path, log_path: Path) -> None:
        self.proc = procs.start("api-helper", in_namespace(ns, [sys.executable, str(API_CLIENT), str(state_dir)]), log=log_path,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.last_id = 0
        threading.Thread(target=self._read, args=(self.proc.popen.stdout,), daemon=True, name="api-reader").start()
        first = self._next(START_TIMEOUT_S)
        if not first.get("ready"):
            raise LabError(f"the admin API helper did not start: {self.proc.last_log_line()}")

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                self.replies.put(json.loads(line))
            except ValueError:
                pass
        self.replies.put(None)

    def _next(self, timeout: float) -> dict[str, Any]:
        """The answer to the last request (answers to earlier, abandoned ones are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise LabError(f"the admin API helper did not answer within {timeout:g} s") from None
            if reply is None:
                self.replies.put(None)
                raise LabError(f"the admin API helper exited: {self.proc.last_log_line()}")
            if reply.get("id", 0) == self.last_id:
                return reply

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        stdin = self.proc.popen.stdin
        assert stdin is not None
        self.last_id += 1
        try:
            stdin.write((json.dumps({"id": self.last_id, "method": method, "path": path, "body": body}) + "\n").encode())
            stdin.flush()
        except OSError as exc:
            raise LabError(f"the admin API helper is gone: {exc}") from None

    def poll_reply(self) -> dict[str, Any] | None:
        """The answer to the last request if it is in, else None."""
        try:
            return self._next(0.0)
        except LabError:
            if self.proc.popen.poll() is not None:
                raise
            return None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 15.0) -> dict[str, Any]:
        self.send(method, path, body)
        reply = self._next(timeout)
        if reply.get("status") is None or reply["status"] >= 400:
            raise LabError(f"admin API {method} {path}: {reply.get('error') or reply.get('body')}")
        return reply


# -------------------------------------------------------------------- members
@dataclass
class Node:
    name: str
    ns: str
    state_dir: Path
    node_id: str = ""
    daemon: Proc | None = None
    ip: str | None = None
    mac: str | None = None


@dataclass
class Context:
    lab: Lab
    hosts: dict[str, NetnsHost] = field(default_factory=dict)  # HOST_NAMES, once the underlay is built
    ctl_state: Path = field(init=False)
    network_id: str = ""
    api: ApiHelper | None = None
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ctl_state = self.work / "ctl" / "state"

    @property
    def procs(self) -> Processes:
        return self.lab.processes

    @property
    def work(self) -> Path:
        return self.lab.work_dir

    def ns(self, host: str) -> str:
        return self.hosts[host].namespace

    @property
    def tap(self) -> str:
        # The daemon names its TAP "l2m" + the network id's first 8 hex digits.
        return "l2m" + self.network_id[:8]

    @property
    def controller(self) -> str:
        return f"{self.hosts['ctl'].ip}:{CTL_PORT}"

    def ctl_argv(self, *argv: str) -> list[str]:
        return in_namespace(self.ns("ctl"), [L2MESH_CTL, *argv, "--state-dir", str(self.ctl_state)])

    def node_argv(self, node: Node, *argv: str) -> list[str]:
        return in_namespace(node.ns, [L2MESH, *argv, "--state-dir", str(node.state_dir)])

    def member_path(self, node_id: str) -> str:
        return f"/networks/{self.network_id}/members/{node_id}"


def new_node(ctx: Context, name: str, host: str, label: str | None = None) -> Node:
    """A node identity (`l2mesh id`) and its daemon, running, in host's namespace."""
    node = Node(name, ctx.ns(host), ctx.work / (label or name) / "state")
    node.state_dir.mkdir(parents=True, exist_ok=True)
    node.node_id = run(ctx.node_argv(node, "id"), timeout_s=30).stdout.strip()
    if not re.fullmatch(r"[0-9a-f]{10}", node.node_id):
        raise LabError(f"l2mesh id printed {node.node_id!r}, not a node id")
    node.daemon = ctx.procs.start(
        f"daemon-{label or name}",
        in_namespace(node.ns, [L2MESH, "daemon", "--state-dir", str(node.state_dir), "--port", str(NODE_PORT)]),
        log=node.state_dir.parent / "daemon.log",
    )
    try:
        wait_ready(node.daemon, node.state_dir / "control.sock", f"{name}'s daemon", "made no control socket")
    except LabError:
        stop_node(ctx, node)  # its port and TAP name are free for the next one
        raise
    return node


def wait_ready(proc: Proc, path: Path, who: str, failed: str) -> None:
    """Until proc has made path (its sign of being ready); a LabError if it exits first or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if proc.popen.poll() is not None:
            raise LabError(f"{who} exited ({proc.popen.returncode}): {proc.last_log_line()}")
        if time.monotonic() > deadline:
            raise LabError(f"{who} {failed} within {START_TIMEOUT_S:g} s")
        time.sleep(0.05)


def stop_node(ctx: Context, node: Node) -> None:
    if node.daemon is not None:
        ctx.procs.stop(node.daemon)
        node.daemon = None


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = POLL_S) -> Any:
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            value = predicate()
        except LabError as exc:
            value, last_error = None, str(exc)
        if value:
            return value
        if time.monotonic() > deadline or STOP.is_set():
            raise LabError(f"timed out after {timeout:g} s waiting for {what}" + (f" ({last_error})" if last_error else ""))
        time.sleep(interval)


def status_of(ctx: Context, node: Node) -> str | None:
    entry = network_entry(node.state_dir, ctx.network_id)
    return entry["status"] if entry else None


# ---------------------------------------------------------------------- setup
def start_controller(ctx: Context) -> Proc:
    ctx.ctl_state.mkdir(parents=True, exist_ok=True)
    argv = in_namespace(ctx.ns("ctl"), [L2MESH_CTL, "serve", "--state-dir", str(ctx.ctl_state), "--listen", f"0.0.0.0:{CTL_PORT}"])
    proc = ctx.procs.start("controller", argv, log=ctx.work / "ctl" / "controller.log")
    wait_ready(proc, ctx.ctl_state / "api.json", "the controller", "wrote no api.json")
    return proc


def setup(ctx: Context) -> None:
    """Controller, network, members a, b, c authorized, joined and pinging each other."""
    # Every member reaches the controller.
    ctx.hosts = nsbench.build_underlay(ctx.lab, HOST_NAMES, check=[(name, "ctl") for name in HOST_NAMES[1:]])
    start_controller(ctx)
    ctx.network_id = run(ctx.ctl_argv("network", "create", "bench", "--pool", POOL), timeout_s=30).stdout.strip()
    if not re.fullmatch(r"[0-9a-f]{16}", ctx.network_id):
        raise LabError(f"network create printed {ctx.network_id!r}, not a network id")
    ctx.api = ApiHelper(ctx.procs, ctx.ns("ctl"), ctx.ctl_state, ctx.work / "ctl" / "api-helper.log")
    for name in ("a", "b", "c"):
        node = ctx.nodes[name] = new_node(ctx, name, name)
        run(ctx.ctl_argv("member", "authorize", ctx.network_id, node.node_id, "--name", name), timeout_s=30)
        run(ctx.node_argv(node, "join", ctx.network_id, "--controller", ctx.controller), timeout_s=30)
    for node in ctx.nodes.values():
        entry = wait_for(f"{node.name} OK with an IP",
                         lambda n=node: (e := network_entry(n.state_dir, ctx.network_id)) and e["status"] == "OK" and e["ips"] and e,
                         REACH_TIMEOUT_S)
        node.ip, node.mac = entry["ips"][0], entry["mac"]
    for src in ctx.nodes.values():
        for dst in ctx.nodes.values():
            if src is not dst:
                wait_for(f"{src.name} -> {dst.name} ping", lambda s=src, d=dst: ping_once(s.ns, d.ip), REACH_TIMEOUT_S)
    log(f"network {ctx.network_id}: " + ", ".join(f"{n.name} {n.node_id} {n.ip}" for n in ctx.nodes.values()))


def poll_cost_ms(ctx: Context, samples: int = 50) -> dict[str, float]:
    """What one control-socket poll costs (the resolution of every figure below)."""
    node = ctx.nodes["b"]
    costs = []
    for _ in range(samples):
        t = time.monotonic()
        daemon_call(node.state_dir, "networks")
        costs.append((time.monotonic() - t) * 1000)
    return {"median_ms": round(statistics.median(costs), 3), "max_ms": round(max(costs), 3)}


# --------------------------------------------------------------- measurements
def timed_cli(argv: Sequence[str]) -> float:
    t = time.monotonic()
    run(argv, timeout_s=30)
    return time.monotonic() - t


def poll_load(ctx: Context, kind: str) -> Watcher:
    """The polls of a measurement ("deauth" or "reach"), on conditions that never hold.

    CLI start-up is CPU-bound and the pollers take a share of a 2-core
    machine, so the start-up subtracted from a CLI-triggered figure is timed
    under the same polls.
    """
    a, b, c = ctx.nodes["a"], ctx.nodes["b"], ctx.nodes["c"]
    watcher = Watcher(120.0)
    watcher.add("status", lambda w: status_of(ctx, b) == "never")
    if kind == "deauth":
        watcher.add("peers-a", lambda w: member_peers(a.state_dir) is None)
        watcher.add("peers-c", lambda w: member_peers(c.state_dir) is None)
    watcher.add("ip", lambda w: tap_ipv4(b.ns, ctx.tap) is None, POLL_SUBPROCESS_S)
    return watcher.start()


STARTUP_LABELS = {
    "ctl_version_s": "l2mesh-ctl --version",
    "node_version_s": "l2mesh --version",
    "ctl_version_deauth_polls_s": "l2mesh-ctl --version, under deauthorize's polls",
    "ctl_version_reach_polls_s": "l2mesh-ctl --version, under authorize's polls",
    "node_version_reach_polls_s": "l2mesh --version, under join's polls",
    "ctl_member_list_s": "l2mesh-ctl member list --json (one admin request)",
    "node_networks_cli_s": "l2mesh networks --json (one CLI poll)",
}
# Which start-up a CLI-triggered figure is read net of.
NET_OF = {"deauthorize": "ctl_version_deauth_polls_s", "reauthorize": "ctl_version_reach_polls_s",
          "authorize": "ctl_version_reach_polls_s", "join": "node_version_reach_polls_s"}


def measure_startup(ctx: Context) -> dict[str, list[float]]:
    """Bare CLI start-up, in the namespaces where the triggering commands run (ip netns exec included)."""
    a = ctx.nodes["a"]
    ctl_version = in_namespace(ctx.ns("ctl"), [L2MESH_CTL, "--version"])
    node_version = in_namespace(ctx.ns("n"), [L2MESH, "--version"])
    out: dict[str, list[float]] = {key: [] for key in STARTUP_LABELS}
    out["ctl_version_s"].append(round(timed_cli(ctl_version), 4))
    out["node_version_s"].append(round(timed_cli(node_version), 4))
    out["ctl_member_list_s"].append(round(timed_cli(ctx.ctl_argv("member", "list", ctx.network_id, "--json")), 4))
    out["node_networks_cli_s"].append(round(timed_cli(ctx.node_argv(a, "networks", "--json")), 4))
    for kind, key, argv in (("deauth", "ctl_version_deauth_polls_s", ctl_version),
                            ("reach", "ctl_version_reach_polls_s", ctl_version),
                            ("reach", "node_version_reach_polls_s", node_version)):
        load = poll_load(ctx, kind)
        try:
            time.sleep(0.1)
            for _ in range(STARTUP_SAMPLES):
                out[key].append(round(timed_cli(argv), 4))
        finally:
            load.halt()
    return out


class Trigger:
    """Starts the change (CLI process, admin API request or control-socket request) and knows when it returned."""

    def __init__(self, ctx: Context, variant: str, label: str) -> None:
        self.ctx, self.variant, self.label = ctx, variant, label
        self.t0: float | None = None
        self.proc: Proc | None = None
        self.api_reply: dict[str, Any] | None = None
        self.done_at: float | None = None

    def cli(self, argv: Sequence[str]) -> None:
        self.proc = self.ctx.procs.start(self.label, argv, log=self.ctx.work / f"{self.label}.log")
        self.t0 = self.proc.started

    def api(self, method: str, path: str, body: dict[str, Any]) -> None:
        assert self.ctx.api is not None
        self.t0 = time.monotonic()  # replaced by the helper's own time just before the request
        self.ctx.api.send(method, path, body)

    def socket(self, state_dir: Path, command: str, **arguments: Any) -> None:
        self.t0 = time.monotonic()
        daemon_call(state_dir, command, **arguments)
        self.done_at = time.monotonic()

    def returned(self, watcher: Watcher) -> bool:
        if self.proc is not None:
            return self.proc.popen.poll() is not None
        if self.done_at is not None:
            return True
        assert self.ctx.api is not None
        reply = self.ctx.api.poll_reply()
        if reply is not None:
            self.api_reply = reply
        return reply is not None

    def finish(self, watcher: Watcher) -> tuple[float, float | None]:
        """(t0, seconds the command took); a failed command is a LabError."""
        assert self.t0 is not None
        if self.proc is not None:
            code = self.ctx.procs.finish(self.proc, 30.0)
            if code != 0:
                raise LabError(f"{self.label} failed ({code}): {self.proc.last_log_line()}")
            return self.t0, watcher.after("command", self.t0)
        if self.done_at is not None:
            return self.t0, round(self.done_at - self.t0, 4)
        if self.api_reply is None:
            assert self.ctx.api is not None
            self.api_reply = self.ctx.api._next(15.0)
        reply = self.api_reply
        if reply.get("status") is None or reply["status"] >= 400:
            raise LabError(f"admin API request failed: {reply.get('error') or reply.get('body')}")
        return reply["t0"], round(reply["t1"] - reply["t0"], 4)


def read_frames(path: Path) -> list[tuple[int, float, float]]:
    frames = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit():
            frames.append((int(parts[0]), float(parts[1]), float(parts[2])))
    return frames


def measure_deauthorize(ctx: Context, variant: str, round_no: int) -> dict[str, Any]:
    """Figure 1: b deauthorized while a streams UDP to it; everything relative to the trigger."""
    a, b, c = ctx.nodes["a"], ctx.nodes["b"], ctx.nodes["c"]
    row: dict[str, Any] = {"scenario": "deauthorize", "variant": variant, "round": round_no}
    assert b.ip and b.mac
    for node in (a, b, c):
        if status_of(ctx, node) != "OK":
            raise LabError(f"{node.name} is not OK before deauthorize")
    for node in (a, c):
        wait_for(f"{node.name} to list b as a peer", lambda n=node: b.node_id in member_peers(n.state_dir), 5.0)
    # A fixed neighbour entry: the stream a -> b then never waits on ARP, so
    # when it stops it is the overlay that stopped it.
    run(["ip", "-n", a.ns, "neigh", "replace", b.ip, "lladdr", b.mac, "dev", ctx.tap, "nud", "permanent"], 10)
    label = f"r{round_no}-deauth-{variant}"
    sniff = ctx.procs.start(f"{label}-sniff", in_namespace(b.ns, [sys.executable, str(PROBE), "sniff", ctx.tap, str(PROBE_PORT)]),
                            log=ctx.work / f"{label}-sniff.log")
    sender: Proc | None = None
    try:
        wait_for("the sniffer on b", lambda: "ready" in sniff.log_text() or sniff.popen.poll() is not None, 10.0)
        if sniff.popen.poll() is not None:
            raise LabError(f"the sniffer on b exited: {sniff.last_log_line()}")
        sender = ctx.procs.start(f"{label}-send", in_namespace(a.ns, [sys.executable, str(PROBE), "send", b.ip,
                                                                       str(PROBE_PORT), str(PROBE_INTERVAL_S)]),
                                 log=ctx.work / f"{label}-send.log")
        wait_for(f"{PROBE_FLOW_FRAMES} frames a -> b", lambda: len(read_frames(sniff.log)) >= PROBE_FLOW_FRAMES, 10.0)

        trigger = member_trigger(ctx, variant, b, f"{label}-command", authorized=False)
        watcher = Watcher(CUT_TIMEOUT_S)
        watcher.add("command", trigger.returned, COMMAND_POLL_S)
        watcher.add("denied", lambda w: status_of(ctx, b) == "ACCESS_DENIED")
        watcher.add("a_drops", lambda w: b.node_id not in member_peers(a.state_dir))
        watcher.add("c_drops", lambda w: b.node_id not in member_peers(c.state_dir))
        watcher.add("ip_removed", lambda w: b.ip not in tap_ipv4(b.ns, ctx.tap), POLL_SUBPROCESS_S)
        watcher.start().wait()
        t0, row["command_s"] = trigger.finish(watcher)
        # The stream runs on GRACE_S after the last condition: frames after that would be a leak.
        time.sleep(GRACE_S)
        window_end = time.monotonic()
    finally:
        if sender is not None:
            ctx.procs.stop(sender)
        ctx.procs.stop(sniff)
        run(["ip", "-n", a.ns, "neigh", "del", b.ip, "dev", ctx.tap], 10, check=False)

    for key in ("denied", "a_drops", "c_drops", "ip_removed"):
        row[f"{key}_s"] = watcher.after(key, t0)
    frames = read_frames(sniff.log)
    before = [f for f in frames if f[2] < t0]
    after = [f for f in frames if f[2] >= t0]
    row["frames_before"] = len(before)
    row["frames_after_trigger"] = len(after)
    row["send_errors"] = sum(1 for line in sender.log_text().splitlines() if line.startswith("error")) if sender else None
    if not before or before[-1][2] < t0 - 0.1:
        raise LabError("the stream a -> b was not flowing when b was deauthorized")
    last = after[-1] if after else before[-1]
    row["last_frame_s"] = round(last[2] - t0, 4)
    row["last_frame_sent_s"] = round(last[1] - t0, 4)
    leak = last[2] > window_end - GRACE_S / 2
    row["stream_still_flowing"] = leak
    conditions = [row[k] for k in ("denied_s", "a_drops_s", "c_drops_s")]
    row["cutoff_s"] = None if leak or None in conditions else max([*conditions, row["last_frame_s"]])
    # The real CLIs must show what the control-socket polls saw.
    row["cli_agrees"] = cli_shows_cut_off(ctx, b, (a, c))
    missing = [k for k in ("denied_s", "a_drops_s", "c_drops_s", "ip_removed_s") if row[k] is None]
    if missing or leak:
        problems = [f"{k[:-2]} not seen within {CUT_TIMEOUT_S:g} s" for k in missing]
        if leak:
            problems.append(f"frames a -> b still reach b's TAP {row['last_frame_s']:.3f} s after the trigger")
        row["error"] = "; ".join(problems) + (f" (poll errors: {watcher.errors})" if watcher.errors else "")
    return row


def cli_shows_cut_off(ctx: Context, b: Node, peers: Sequence[Node]) -> bool:
    networks = json.loads(run(ctx.node_argv(b, "networks", "--json"), 30).stdout)
    denied = any(n["id"] == ctx.network_id and n["status"] == "ACCESS_DENIED" for n in networks)
    dropped = all(
        not any(p["id"] == b.node_id and p["role"] == "member" for p in json.loads(run(ctx.node_argv(n, "peers", "--json"), 30).stdout))
        for n in peers
    )
    return denied and dropped


def watch_reachable(ctx: Context, target: Node, trigger: Trigger, row: dict[str, Any]) -> None:
    """Figures 2 and 3, after the trigger: command returned, status OK, IP on the TAP, first ping from a."""
    a = ctx.nodes["a"]

    def ok(w: Watcher) -> bool:
        entry = network_entry(target.state_dir, ctx.network_id)
        if entry and entry["status"] == "OK" and entry["ips"]:
            w.values.setdefault("ip", entry["ips"][0])
            return True
        return False

    def ip_on_tap(w: Watcher) -> bool:
        addresses = [ip for ip in tap_ipv4(target.ns, ctx.tap) if in_pool(ip)]
        if addresses:
            w.values["tap_ip"] = addresses[0]
            w.values.setdefault("ip", addresses[0])
        return bool(addresses)

    def ping(w: Watcher) -> bool:
        ip = w.values.get("ip")
        return bool(ip) and ping_once(a.ns, ip)

    watcher = Watcher(REACH_TIMEOUT_S)
    watcher.add("command", trigger.returned, COMMAND_POLL_S)
    watcher.add("ok", ok)
    watcher.add("ip", ip_on_tap, POLL_SUBPROCESS_S)
    watcher.add("ping", ping)
    watcher.start().wait()
    t0, row["command_s"] = trigger.finish(watcher)
    row["ok_s"], row["ip_s"], row["ping_s"] = (watcher.after(k, t0) for k in ("ok", "ip", "ping"))
    row["ip"] = watcher.values.get("ip")
    if watcher.values.get("tap_ip") not in (None, row["ip"]):
        row["note"] = f"TAP has {watcher.values['tap_ip']}, networks says {row['ip']}"
    networks = json.loads(run(ctx.node_argv(target, "networks", "--json"), 30).stdout)
    row["cli_agrees"] = any(n["id"] == ctx.network_id and n["status"] == "OK" and row["ip"] in n["ips"] for n in networks)
    missing = [k for k in ("ok", "ip", "ping") if watcher.after(k, t0) is None]
    if missing:
        row["error"] = f"{', '.join(missing)} not seen within {REACH_TIMEOUT_S:g} s" + (
            f" (poll errors: {watcher.errors})" if watcher.errors else "")


def member_trigger(ctx: Context, variant: str, node: Node, label: str, authorized: bool = True) -> Trigger:
    """`l2mesh-ctl member authorize/deauthorize` (cli) or the same change as an admin API PATCH (api), started."""
    trigger = Trigger(ctx, variant, label)
    if variant == "cli":
        trigger.cli(ctx.ctl_argv("member", "authorize" if authorized else "deauthorize", ctx.network_id, node.node_id))
    else:
        trigger.api("PATCH", ctx.member_path(node.node_id), {"authorized": authorized})
    return trigger


def measure_reauthorize(ctx: Context, variant: str, round_no: int) -> dict[str, Any]:
    """Figure 2 for b, deauthorized just before: known to its peers, joined, ACCESS_DENIED."""
    b = ctx.nodes["b"]
    row: dict[str, Any] = {"scenario": "reauthorize", "variant": variant, "round": round_no}
    wait_for("b ACCESS_DENIED", lambda: status_of(ctx, b) == "ACCESS_DENIED", DENIED_TIMEOUT_S)
    trigger = member_trigger(ctx, variant, b, f"r{round_no}-reauth-{variant}-command")
    watch_reachable(ctx, b, trigger, row)
    return row


def restore_b(ctx: Context) -> None:
    """After a failed step: b authorized again and reachable, or a LabError."""
    b, a = ctx.nodes["b"], ctx.nodes["a"]
    assert ctx.api is not None and b.ip
    ctx.api.request("PATCH", ctx.member_path(b.node_id), {"authorized": True})
    wait_for("b OK again", lambda: status_of(ctx, b) == "OK", REACH_TIMEOUT_S)
    wait_for("a -> b ping again", lambda: ping_once(a.ns, b.ip), REACH_TIMEOUT_S)


def measure_fresh(ctx: Context, scenario: str, variant: str, round_no: int) -> dict[str, Any]:
    """Figure 2 for a new member ("authorize": joined, ACCESS_DENIED) or figure 3 ("join": pre-authorized)."""
    row: dict[str, Any] = {"scenario": scenario, "variant": variant, "round": round_no}
    label = f"r{round_no}-{scenario}-{variant}"
    node = new_node(ctx, f"n ({label})", "n", label)
    assert ctx.api is not None
    row["node_id"] = node.node_id
    try:
        if scenario == "authorize":
            run(ctx.node_argv(node, "join", ctx.network_id, "--controller", ctx.controller), timeout_s=30)
            wait_for("the new member ACCESS_DENIED", lambda: status_of(ctx, node) == "ACCESS_DENIED", DENIED_TIMEOUT_S)
            time.sleep(SETTLE_S)
            trigger = member_trigger(ctx, variant, node, f"{label}-command")
        else:
            ctx.api.request("PATCH", ctx.member_path(node.node_id), {"authorized": True, "name": label})
            time.sleep(SETTLE_S)
            trigger = Trigger(ctx, variant, f"{label}-command")
            if variant == "cli":
                trigger.cli(ctx.node_argv(node, "join", ctx.network_id, "--controller", ctx.controller))
            else:
                trigger.socket(node.state_dir, "join", network_id=ctx.network_id, controller=ctx.controller)
        watch_reachable(ctx, node, trigger, row)
    finally:
        # Retired by deauthorizing, not deleting: its IP stays taken, so no
        # later member gets an address a's ARP cache still maps to an old MAC.
        try:
            ctx.api.request("PATCH", ctx.member_path(node.node_id), {"authorized": False})
        finally:
            stop_node(ctx, node)
    return row


# ---------------------------------------------------------------------- runs
def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Busy share of all CPUs between two machine_ticks() samples, in %."""
    return round(nsbench.busy_share(before, after) * 100, 1)


def guarded(ctx: Context, step: Callable[[], dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """One measurement; any failure (even a bug here) becomes the row's error and the run goes on."""
    before, self_before, wall_before = machine_ticks(), time.process_time(), time.monotonic()
    try:
        row = step()
    except LabError as exc:
        row = {**base, "error": str(exc)}
    except Exception as exc:
        row = {**base, "error": f"{type(exc).__name__}: {exc}"}
    # The whole machine during the step, our own pollers included (they use a few % of it).
    row["busy_pct"] = busy_pct(before, machine_ticks())
    # This script's own threads (the pollers), in % of one core; the `ip` and ping they run are not in it.
    row["self_cpu_pct"] = round((time.process_time() - self_before) / max(time.monotonic() - wall_before, 1e-6) * 100, 1)
    if row.get("error"):
        log(f"round {row['round']}: {row['scenario']} ({row['variant']}) failed: {row['error']}")
    print(json.dumps(row), flush=True)
    time.sleep(SETTLE_S)
    return row


def run_rounds(ctx: Context, args: argparse.Namespace, started: float, rows: list[dict[str, Any]],
               startup: dict[str, list[float]], idle_busy: list[float]) -> None:
    """Fills rows, startup samples and the machine's busy % before each round (kept when interrupted)."""
    for round_no in range(1, args.rounds + 1):
        elapsed = time.monotonic() - started
        if elapsed > args.max_seconds:
            log(f"{elapsed:.0f} s elapsed (--max-seconds {args.max_seconds:g}): no round {round_no}")
            break
        # Other jobs on a shared machine slow the CLIs and the daemons; measured anyway after --settle.
        idle_busy.append(round(nsbench.wait_quiet(args.settle, QUIET_PCT, STOP) * 100, 1))
        log(f"round {round_no}/{args.rounds} (machine {idle_busy[-1]:.0f} % busy before it)")
        this_round = measure_startup(ctx)
        for key, values in this_round.items():
            startup.setdefault(key, []).extend(values)
        # A CLI-triggered figure is read net of this round's start-up: load
        # from other jobs changes between rounds more than within one.
        reference = {key: round(statistics.median(values), 4) for key, values in this_round.items() if values}

        def record(row: dict[str, Any]) -> dict[str, Any]:
            if row["variant"] == "cli":
                row["startup_ref_s"] = reference.get(NET_OF[row["scenario"]])
            rows.append(row)
            return row

        # Alternate which variant goes first, so drift does not favour one.
        order = ("cli", "api") if round_no % 2 else ("api", "cli")
        for variant in order:
            record(guarded(ctx, lambda v=variant: measure_deauthorize(ctx, v, round_no),
                           {"scenario": "deauthorize", "variant": variant, "round": round_no}))
            row = record(guarded(ctx, lambda v=variant: measure_reauthorize(ctx, v, round_no),
                                 {"scenario": "reauthorize", "variant": variant, "round": round_no}))
            if row.get("error"):
                try:
                    restore_b(ctx)
                except LabError as exc:
                    log(f"round {round_no}: could not bring b back: {exc}")
        for scenario, variants in (("authorize", order), ("join", tuple("socket" if v == "api" else v for v in order))):
            for variant in variants:
                record(guarded(ctx, lambda s=scenario, v=variant: measure_fresh(ctx, s, v, round_no),
                               {"scenario": scenario, "variant": variant, "round": round_no}))


# ------------------------------------------------------------------- summary
DEAUTH_METRICS = (
    ("command_s", "command"), ("denied_s", "b DENIED"), ("a_drops_s", "a drops b"), ("c_drops_s", "c drops b"),
    ("ip_removed_s", "b IP gone"), ("last_frame_s", "last frame a→b"), ("cutoff_s", "cut off"),
)
REACH_METRICS = (("command_s", "command"), ("ok_s", "status OK"), ("ip_s", "IP on TAP"), ("ping_s", "first ping"))
SCENARIOS = (
    ("deauthorize", ("cli", "api"), DEAUTH_METRICS),
    ("reauthorize", ("cli", "api"), REACH_METRICS),
    ("authorize", ("cli", "api"), REACH_METRICS),
    ("join", ("cli", "socket"), REACH_METRICS),
)


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "max": None, "n": 0}
    return {"median": round(statistics.median(values), 4), "max": round(max(values), 4), "n": len(values)}


def summarize(rows: list[dict[str, Any]], startup: dict[str, list[float]]) -> dict[str, Any]:
    start = {key: stats(values) for key, values in startup.items()}
    summary: dict[str, Any] = {"startup": start, "busy_pct": stats([r["busy_pct"] for r in rows if "busy_pct" in r]),
                               "self_cpu_pct": stats([r["self_cpu_pct"] for r in rows if "self_cpu_pct" in r])}
    for scenario, variants, metrics in SCENARIOS:
        summary[scenario] = {}
        for variant in variants:
            mine = [r for r in rows if r["scenario"] == scenario and r["variant"] == variant]
            entry: dict[str, Any] = {
                key: stats([r[key] for r in mine if r.get(key) is not None]) for key, _ in metrics
            }
            entry["rounds"] = len(mine)
            entry["errors"] = [f"round {r['round']}: {r['error']}" for r in mine if r.get("error")]
            entry["cli_disagrees"] = [r["round"] for r in mine if r.get("cli_agrees") is False]
            if variant == "cli":
                # The CLI's start-up is in every figure of a CLI-triggered change:
                # per round, figure minus that round's start-up, then the median.
                entry["startup_subtracted"] = NET_OF[scenario]
                entry["net_of_startup"] = {}
                for k, _ in metrics:
                    nets = [r[k] - r["startup_ref_s"] for r in mine if r.get(k) is not None and r.get("startup_ref_s") is not None]
                    entry["net_of_startup"][k] = round(statistics.median(nets), 4) if nets else None
            summary[scenario][variant] = entry
    return summary


def cell(entry: dict[str, Any]) -> str:
    if entry["median"] is None:
        return "-"
    return f"{entry['median']:.3f} / {entry['max']:.3f}"


def print_tables(summary: dict[str, Any], rounds: int) -> None:
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    trigger_names = {"cli": "l2mesh-ctl", "api": "admin API", "socket": "control socket"}

    table = Table(title=f"deauthorize b -> cut off, seconds after the trigger, median / max of {rounds} round(s)",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("trigger", no_wrap=True)
    for _, title in DEAUTH_METRICS:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column(f"≤ {TARGET_DEAUTH_S:g} s", justify="left", no_wrap=True)
    for variant, entry in summary["deauthorize"].items():
        cut = entry["cutoff_s"]["max"]
        table.add_row(trigger_names[variant], *(cell(entry[k]) for k, _ in DEAUTH_METRICS),
                      "-" if cut is None else ("yes" if cut <= TARGET_DEAUTH_S else "no"))
        if entry.get("net_of_startup"):
            table.add_row("  net of start-up", *(fmt(entry["net_of_startup"][k]) for k, _ in DEAUTH_METRICS), "")
    console.print(table)
    console.print(f"cut off = the latest of b DENIED, a drops b, c drops b and the last frame a→b; "
                  f"target {TARGET_DEAUTH_S:g} s, ZeroTier One ~{ZEROTIER_DEAUTH_S:g} s", markup=False)

    table = Table(title=f"authorize / join -> reachable, seconds after the trigger, median / max of {rounds} round(s)",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("change", no_wrap=True)
    table.add_column("trigger", no_wrap=True)
    for _, title in REACH_METRICS:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column(f"ping ≤ {TARGET_AUTH_S:g} s", justify="left", no_wrap=True)
    names = {"reauthorize": "authorize b again", "authorize": "authorize new member", "join": "join, pre-authorized"}
    for scenario in ("reauthorize", "authorize", "join"):
        for variant, entry in summary[scenario].items():
            worst = entry["ping_s"]["max"]
            met = "-" if worst is None else ("yes" if worst <= TARGET_AUTH_S else "no")
            table.add_row(names[scenario], trigger_names[variant], *(cell(entry[k]) for k, _ in REACH_METRICS),
                          met if scenario != "join" else f"({met})")
            if entry.get("net_of_startup"):
                table.add_row("", "  net of start-up", *(fmt(entry["net_of_startup"][k]) for k, _ in REACH_METRICS), "")
    console.print(table)
    console.print(f"target {TARGET_AUTH_S:g} s authorize -> first ping (join has none; shown for comparison); "
                  f"ZeroTier One ~{ZEROTIER_JOIN_PING_S:g} s from join to first ping", markup=False)

    table = Table(title="CLI start-up (ip netns exec included, as for the triggers), seconds",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("command", "median", "max", "samples"):
        table.add_column(column, justify="left" if column == "command" else "right", no_wrap=True)
    for key, entry in summary["startup"].items():
        table.add_row(STARTUP_LABELS.get(key, key), fmt(entry["median"]), fmt(entry["max"]), str(entry["n"]))
    console.print(table)
    busy = summary["busy_pct"]
    if busy["n"]:
        console.print(f"whole machine busy during the measurements: median {busy['median']:.0f} %, max {busy['max']:.0f} % "
                      f"of all CPUs; this script's pollers: median {summary['self_cpu_pct']['median']:.0f} % of one core",
                      markup=False)
    for scenario, variants, _ in SCENARIOS:
        for variant in variants:
            entry = summary[scenario][variant]
            for error in entry["errors"]:
                console.print(f"{scenario} ({variant}) {error}", markup=False)
            if entry["cli_disagrees"]:
                console.print(f"{scenario} ({variant}): the CLI showed another state than the polls in round(s) "
                              f"{entry['cli_disagrees']}", markup=False)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def code_info() -> dict[str, Any]:
    """Which l2mesh was measured: the checkout's commit and its uncommitted changes under l2mesh/."""
    repo = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"repo": str(repo), "pythonpath": os.environ.get("PYTHONPATH")}
    if shutil.which("git"):
        head = run(["git", "-C", str(repo), "rev-parse", "HEAD"], timeout_s=10, check=False)
        changed = run(["git", "-C", str(repo), "status", "--porcelain", "--", "l2mesh"], timeout_s=10, check=False)
        info["commit"] = head.stdout.strip() or None
        info["uncommitted"] = [line[3:] for line in changed.stdout.splitlines()]
    return info


def machine_info() -> dict[str, Any]:
    return nsbench.machine_info({
        "l2mesh": tool_version([L2MESH, "--version"]),
        "l2mesh-ctl": tool_version([L2MESH_CTL, "--version"]),
        "ping": tool_version(["ping", "-V"]),
    }, code=code_info())


def write_results(path: Path, stamp: str, args: argparse.Namespace, machine: dict[str, Any], poll_cost: dict[str, float] | None,
                  idle_busy: list[float], rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    head = {
        "options": {"rounds": args.rounds, "max_seconds": args.max_seconds, "settle_s": args.settle, "quiet_pct": QUIET_PCT},
        "method": {
            "times": "seconds from just before the trigger (CLI fork, admin API request, control-socket request) "
                     "to when a poll first saw the condition: an upper bound, late by at most one poll",
            "poll_interval_s": {"control_socket": POLL_S, "ip_addr": POLL_SUBPROCESS_S, "command_returned": COMMAND_POLL_S},
            "poll_cost": poll_cost,
            "status_and_peers": "daemon control-socket requests `networks` / `peers` (what the CLIs' --json print); "
                                "the real CLIs confirm afterwards (cli_agrees)",
            "data_plane": f"UDP stream a -> b every {PROBE_INTERVAL_S} s, static ARP entry on a, "
                          f"frames captured with AF_PACKET on b's TAP; runs {GRACE_S} s past the last condition",
            "reachable": f"ping -c1 -W {PING_WAIT_S} from a, back to back, once the IP is known",
            "cutoff_s": "max(b ACCESS_DENIED, a drops b, c drops b, last frame a -> b at b's TAP)",
            "net_of_startup": "median over rounds of (CLI-triggered figure - that round's median bare start-up "
                              "(--version) of the same CLI, timed under the same polls as the measurement); "
                              "see startup_subtracted and each row's startup_ref_s",
            "variants": {"cli": "l2mesh-ctl / l2mesh as a user types them", "api": "PATCH on the admin API from a "
                         "resident httpx client in the controller's namespace", "socket": "the control-socket request `l2mesh join` sends"},
        },
        "targets": {"deauthorize_cutoff_s": TARGET_DEAUTH_S, "authorize_to_ping_s": TARGET_AUTH_S},
        "zerotier_reference": {"deauthorize_cutoff_s": ZEROTIER_DEAUTH_S, "join_to_ping_s": ZEROTIER_JOIN_PING_S},
    }
    nsbench.write_results(path, "control", stamp, head, machine,
                          {"idle_busy_pct_before_rounds": idle_busy, "rounds": rows, "summary": summary})


# ---------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="control.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=5, metavar="N", help="rounds of every measurement (default 5)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy daemon, controller and probe logs to DIR before cleanup")
    parser.add_argument("--settle", type=non_negative_float, default=DEFAULT_SETTLE_S, metavar="S",
                        help=f"before each round wait up to S seconds for the machine to be quiet (under {QUIET_PCT} %% "
                             f"of all CPUs busy); measures anyway after that (default {DEFAULT_SETTLE_S:g})")
    parser.add_argument("--max-seconds", type=positive_float, default=DEFAULT_MAX_SECONDS, metavar="S",
                        help=f"start no new round after S seconds (default {DEFAULT_MAX_SECONDS:g}); every step has its own timeout too")
    return parser.parse_args(argv)


def cleanup(ctx: Context, keep_logs: Path | None) -> None:
    def stop_pollers() -> None:
        STOP.set()
        Watcher.join_all(10.0)  # their pings and `ip` calls end before their namespaces go

    nsbench.cleanup(ctx.lab, keep_logs, "logs", first=stop_pollers,
                    ignore=shutil.ignore_patterns("*.sock"))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nsbench.require(("ping",), "iproute2 iputils-ping", tun=True)
    for exe in (L2MESH, L2MESH_CTL):
        if not os.access(exe, os.X_OK):
            fail(f"{exe} not found (make test installs l2mesh into .venv)", 2)
    if not os.path.exists("/dev/net/tun"):
        fail("/dev/net/tun is missing", 2)

    machine = machine_info()
    stamp, lab = new_run()
    ctx = Context(lab)
    rows: list[dict[str, Any]] = []
    startup: dict[str, list[float]] = {}
    idle_busy: list[float] = []
    poll_cost: dict[str, float] | None = None
    started = time.monotonic()

    def body() -> None:
        nonlocal poll_cost
        log(f"namespaces {ctx.lab.tag}-*; load average {machine['loadavg']}, cpus {machine['nproc']}")
        setup(ctx)
        poll_cost = poll_cost_ms(ctx)
        log(f"one control-socket poll: {poll_cost['median_ms']} ms median")
        run_rounds(ctx, args, started, rows, startup, idle_busy)

    nsbench.guarded_run(body, lambda: cleanup(ctx, args.keep_logs))

    summary = summarize(rows, startup)
    done_rounds = max((r["round"] for r in rows), default=0)
    print_tables(summary, done_rounds)
    out = RESULTS_DIR / f"control-{stamp}.json"
    write_results(out, stamp, args, machine, poll_cost, idle_busy, rows, summary)
    print(f"written {display_path(out)} ({time.monotonic() - started:.0f} s)")
    unmeasured = [f"{s} ({v})" for s, variants, metrics in SCENARIOS for v in variants
                  if summary[s][v][metrics[-1][0]]["n"] == 0]
    if unmeasured:
        fail(f"never measured: {', '.join(unmeasured)}", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
