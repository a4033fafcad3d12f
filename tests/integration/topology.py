"""Real test topologies on the namespace lab (l2mesh.lab): l2mesh daemons and controllers as processes in namespaces.

Layout (DESIGN.md, "Testing on one machine"): a router namespace plays the
Internet; every member gets its own namespace and its own /24 of
198.18.0.0/15 behind the router (or 198.19.N.0/24 behind a NAT home router),
so members share no L2 segment underneath and only the overlay can carry
Ethernet between them. Every name starts with `l2mt-<run id>-`;
`Topology.close()` stops every process it started (by PID) and deletes every
namespace it made, whatever happened in the test, and fails the test when it
could not. This file holds only what is l2mesh's: members with their CLI,
the controller, static network configs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from l2mesh import lab
from l2mesh.lab import COMMAND_TIMEOUT_S, Lab, NatRouter, NetnsHost, Proc

L2MESH = str(Path(sys.executable).parent / "l2mesh")
L2MESH_CTL = str(Path(sys.executable).parent / "l2mesh-ctl")
NODE_PORT = 9993
OVERLAY_PREFIX = "10.147"
TEST_PREFIX = "l2mt-"

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.1, what: str = "condition") -> T:
    """Poll predicate until it returns something truthy; AssertionError naming `what` after timeout_s."""
    return lab.wait_until(predicate, timeout_s, interval_s=interval_s, what=what, error=AssertionError)


@dataclass
class Host:
    topology: "Topology"
    name: str
    namespace: str
    underlay_ip: str
    state_dir: Path
    identity: dict[str, str] = field(default_factory=dict)
    daemon: Proc | None = None
    port: int = NODE_PORT

    @property
    def node_id(self) -> str:
        return self.identity["id"]

    def run(self, *argv: str, timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.topology.run_in(self.namespace, list(argv), timeout_s=timeout_s, check=check)

    def popen(self, *argv: str, log_name: str | None = None) -> Proc:
        return self.topology.popen_in(self.namespace, list(argv), log_name=log_name or f"{self.name}-{Path(argv[0]).name}")

    def l2mesh(self, *argv: str, check: bool = True, timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return self.run(L2MESH, *argv, "--state-dir", str(self.state_dir), check=check, timeout_s=timeout_s)

    def status(self) -> dict[str, Any]:
        return json.loads(self.l2mesh("status", "--json").stdout)

    def ping(self, target: str, count: int = 1, timeout_s: float = 2.0, interval_s: float = 0.2) -> bool:
        result = self.run(
            "ping", "-n", "-q", "-c", str(count), "-i", str(interval_s), "-W", str(timeout_s), target,
            check=False, timeout_s=count * (interval_s + timeout_s) + 5,
        )
        return result.returncode == 0

    def start_daemon(self, *extra: str) -> Proc:
        assert self.daemon is None or self.daemon.poll() is not None, "daemon already running"
        self.daemon = self.popen(
            L2MESH, "daemon", "--state-dir", str(self.state_dir), "--port", str(self.port), *extra,
            log_name=f"{self.name}-daemon",
        )
        daemon = self.daemon
        wait_until(lambda: (self.state_dir / "control.sock").exists() or daemon.poll() is not None, 15, what=f"{self.name} daemon control socket")
        if daemon.poll() is not None:
            raise AssertionError(f"{self.name} daemon exited: {self.topology.log_of(f'{self.name}-daemon')}")
        return self.daemon

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        if self.daemon is None:
            return None
        code = self.topology.stop_process(self.daemon, sig, timeout_s)
        self.daemon = None
        return code

    def tap_name(self, network_id: str) -> str:
        return f"l2m{network_id[:8]}"


class Topology:
    """One test's lab (l2mesh.lab.Lab, prefix l2mt-) with its router, and the l2mesh members in it."""

    def __init__(self, work_dir: Path) -> None:
        self.lab = Lab(TEST_PREFIX, work_dir)
        self.work_dir = work_dir
        self.logs = self.lab.logs
        self.hosts: dict[str, Host] = {}
        try:
            self.router = self.lab.add_router()
        except BaseException:
            self.lab.close()
            raise

    # -- processes ------------------------------------------------------------------
    def run_in(self, namespace: str, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run_in(namespace, argv, timeout_s, check)

    def popen_in(self, namespace: str, argv: Sequence[str], log_name: str) -> Proc:
        return self.lab.start(namespace, argv, log_name)

    def stop_process(self, process: Proc, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        return self.lab.stop(process, sig, timeout_s)

    def log_of(self, log_name: str) -> str:
        return self.lab.log_of(log_name)

    # -- namespaces and links ---------------------------------------------------------------
    def add_namespace(self, role: str) -> str:
        return self.lab.add_namespace(role)

    def ip(self, *argv: str) -> None:
        self.lab.ip(*argv)

    def add_host(self, name: str) -> Host:
        """A member namespace on its own /24 behind the router: 198.18.N.2, gateway 198.18.N.1."""
        return self._member(name, self.lab.add_host(name))

    def add_nat_host(self, name: str, symmetric: bool = False, port_mapping: bool = False) -> tuple[Host, NatRouter]:
        """A member behind its own home router (l2mesh.lab.nat); returns the member and its router."""
        where, router = lab.add_nat_host(self.lab, name, symmetric, port_mapping=port_mapping)
        return self._member(name, where), router

    def _member(self, name: str, where: NetnsHost) -> Host:
        host = Host(self, name, where.namespace, where.ip, self.work_dir / name)
        host.identity = json.loads(host.l2mesh("id", "--json").stdout)
        self.hosts[name] = host
        return host

    # -- static network configs (the pre-controller test seam) -------------------------------------
    def write_static_netconfs(
        self,
        hosts: Sequence[Host],
        network_number: int = 1,
        mtu: int = 2800,
        broadcast: bool = True,
        bridges: Sequence[Host] = (),
        ips: dict[str, list[str]] | None = None,
    ) -> tuple[str, dict[str, Path]]:
        """One NetworkConfig JSON per host (issued to it); returns (network id, host name -> file)."""
        network_id = f"{hosts[0].node_id}{network_number:06x}"
        members = []
        for index, host in enumerate(hosts, start=1):
            members.append(
                {
                    "id": host.node_id,
                    "x25519": host.identity["x25519"],
                    "ed25519": host.identity["ed25519"],
                    "ips": (ips or {}).get(host.name, [f"{OVERLAY_PREFIX}.{network_number}.{index}/24"]),
                    "bridge": host in bridges,
                    "endpoints": [f"{host.underlay_ip}:{host.port}"],
                    "name": host.name,
                }
            )
        files = {}
        for host in hosts:
            doc = {"id": network_id, "revision": 1, "issued_to": host.node_id, "name": "test", "mtu": mtu,
                   "broadcast": broadcast, "members": members}
            path = self.work_dir / f"{host.name}-{network_id}.json"
            path.write_text(json.dumps(doc))
            files[host.name] = path
        return network_id, files

    # -- teardown ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Everything the test made is gone, or a TeardownError fails the test naming what is left."""
        self.lab.close()


def environment_problem() -> str | None:
    """Why integration tests cannot run here, or None."""
    problem = lab.environment_problem(("ping",), tun=True)
    return f"integration tests: {problem}" if problem else None


@dataclass
class Controller:
    """`l2mesh-ctl serve` in its own namespace (a host on the underlay); admin CLI runs inside it."""

    host: Host
    state_dir: Path
    port: int = 9994
    process: Proc | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host.underlay_ip}:{self.port}"

    def start(self, *extra: str) -> None:
        self.process = self.host.popen(
            L2MESH_CTL, "serve", "--state-dir", str(self.state_dir), "--listen", f"0.0.0.0:{self.port}", *extra,
            log_name="controller",
        )
        process = self.process
        wait_until(lambda: (self.state_dir / "api.json").exists() or process.poll() is not None, 15, what="controller API")
        if process.poll() is not None:
            raise AssertionError(f"controller exited: {self.host.topology.log_of('controller')}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.host.topology.stop_process(self.process, sig)
            self.process = None
            try:
                (self.state_dir / "api.json").unlink()
            except OSError:
                pass

    def ctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.host.run(L2MESH_CTL, *argv, "--state-dir", str(self.state_dir), check=check)

    def ctl_json(self, *argv: str) -> Any:
        return json.loads(self.ctl(*argv, "--json").stdout)


def add_controller(topology: Topology, name: str = "ctl") -> Controller:
    host = topology.add_host(name)
    controller = Controller(host, topology.work_dir / f"{name}-state")
    controller.start()
    return controller


def networks_of(host: Host) -> list[dict[str, Any]]:
    return json.loads(host.l2mesh("networks", "--json").stdout)


def network_status(host: Host, network_id: str) -> str | None:
    for network in networks_of(host):
        if network["id"] == network_id:
            return network["status"]
    return None


def block_udp_between(topology: Topology, a: NatRouter, b: NatRouter) -> None:
    """Cut direct UDP between two routers' WAN addresses in "the Internet" (their controller traffic still passes)."""
    lab.block_udp(topology.lab, topology.router, a.public_ip, b.public_ip)


def unblock(topology: Topology) -> None:
    lab.unblock_udp(topology.lab, topology.router)
