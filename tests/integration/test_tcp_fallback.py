"""Issue 11: a member whose router lets no UDP out reaches its root over TCP and the overlay works through it."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.integration.topology import L2MESH_CTL, Host, Topology, wait_until

ROOT_PORT = 9993
CONTROLLER_PORT = 9994


def _ip_on(host: Host, network_id: str) -> str | None:
    for network in json.loads(host.l2mesh("networks", "--json").stdout):
        if network["id"] == network_id and network["ips"] and network["status"] == "OK":
            return str(network["ips"][0])
    return None


def _roots(host: Host) -> list[dict[str, Any]]:
    return list(json.loads(host.l2mesh("roots", "--json").stdout))


def test_a_member_with_no_udp_out_joins_by_network_id_and_carries_traffic_over_tcp(topology: Topology) -> None:
    lab = topology.lab
    root = topology.add_host("root")
    root_state = topology.work_dir / "root-state"
    root_id = json.loads(root.run(L2MESH_CTL, "root", "--show-id", "--json", "--state-dir", str(root_state)).stdout)["id"]
    root_process = root.popen(
        L2MESH_CTL, "root", "--state-dir", str(root_state), "--listen", f"0.0.0.0:{ROOT_PORT}",
        "--tcp-listen", f"0.0.0.0:{ROOT_PORT}", log_name="root",
    )
    root_spec = f"{root_id}@{root.underlay_ip}:{ROOT_PORT}"

    controller_host = topology.add_host("ctl")
    controller_state = topology.work_dir / "ctl-state"
    controller = controller_host.popen(
        L2MESH_CTL, "serve", "--state-dir", str(controller_state), "--listen", f"0.0.0.0:{CONTROLLER_PORT}",
        "--root", root_spec, log_name="controller",
    )
    wait_until(lambda: (controller_state / "api.json").exists() or controller.poll() is not None, 15, what="controller API")
    assert controller.poll() is None, topology.log_of("controller")

    def ctl(*argv: str) -> str:
        return controller_host.run(L2MESH_CTL, *argv, "--state-dir", str(controller_state)).stdout.strip()

    network_id = ctl("network", "create", "tcp", "--pool", "10.147.91.0/24")
    open_member, _ = topology.add_nat_host("open")
    closed_member, closed_router = topology.add_nat_host("closed")
    # The closed member's home router forwards no UDP at all, from the first packet on.
    lab.nft(closed_router.namespace, (
        "table inet l2mt_no_udp {\n"
        "    chain forward {\n"
        "        type filter hook forward priority filter - 10; policy accept;\n"
        "        meta l4proto udp counter drop\n"
        "    }\n"
        "}\n"
    ), "no-udp")
    for member in (open_member, closed_member):
        ctl("member", "authorize", network_id, member.node_id)
        member.start_daemon("--root", root_spec)
        member.l2mesh("join", network_id)  # no --controller: found through the root

    ip_open = wait_until(lambda: _ip_on(open_member, network_id), 30, what="the UDP member configured")
    ip_closed = wait_until(lambda: _ip_on(closed_member, network_id), 45, what="the TCP-only member configured")
    assert wait_until(lambda: any(r["tcp"] and r["status"] == "up" for r in _roots(closed_member)), 30, what="root over TCP")
    assert not any(r["tcp"] for r in _roots(open_member))

    assert wait_until(lambda: closed_member.ping(ip_open, count=1, timeout_s=2), 30, what="ping over the TCP fallback")
    assert open_member.ping(ip_closed, count=3, timeout_s=3)
    peers = {p["id"]: p for p in json.loads(closed_member.l2mesh("peers", "--json").stdout)}
    assert peers[open_member.node_id]["path"] == "relay" and peers[open_member.node_id]["relay"] == root_id, peers

    server = open_member.popen("iperf3", "-s", "-1", "--forceflush", "-B", ip_open, log_name="iperf3-server")
    try:
        wait_until(lambda: "Server listening" in topology.log_of("iperf3-server"), 10, what="iperf3 server")
        result = closed_member.run("iperf3", "-c", ip_open, "-t", "3", "-J", timeout_s=30)
        received = json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"]
        assert received > 1_000_000, result.stdout[-2000:]
    finally:
        topology.stop_process(server, signal.SIGTERM)

    # UDP comes back: the member leaves TCP within a retry interval or two.
    lab.nft(closed_router.namespace, "delete table inet l2mt_no_udp\n", "udp-back")
    assert wait_until(lambda: not any(r["tcp"] for r in _roots(closed_member)), 40, what="back on UDP")
    assert wait_until(lambda: closed_member.ping(ip_open, count=1, timeout_s=2), 20, what="ping after UDP is back")
    topology.stop_process(root_process, signal.SIGTERM)
