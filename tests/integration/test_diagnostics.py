"""Issue 15 part 4: `l2mesh ping` through the overlay session (direct and relayed) and `l2mesh netcheck` behind
cone and symmetric NATs, with a controller and a root as the two servers that reflect our address."""

from __future__ import annotations

import json

from tests.integration.test_nat import ip_on
from tests.integration.test_roots_join import ROOT_PORT, start_root
from tests.integration.topology import Controller, Host, Topology, add_controller, wait_until


def network_of(topology: Topology, controller: Controller, *members: tuple[Host, str]) -> str:
    """A network with these (member, name) pairs authorized and joined; its id once all are configured."""
    network_id = controller.ctl("network", "create", "diag", "--pool", "10.147.91.0/24").stdout.strip()
    for host, name in members:
        controller.ctl("member", "authorize", network_id, host.node_id, "--name", name)
        host.start_daemon()
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
    for host, _ in members:
        wait_until(lambda: ip_on(host, network_id), 15, what=f"{host.name} configured")
    return network_id


def ping_json(host: Host, target: str, count: int = 3) -> list[dict]:
    # --timeout 10: a first ping that needs the relay waits for the handshake to give up on the direct path
    # (about 3.5 s here), not to be mistaken for a lost one on a busy machine.
    result = host.l2mesh("ping", target, "--count", str(count), "--interval", "0.2", "--timeout", "10", "--json", timeout_s=60)
    return json.loads(result.stdout)


def test_ping_by_name_shows_the_direct_path_at_the_peers_underlay_endpoint_and_an_unknown_name_fails(topology: Topology) -> None:
    a, b = topology.add_host("a"), topology.add_host("b")
    controller = add_controller(topology)
    network_of(topology, controller, (a, "alpha"), (b, "Bee"))
    replies = ping_json(a, "bee", count=4)
    print(f"ping a -> b: {[r['rtt_ms'] for r in replies]} ms (the first includes the handshake)")
    assert [r["seq"] for r in replies] == [1, 2, 3, 4]
    assert all(r["path"] == "direct" and r["endpoint"] == f"{b.underlay_ip}:{b.port}" and r["relay"] is None for r in replies)
    assert all(r["id"] == b.node_id and 0 < r["rtt_ms"] < 1000 for r in replies)
    human = a.l2mesh("ping", b.node_id, "--count", "1").stdout
    assert human.startswith(f"pong from {b.node_id} via {b.underlay_ip}:{b.port} in ") and human.rstrip().endswith(" ms")
    unknown = a.l2mesh("ping", "nobody", "--count", "1", check=False)
    assert unknown.returncode == 1 and "unknown node 'nobody'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.stderr


def test_ping_between_members_behind_symmetric_nats_shows_the_relay(topology: Topology) -> None:
    a, _ = topology.add_nat_host("a", symmetric=True)
    b, _ = topology.add_nat_host("b", symmetric=True)
    controller = add_controller(topology)
    network_id = network_of(topology, controller, (a, "alpha"), (b, "bee"))
    replies = ping_json(a, b.node_id, count=3)
    print(f"relayed ping a -> b: {[r['rtt_ms'] for r in replies]} ms")
    assert len(replies) == 3
    # Members behind symmetric NATs never get a direct path: every reply comes through the controller's relay.
    assert all(r["path"] == "relay" and r["endpoint"] == controller.endpoint and r["relay"] == network_id[:10] for r in replies)


def test_netcheck_tells_a_cone_nat_from_a_symmetric_one_with_a_controller_and_a_root(topology: Topology) -> None:
    root = start_root(topology, "root")
    controller = add_controller(topology)
    cone, cone_router = topology.add_nat_host("cone")
    symmetric, symmetric_router = topology.add_nat_host("sym", symmetric=True)
    network_id = controller.ctl("network", "create", "diag", "--pool", "10.147.92.0/24").stdout.strip()
    controller_spec = f"{network_id[:10]}@{controller.endpoint}"

    # The cone member runs its daemon (with the root) and joins: netcheck finds both servers in its state directory.
    cone.start_daemon("--root", root.spec)
    cone.l2mesh("join", network_id, "--controller", controller.endpoint)
    wait_until(lambda: (cone.state_dir / "roots.json").exists(), 15, what="root pinned")
    report = json.loads(cone.l2mesh("netcheck", "--json").stdout)
    print(f"cone: {report}")
    assert sorted(s["role"] for s in report["servers"]) == ["controller", "root"]
    assert report["symmetric"] is False
    assert len(report["endpoints"]) == 1 and report["endpoints"][0].startswith(f"{cone_router.public_ip}:")
    assert set(report["latency_ms"]) == {controller.endpoint, f"{root.ip}:{ROOT_PORT}"}
    assert all(0 < ms < 1000 for ms in report["latency_ms"].values())

    # The symmetric member has no daemon and names the servers itself.
    report = json.loads(symmetric.l2mesh("netcheck", "--json", "--controller", controller_spec, "--root", root.spec).stdout)
    print(f"symmetric: {report}")
    assert report["symmetric"] is True
    assert len(report["endpoints"]) == 2 and all(e.startswith(f"{symmetric_router.public_ip}:") for e in report["endpoints"])
    human = symmetric.l2mesh("netcheck", "--controller", controller_spec, "--root", root.spec).stdout
    assert "NAT: symmetric" in human

    # One server cannot tell: symmetric is null, and the report says why.
    report = json.loads(symmetric.l2mesh("netcheck", "--json", "--root", root.spec).stdout)
    assert report["symmetric"] is None and "takes two" in report["reason"]
