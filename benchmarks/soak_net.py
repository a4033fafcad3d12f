"""The soak's network: a standalone root, a controller and N members in namespaces of one lab run, and what churn does to them.

Built from the integration tests' topology (tests/integration/topology.py:
Topology, Host, Controller; the root from test_roots_join.start_root), so
the soak drives l2mesh exactly as the tests do: `l2mesh daemon` and
`l2mesh-ctl serve` / `root` processes in l2mt-<run id>-* namespaces, every
one stopped by the PID the lab started. Members get fixed overlay addresses
(10.147.50.N/24), so a member that left, was deauthorized or restarted comes
back with the same one and every pair can be checked at the end.

Every operation here is one step that either works or raises SoakStepError
with one line saying why; the churn counts those and goes on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2mesh.edge.node.control_client import ControlError, call_daemon
from l2mesh.lab import LabError, Proc
from l2mesh.lab.nat import block_udp, unblock_udp
from tests.integration.test_roots_join import Root, start_root
from tests.integration.topology import Controller, Host, Topology, add_controller

OVERLAY_NET = "10.147.50"
POOL = f"{OVERLAY_NET}.0/24"
HELPERS = Path(__file__).resolve().parent / "helpers"
MULTICAST_HELPER = HELPERS / "soak_multicast.py"
READY_TIMEOUT_S = 60.0


class SoakStepError(Exception):
    """One churn step or check that did not work, in one line."""


@dataclass
class Member:
    host: Host
    number: int  # from 1; its overlay address is 10.147.50.<number>
    long_lived: bool  # never left, deauthorized or restarted: the series a leak test reads

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def overlay_ip(self) -> str:
        return f"{OVERLAY_NET}.{self.number}"


def _step(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """call(*args, **kwargs); any failure of the lab, the CLI or a daemon as a SoakStepError naming what."""
    try:
        return call(*args, **kwargs)
    except (LabError, ControlError, AssertionError, subprocess.SubprocessError, OSError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        raise SoakStepError(f"{what}: {text[-1] if text else type(exc).__name__}") from None


class SoakNetwork:
    """The root, the controller, the members and the network they share; built by build(), torn down with the topology."""

    def __init__(self, topology: Topology, members: int, long_lived: int) -> None:
        self.topology = topology
        self.member_count = members
        self.long_lived_count = long_lived
        self.root: Root | None = None
        self.controller: Controller | None = None
        self.network_id = ""
        self.members: list[Member] = []

    # -- building ------------------------------------------------------------------------------------------
    def build(self) -> None:
        self.root = start_root(self.topology, "root")
        self.controller = add_controller(self.topology)
        self.network_id = self.ctl("network", "create", "soak", "--pool", POOL).stdout.strip()
        for number in range(1, self.member_count + 1):
            host = self.topology.add_host(f"m{number}")
            self.members.append(Member(host, number, long_lived=number <= self.long_lived_count))
        for member in self.members:
            self.authorize(member)
            self.start_daemon(member)
            self.join(member)

    @property
    def root_args(self) -> list[str]:
        assert self.root is not None
        return ["--root", self.root.spec]

    def daemons(self) -> dict[str, Proc | None]:
        """Every daemon by its logical name (m1.., controller, root), with the process running it now (None between runs)."""
        assert self.root is not None and self.controller is not None
        running = {m.name: m.host.daemon for m in self.members}
        running["controller"] = self.controller.process
        running["root"] = self.root.process
        return running

    # -- the controller --------------------------------------------------------------------------------------
    def ctl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        assert self.controller is not None
        return _step(f"l2mesh-ctl {' '.join(argv[:2])}", self.controller.ctl, *argv)

    def controller_status(self) -> dict[str, Any]:
        return _step("l2mesh-ctl status", json.loads, self.ctl("status", "--json").stdout)

    def authorize(self, member: Member) -> None:
        self.ctl("member", "authorize", self.network_id, member.host.node_id, "--ip", f"{member.overlay_ip}/24")

    def deauthorize(self, member: Member) -> None:
        self.ctl("member", "deauthorize", self.network_id, member.host.node_id)

    def restart_controller(self, sig: int, down_s: float) -> None:
        assert self.controller is not None
        self.controller.stop(sig)  # by its PID, through the lab
        time.sleep(down_s)
        _step("controller start", self.controller.start)

    # -- members ----------------------------------------------------------------------------------------------
    def start_daemon(self, member: Member) -> None:
        _step(f"{member.name} daemon start", member.host.start_daemon, *self.root_args)

    def restart_daemon(self, member: Member, sig: int) -> None:
        _step(f"{member.name} daemon stop", member.host.stop_daemon, sig)
        self.start_daemon(member)

    def daemon_call(self, member: Member, command: str, **arguments: Any) -> Any:
        return _step(f"{member.name} {command}", call_daemon, member.host.state_dir, command, **arguments)

    def join(self, member: Member) -> None:
        assert self.controller is not None
        self.daemon_call(member, "join", network_id=self.network_id, controller=self.controller.endpoint)

    def leave(self, member: Member) -> None:
        self.daemon_call(member, "leave", network_id=self.network_id)

    def sessions(self, member: Member) -> dict[str, int]:
        """Peers the member holds a session with (controller and root included), and every peer it lists."""
        peers = self.daemon_call(member, "peers")
        return {"sessions": sum(1 for p in peers if p.get("last_handshake_s") is not None), "peers": len(peers)}

    def is_ready(self, member: Member) -> bool:
        """The member's network is OK and its overlay address is on its TAP."""
        try:
            networks = self.daemon_call(member, "networks")
        except SoakStepError:
            return False
        return any(n["id"] == self.network_id and n["status"] == "OK" and member.overlay_ip in n["ips"] for n in networks)

    # -- the underlay and the overlay ------------------------------------------------------------------------
    def block_path(self, a: Member, b: Member) -> None:
        """Drop UDP between two members' underlay addresses in the router (both ways) until unblock_paths()."""
        lab = self.topology.lab
        _step(f"block {a.name}-{b.name}", block_udp, lab, lab.require_router(), a.host.underlay_ip, b.host.underlay_ip)

    def unblock_paths(self) -> None:
        lab = self.topology.lab
        _step("unblock", unblock_udp, lab, lab.require_router())

    def ping(self, source: Member, target: Member, count: int = 2) -> bool:
        done = _step(f"ping {source.name}->{target.name}", source.host.run, "ping", "-n", "-q", "-c", str(count),
                     "-i", "0.2", "-W", "1", target.overlay_ip, check=False, timeout_s=count + 5)
        return done.returncode == 0

    def start_in(self, member: Member, argv: list[str], label: str) -> Proc:
        """A background program in the member's namespace, logging to logs/<label>.log; stopped by stop()."""
        return _step(f"{member.name} {argv[0]}", member.host.popen, *argv, log_name=label)

    def ping_pairs(self, pairs: Sequence[tuple[Member, Member]]) -> list[bool]:
        """One ping per pair, a batch at a time with no source twice in a batch; True where the reply came."""
        results: dict[tuple[str, str], bool] = {}
        pending = list(pairs)
        while pending:
            batch: list[tuple[Member, Member]] = []
            rest: list[tuple[Member, Member]] = []
            sources: set[str] = set()
            for pair in pending:
                (rest if pair[0].name in sources else batch).append(pair)
                sources.add(pair[0].name)
            done = self.topology.lab.run_parallel(
                [(a.host.namespace, ["ping", "-n", "-q", "-c", "1", "-W", "2", b.overlay_ip]) for a, b in batch], 15)
            for (a, b), result in zip(batch, done):
                results[(a.name, b.name)] = result.returncode == 0
            pending = rest
        return [results[(a.name, b.name)] for a, b in pairs]

    def start_listener(self, member: Member, group: str) -> Proc:
        return self.start_in(member, [sys.executable, str(MULTICAST_HELPER), "listen", group, member.overlay_ip],
                             f"{member.name}-mcast")

    def send_multicast(self, member: Member, group: str, count: int) -> None:
        _step(f"{member.name} multicast send", member.host.run, sys.executable, str(MULTICAST_HELPER), "send", group,
              member.overlay_ip, str(count), timeout_s=count * 0.05 + 10)

    def stop(self, proc: Proc, sig: int = signal.SIGTERM) -> int | None:
        return self.topology.lab.stop(proc, sig)
