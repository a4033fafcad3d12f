"""Issue 11 part 5: port mapping. A member whose home router runs miniupnpd (NAT-PMP, PCP) maps its UDP port and
advertises the mapping, so two members behind symmetric NATs get a direct path instead of the relay."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from l2mesh.lab import NatRouter
from l2mesh.lab.nat import table_prefix
from l2mesh.lab.portmap import miniupnpd_problem, start_miniupnpd, start_stun_responder
from tests.integration.test_nat import ip_on, path_to, peer_view
from tests.integration.topology import NODE_PORT, Host, Topology, add_controller, wait_until

pytestmark = pytest.mark.skipif(miniupnpd_problem() is not None, reason=str(miniupnpd_problem()))


def mapped_endpoint(host: Host) -> str | None:
    mapping = host.status()["port_mapping"]
    return mapping["external"] if mapping else None


def miniupnpd_redirects(topology: Topology, router: NatRouter) -> str:
    """miniupnpd's DNAT rules on the router, as nft lists them."""
    table = f"{table_prefix(topology.lab)}_filter"
    return topology.run_in(router.namespace, ["nft", "list", "chain", "inet", table, "prerouting_miniupnpd"]).stdout


def daemon_log_gap_s(topology: Topology, host: Host, first: str, then: str) -> float:
    """Seconds between the daemon log's first line containing `first` and the next containing `then`."""
    stamps: list[datetime] = []
    for line in (topology.logs / f"{host.name}-daemon.log").read_text(errors="replace").splitlines():
        if (first if not stamps else then) in line:
            stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
            if len(stamps) == 2:
                return (stamps[1] - stamps[0]).total_seconds()
    raise AssertionError(f"no {first!r} then {then!r} in {host.name}'s daemon log")


def symmetric_pair_with_miniupnpd_at_a(topology: Topology) -> tuple[Host, NatRouter, Host]:
    a, router_a = topology.add_nat_host("a", symmetric=True, port_mapping=True)
    b, _ = topology.add_nat_host("b", symmetric=True)
    start_stun_responder(topology.lab)
    start_miniupnpd(topology.lab, router_a)
    return a, router_a, b


def join_network(topology: Topology, a: Host, b: Host) -> tuple[str, str]:
    """Both (daemons running) in one network of a new controller; their overlay addresses."""
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "portmap", "--pool", "10.147.91.0/24").stdout.strip()
    for host in (a, b):
        controller.ctl("member", "authorize", network_id, host.node_id)
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
    ip_a = wait_until(lambda: ip_on(a, network_id), 15, what="a configured")
    ip_b = wait_until(lambda: ip_on(b, network_id), 15, what="b configured")
    return ip_a, ip_b


def test_members_behind_symmetric_nats_get_a_direct_path_through_a_nat_pmp_mapping(topology: Topology) -> None:
    direct_through_the_mapping(topology, "nat-pmp")


def test_pcp_maps_the_port_as_well(topology: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L2MESH_PORT_MAPPING", "pcp")  # inherited by the daemons the test starts
    direct_through_the_mapping(topology, "pcp")


def direct_through_the_mapping(topology: Topology, protocol: str) -> None:
    a, router_a, b = symmetric_pair_with_miniupnpd_at_a(topology)
    started = time.monotonic()
    a.start_daemon()
    expected = f"{router_a.public_ip}:{NODE_PORT}"
    wait_until(lambda: mapped_endpoint(a) == expected, 10, interval_s=0.05, what="a's NAT-PMP mapping")
    mapped_s = time.monotonic() - started
    status = a.status()["port_mapping"]
    assert status["protocol"] == protocol and status["state"] == "mapped" and status["lifetime_s"] > 0
    assert f"dnat ip to {a.underlay_ip}:{NODE_PORT}" in miniupnpd_redirects(topology, router_a)
    assert f"{expected} ({protocol})" in a.l2mesh("status").stdout  # the human table says it too

    b.start_daemon()
    ip_a, ip_b = join_network(topology, a, b)
    # The first replies may take the relay's few seconds (paths.RELAY_AFTER_S).
    wait_until(lambda: b.ping(ip_a, timeout_s=1), 15, what="b reaches a over the overlay")
    wait_until(lambda: path_to(a, b) == "direct" and path_to(b, a) == "direct", 20, interval_s=0.2, what="direct path a <-> b")
    b_view = peer_view(b, a)
    assert b_view is not None and b_view["endpoint"] == expected  # b reaches a through the router's mapping
    assert a.ping(ip_b, count=3, interval_s=0.2, timeout_s=1)
    print(f"{protocol}: mapping {expected} seen by the CLI {mapped_s:.2f} s after a's daemon started "
          f"({daemon_log_gap_s(topology, a, 'listening on UDP', 'port mapping:'):.3f} s by the daemon's log); "
          "symmetric/symmetric path direct")

    # On exit the daemon deletes its mapping (lifetime 0) rather than leave it to expire.
    assert a.stop_daemon() == 0
    wait_until(lambda: "dnat" not in miniupnpd_redirects(topology, router_a), 5, what="mapping deleted on exit")


def test_without_port_mapping_the_same_members_relay(topology: Topology) -> None:
    a, router_a, b = symmetric_pair_with_miniupnpd_at_a(topology)
    a.start_daemon("--no-port-mapping")
    b.start_daemon()
    assert a.status()["port_mapping"] is None
    assert "off" in a.l2mesh("status").stdout.splitlines()[-1]
    ip_a, ip_b = join_network(topology, a, b)
    # The first replies may take the relay's few seconds (paths.RELAY_AFTER_S).
    wait_until(lambda: b.ping(ip_a, timeout_s=1), 15, what="b reaches a over the overlay")
    # Long enough for a direct path to take over, had there been one (paths.DIRECT_RETRY_S is 5 s).
    assert a.ping(ip_b, count=30, interval_s=0.2, timeout_s=1)
    assert path_to(a, b) == "relay" and path_to(b, a) == "relay"
    assert "dnat" not in miniupnpd_redirects(topology, router_a)
