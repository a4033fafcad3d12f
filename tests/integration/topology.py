"""Real test topologies: network namespaces, veth pairs and l2mesh daemons as processes.

Layout (DESIGN.md, "Testing on one machine"): a router namespace plays the
Internet; every member gets its own namespace and its own /24 of
198.18.0.0/15 behind the router, so members share no L2 segment underneath
and only the overlay can carry Ethernet between them. Every name starts with
`l2mt-<run id>-`; `Topology.close()` stops every process it started (by PID)
and deletes every namespace it made, whatever happened in the test.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

L2MESH = str(Path(sys.executable).parent / "l2mesh")
L2MESH_CTL = str(Path(sys.executable).parent / "l2mesh-ctl")
NODE_PORT = 9993
OVERLAY_PREFIX = "10.147"
COMMAND_TIMEOUT_S = 30.0


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1, what: str = "condition") -> Any:
    """Poll predicate until it returns something truthy; AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class Host:
    topology: "Topology"
    name: str
    namespace: str
    underlay_ip: str
    state_dir: Path
    identity: dict[str, str] = field(default_factory=dict)
    daemon: subprocess.Popen[bytes] | None = None
    port: int = NODE_PORT

    @property
    def node_id(self) -> str:
        return self.identity["id"]

    def run(self, *argv: str, timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.topology.run_in(self.namespace, list(argv), timeout_s=timeout_s, check=check)

    def popen(self, *argv: str, log_name: str | None = None) -> subprocess.Popen[bytes]:
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

    def start_daemon(self, *extra: str) -> subprocess.Popen[bytes]:
        assert self.daemon is None or self.daemon.poll() is not None, "daemon already running"
        self.daemon = self.popen(
            L2MESH, "daemon", "--state-dir", str(self.state_dir), "--port", str(self.port), *extra,
            log_name=f"{self.name}-daemon",
        )
        wait_until(lambda: (self.state_dir / "control.sock").exists() or self.daemon.poll() is not None, 15, what=f"{self.name} daemon control socket")
        if self.daemon.poll() is not None:
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
    def __init__(self, work_dir: Path) -> None:
        self.run_id = secrets.token_hex(3)
        self.prefix = f"l2mt-{self.run_id}"
        self.work_dir = work_dir
        self.logs = work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.hosts: dict[str, Host] = {}
        self.router = self.add_namespace("rt")
        self.run_in(self.router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self._next_lan = 1

    # -- processes ------------------------------------------------------------------
    def run_in(self, namespace: str, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["ip", "netns", "exec", namespace, *argv]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} in {namespace} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
        return result

    def popen_in(self, namespace: str, argv: Sequence[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{log_name}.log", "ab")
        # `ip netns exec` execs the command, so this PID is the program's own.
        process = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.processes.append(process)
        return process

    def stop_process(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.returncode

    def log_of(self, log_name: str) -> str:
        path = self.logs / f"{log_name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    # -- namespaces and links ---------------------------------------------------------------
    def add_namespace(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)
        self.namespaces.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)
        return name

    def ip(self, *argv: str) -> None:
        subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)

    def add_host(self, name: str) -> Host:
        """A member namespace on its own /24 behind the router: 198.18.N.2, gateway 198.18.N.1."""
        lan = self._next_lan
        self._next_lan += 1
        namespace = self.add_namespace(name)
        router_port = f"lan{lan}"
        self.ip("link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", router_port, "netns", self.router)
        self.ip("-n", namespace, "addr", "add", f"198.18.{lan}.2/24", "dev", "eth0")
        self.ip("-n", namespace, "link", "set", "eth0", "up")
        self.ip("-n", self.router, "addr", "add", f"198.18.{lan}.1/24", "dev", router_port)
        self.ip("-n", self.router, "link", "set", router_port, "up")
        self.ip("-n", namespace, "route", "add", "198.18.0.0/15", "via", f"198.18.{lan}.1")
        host = Host(self, name, namespace, f"198.18.{lan}.2", self.work_dir / name)
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
        for process in reversed(self.processes):
            try:
                self.stop_process(process, signal.SIGTERM, 5.0)
            except Exception:
                pass
        for namespace in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=COMMAND_TIMEOUT_S)
        self.namespaces.clear()


def environment_problem() -> str | None:
    """Why integration tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces, TAP devices)"
    if not os.path.exists("/dev/net/tun"):
        return "integration tests need /dev/net/tun"
    for tool in ("ip", "ping"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"integration tests need {tool}"
    return None


@dataclass
class Controller:
    """`l2mesh-ctl serve` in its own namespace (a host on the underlay); admin CLI runs inside it."""

    host: Host
    state_dir: Path
    port: int = 9994
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host.underlay_ip}:{self.port}"

    def start(self) -> None:
        self.process = self.host.popen(
            L2MESH_CTL, "serve", "--state-dir", str(self.state_dir), "--listen", f"0.0.0.0:{self.port}",
            log_name="controller",
        )
        wait_until(lambda: (self.state_dir / "api.json").exists() or self.process.poll() is not None, 15, what="controller API")
        if self.process.poll() is not None:
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
