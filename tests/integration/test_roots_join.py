"""Issue 11 end to end: standalone roots on the underlay, a controller and members behind NATs that know only the roots.

Members join by network id alone (the controller is found through the
roots by the controller id inside the network id), and members that cannot
reach each other directly relay through the nearest live root, moving to
the next one when it dies.
"""

from __future__ import annotations

import json
import random
import re
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2mesh.lab import Proc
from tests.integration.topology import L2MESH_CTL, Controller, Host, Topology, wait_until

ROOT_PORT = 9993
JOIN_TIMEOUT_S = 30.0


@dataclass
class Root:
    name: str
    namespace: str
    ip: str
    id: str
    process: Proc
    delayed: bool = False

    @property
    def spec(self) -> str:
        return f"{self.id}@{self.ip}:{ROOT_PORT}"


def start_root(topology: Topology, name: str, delay_ms: int | None = None) -> Root:
    """A standalone root on its own /24 behind the lab router (public, like any underlay host).

    delay_ms: netem delay on the root's only link, inside its own namespace;
    the root is then `delayed` (False when this kernel has no netem: see Slowdown).
    """
    lab = topology.lab
    where = lab.add_host(name)
    delayed = False
    if delay_ms is not None:
        result = lab.run_in(where.namespace, ["tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{delay_ms}ms"],
                            check=False)
        delayed = result.returncode == 0
    state_dir = topology.work_dir / f"{name}-state"
    process = lab.start(where.namespace, [
        L2MESH_CTL, "root", "--state-dir", str(state_dir), "--listen", f"0.0.0.0:{ROOT_PORT}",
        "--tcp-listen", f"0.0.0.0:{ROOT_PORT}",
    ], name)
    root_file = state_dir / "root.json"
    wait_until(lambda: root_file.exists() or process.poll() is not None, 15, what=f"{name} root.json")
    assert process.poll() is None, topology.log_of(name)
    shown = json.loads(lab.run_in(where.namespace, [L2MESH_CTL, "root", "--show-id", "--json", "--state-dir", str(state_dir)]).stdout)
    assert json.loads(root_file.read_text())["id"] == shown["id"]
    return Root(name, where.namespace, where.ip, shown["id"], process, delayed)


class Slowdown:
    """Where the kernel has no netem: make a root answer late by freezing it (SIGSTOP) most of every period.

    A probe that arrives while it is frozen waits for the SIGCONT, so its
    smoothed latency stays tens of ms above an unfrozen root's. The running
    windows are random: the nodes probe on a steady 1 s beat, and a fixed
    period would lock in phase with it (every probe landing in a running
    window). Only our own root process (by its PID) is signalled; it is
    always left running.
    """

    def __init__(self, process: Proc, frozen_s: float = 0.06, running_s: tuple[float, float] = (0.005, 0.03)) -> None:
        self.process, self.frozen_s, self.running_s = process, frozen_s, running_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set() and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)
            self.done.wait(self.frozen_s)
            self.process.send_signal(signal.SIGCONT)
            self.done.wait(random.uniform(*self.running_s))

    def __enter__(self) -> "Slowdown":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)


def start_controller(host: Host, state_dir: Path, roots: list[Root]) -> Controller:
    """`l2mesh-ctl serve --root ...` on `host` (behind its NAT); the admin CLI runs in the same namespace."""
    controller = Controller(host, state_dir)
    argv = [L2MESH_CTL, "serve", "--state-dir", str(state_dir), "--listen", f"0.0.0.0:{controller.port}"]
    for root in roots:
        argv += ["--root", root.spec]
    controller.process = host.popen(*argv, log_name="controller")
    process = controller.process
    wait_until(lambda: (state_dir / "api.json").exists() or process.poll() is not None, 15, what="controller API")
    assert process.poll() is None, f"controller exited: {host.topology.log_of('controller')}"
    return controller


def root_args(roots: list[Root]) -> list[str]:
    return [arg for root in roots for arg in ("--root", root.spec)]


def roots_of(host: Host) -> list[dict[str, Any]]:
    return json.loads(host.l2mesh("roots", "--json").stdout)


def root_status(host: Host, root: Root) -> str | None:
    for entry in roots_of(host):
        if entry["id"] == root.id:
            return entry["status"]
    return None


def peer_view(host: Host, peer_id: str) -> dict[str, Any] | None:
    for entry in json.loads(host.l2mesh("peers", "--json").stdout):
        if entry["id"] == peer_id:
            return entry
    return None


def network_of(host: Host, network_id: str) -> dict[str, Any] | None:
    for network in json.loads(host.l2mesh("networks", "--json").stdout):
        if network["id"] == network_id:
            return network
    return None


def ip_on(host: Host, network_id: str) -> str | None:
    network = network_of(host, network_id)
    if network is not None and network["status"] == "OK" and network["ips"]:
        return str(network["ips"][0])
    return None


def members_seen(controller: Controller, network_id: str) -> set[str]:
    return {m["id"] for m in controller.ctl_json("member", "list", network_id)}


def join_and_authorize(controller: Controller, network_id: str, hosts: list[Host]) -> dict[str, str]:
    """Each host joins by network id alone; once its request reached the controller (through the roots), the admin authorizes it."""
    for host in hosts:
        joined = json.loads(host.l2mesh("join", network_id, "--json").stdout)
        assert joined["id"] == network_id, joined
    for host in hosts:
        wait_until(lambda host=host: host.node_id in members_seen(controller, network_id), JOIN_TIMEOUT_S, interval_s=0.5,
                   what=f"{host.name}'s join request at the controller")
        controller.ctl("member", "authorize", network_id, host.node_id)
    return {
        host.name: wait_until(lambda host=host: ip_on(host, network_id), JOIN_TIMEOUT_S, interval_s=0.5, what=f"{host.name} configured")
        for host in hosts
    }


def diagnostics(topology: Topology, hosts: list[Host], controller: Controller | None = None) -> str:
    """What to read when something fails: each member's status (counters, drops), roots and peers; the controller's status."""
    parts = []
    for host in hosts:
        for command in (("status", "--json"), ("roots", "--json"), ("peers", "--json"), ("networks", "--json")):
            result = host.l2mesh(*command, check=False)
            parts.append(f"--- {host.name}: l2mesh {' '.join(command)} ---\n{result.stdout}{result.stderr}")
    if controller is not None:
        result = controller.ctl("status", "--json", check=False)
        parts.append(f"--- controller: l2mesh-ctl status --json ---\n{result.stdout}{result.stderr}")
    return "\n".join(parts)


def full_log(topology: Topology, log_name: str) -> str:
    return (topology.logs / f"{log_name}.log").read_text(errors="replace")


def longest_gap_s(output: str) -> float:
    """The longest time between two consecutive echo replies, from `ping -D` timestamps."""
    stamps = [float(s) for s in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", output, re.M)]
    assert len(stamps) >= 2, output[-2000:]
    return max(after - before for before, after in zip(stamps, stamps[1:]))


def test_members_behind_nats_join_by_network_id_alone_through_a_root(topology: Topology) -> None:
    root = start_root(topology, "root")
    ctl_host, _ = topology.add_nat_host("ctl")
    cone, _ = topology.add_nat_host("cone")
    sym, _ = topology.add_nat_host("sym", symmetric=True)
    controller = start_controller(ctl_host, topology.work_dir / "ctl-state", [root])
    try:
        network_id = controller.ctl("network", "create", "roots", "--pool", "10.147.91.0/24").stdout.strip()
        assert network_id.startswith(controller.ctl_json("status")["id"]), network_id
        for host in (cone, sym):
            host.start_daemon(*root_args([root]))
        for host in (cone, sym):
            wait_until(lambda host=host: root_status(host, root) == "up", JOIN_TIMEOUT_S, interval_s=0.5, what=f"{host.name}: root up")
        ips = join_and_authorize(controller, network_id, [cone, sym])
        ip_cone, ip_sym = (ips[name].split("/")[0] for name in ("cone", "sym"))
        assert ip_cone.startswith("10.147.91.") and ip_sym.startswith("10.147.91.")

        wait_until(lambda: cone.ping(ip_sym, timeout_s=1), JOIN_TIMEOUT_S, interval_s=0.5, what="cone pings sym over the overlay")
        assert sym.ping(ip_cone, count=3, timeout_s=1)
        assert cone.ping(ip_sym, count=3, timeout_s=1)

        for host in (cone, sym):
            assert root_status(host, root) == "up", roots_of(host)
            network = network_of(host, network_id)
            assert network is not None and network["status"] == "OK", network
            # The controller is known as such, and so is the root.
            assert (peer_view(host, root.id) or {}).get("role") == "root", peer_view(host, root.id)
        other = peer_view(cone, sym.node_id)
        assert other is not None and other["role"] == "member", other
        print(f"cone -> sym path {other['path']} relay {other['relay']}; roots {roots_of(cone)}")
    except BaseException:
        print(diagnostics(topology, [cone, sym], controller))
        raise
    finally:
        controller.stop()


def test_members_relay_through_the_nearest_root_and_move_to_the_other_when_it_dies(topology: Topology) -> None:
    root_a = start_root(topology, "roota")
    root_b = start_root(topology, "rootb", delay_ms=20)
    ctl_host, _ = topology.add_nat_host("ctl")
    a, _ = topology.add_nat_host("a", symmetric=True)
    b, _ = topology.add_nat_host("b", symmetric=True)
    controller = start_controller(ctl_host, topology.work_dir / "ctl-state", [root_a, root_b])
    slowdown = ExitStack()
    if not root_b.delayed:
        slowdown.enter_context(Slowdown(root_b.process))
    try:
        network_id = controller.ctl("network", "create", "roots2", "--pool", "10.147.92.0/24").stdout.strip()
        for host in (a, b):
            host.start_daemon(*root_args([root_a, root_b]))
        for host in (a, b):
            for root in (root_a, root_b):
                wait_until(lambda host=host, root=root: root_status(host, root) == "up", JOIN_TIMEOUT_S, interval_s=0.5,
                           what=f"{host.name}: {root.name} up")
        ips = join_and_authorize(controller, network_id, [a, b])
        ip_a, ip_b = (ips[name].split("/")[0] for name in ("a", "b"))
        wait_until(lambda: a.ping(ip_b, timeout_s=1), JOIN_TIMEOUT_S, interval_s=0.5, what="a pings b")
        assert b.ping(ip_a, count=2, timeout_s=1)

        # A is nearer (B answers 20 ms late): both relay through A.
        def relays() -> tuple[Any, Any]:
            to_b, to_a = peer_view(a, b.node_id) or {}, peer_view(b, a.node_id) or {}
            return (to_b.get("path"), to_b.get("relay")), (to_a.get("path"), to_a.get("relay"))

        wait_until(lambda: relays() == (("relay", root_a.id), ("relay", root_a.id)), 15, interval_s=0.5,
                   what=f"both relay through root A ({root_a.id})")
        latencies = {r["id"]: r["latency_ms"] for r in roots_of(a)}
        print(f"root latencies seen by a: {latencies} (B slowed by {'netem' if root_b.delayed else 'SIGSTOP duty cycle'})")
        assert latencies[root_a.id] < latencies[root_b.id], latencies

        pinger = a.popen("ping", "-n", "-D", "-i", "0.2", "-W", "1", "-w", "25", ip_b, log_name="pinger")
        try:
            time.sleep(3)
            killed_at = time.time()
            topology.stop_process(root_a.process, signal.SIGKILL)
            wait_until(lambda: relays() == (("relay", root_b.id), ("relay", root_b.id)), 15, interval_s=0.5,
                       what=f"both relay through root B ({root_b.id})")
            moved_s = time.time() - killed_at
            time.sleep(5)
        finally:
            topology.stop_process(pinger, signal.SIGINT)
        output = full_log(topology, "pinger")
        gap_s = longest_gap_s(output)
        replies_after = [float(s) for s in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", output, re.M) if float(s) > killed_at + 5]
        print(f"root A killed: relay B after {moved_s:.2f} s, longest gap between replies {gap_s:.2f} s")
        assert replies_after, "no replies after the failover"
        assert gap_s <= 5.0
        assert root_status(a, root_a) != "up" and root_status(a, root_b) == "up", roots_of(a)
        assert a.ping(ip_b, count=3, timeout_s=1) and b.ping(ip_a, count=3, timeout_s=1)
    except BaseException:
        print(diagnostics(topology, [a, b], controller))
        raise
    finally:
        slowdown.close()
        controller.stop()
