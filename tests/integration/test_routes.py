"""Issue 14 acceptance: managed routes, subnet routers and exit nodes on real members in namespaces.

Addresses: underlay 198.18.N.0/24 per host behind the lab's router, overlay
10.147.17.0/24, the LAN behind the subnet router 198.19.200.0/24, and the
"Internet host" 198.18.250.2 on the lab's router. Nothing here leaves the
namespaces the test makes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.integration.topology import Controller, Host, Topology, add_controller, network_status, wait_until

PYTHON = sys.executable
POOL = "10.147.17.0/24"
LAN_NET, LAN_ROUTER_IP, LAN_HOST_IP = "198.19.200.0/24", "198.19.200.1", "198.19.200.2"
INTERNET_LAN = 250  # the Internet host's /24 behind the lab's router: 198.18.250.2
HTTP_PORT = 8080
FETCH = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(f'http://{sys.argv[1]}:{sys.argv[2]}/', timeout=3).read().decode().strip())\n"
)
# Answers each request with the address it came from: what the far side sees.
WHO_AM_I = (
    "import http.server, sys\n"
    "class Echo(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = self.client_address[0].encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()\n"
)


def network_entry(host: Host, network_id: str) -> dict[str, Any]:
    return next(n for n in json.loads(host.l2mesh("networks", "--json").stdout) if n["id"] == network_id)


def routes_of(host: Host, network_id: str) -> list[dict[str, Any]]:
    return network_entry(host, network_id)["routes"]


def kernel_routes(host: Host, *selector: str) -> str:
    return host.run("ip", "route", "show", *selector).stdout


def sysctl(host: Host, key: str) -> str:
    return host.run("sysctl", "-n", key).stdout.strip()


def joined_network(topology: Topology, members: dict[str, tuple[str, list[str]]]) -> tuple[Controller, str, dict[str, Host]]:
    """A controller, a network on POOL, and members (name -> (overlay IP, join flags)) authorized, joined and OK."""
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "lab", "--pool", POOL).stdout.strip()
    hosts = {name: topology.add_host(name) for name in members}
    for name, host in hosts.items():
        ip, flags = members[name]
        controller.ctl("member", "authorize", network_id, host.node_id, "--ip", ip, "--name", name)
        host.start_daemon()
        host.l2mesh("join", network_id, "--controller", controller.endpoint, *flags)
    for name, host in hosts.items():
        wait_until(lambda h=host: network_status(h, network_id) == "OK", 15, what=f"{name} OK")
        wait_until(lambda h=host, n=name: f" {members[n][0]}/" in h.run("ip", "-o", "addr", "show", "dev", h.tap_name(network_id)).stdout,
                   10, what=f"{name} address on its TAP")
    return controller, network_id, hosts


def test_a_lan_host_behind_a_subnet_router_and_a_member_reach_each_other_through_a_managed_route(topology: Topology) -> None:
    controller, network_id, hosts = joined_network(
        topology, {"router": ("10.147.17.3", ["--subnet-router"]), "client": ("10.147.17.1", [])}
    )
    router, client = hosts["router"], hosts["client"]
    # The LAN behind the router: one host, which reaches the overlay through the router, as a LAN's hosts would.
    lan = topology.add_namespace("lanhost")
    topology.lab.add_link(router.namespace, "lan0", f"{LAN_ROUTER_IP}/24", lan, "eth0", f"{LAN_HOST_IP}/24")
    topology.ip("-n", lan, "route", "add", POOL, "via", LAN_ROUTER_IP)

    controller.ctl("network", "update", network_id, "--route", f"{LAN_NET}@10.147.17.3")
    wanted = {"target": LAN_NET, "via": "10.147.17.3"}
    wait_until(lambda: wanted in routes_of(client, network_id), 5, what="the LAN route on the client")
    assert f"{LAN_NET} via 10.147.17.3 dev {client.tap_name(network_id)} proto 147" in kernel_routes(client)
    assert {"target": POOL, "via": None} not in routes_of(client, network_id)  # no on-link route was asked for
    assert client.ping(LAN_HOST_IP, count=2, timeout_s=2)
    assert topology.run_in(lan, ["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", "10.147.17.1"], check=False).returncode == 0

    entry = network_entry(router, network_id)
    assert entry["subnet_router"] and entry["forwarding"] and not entry["exit_node"]
    assert entry["routes"] == []  # the route is through the router itself: nothing to install there
    assert sysctl(router, "net.ipv4.ip_forward") == "1"
    assert router.run("nft", "list", "tables").stdout.count("l2mesh_") == 0  # a subnet router does not masquerade

    # --no-route takes it away again on every member.
    controller.ctl("network", "update", network_id, "--no-route", LAN_NET)
    wait_until(lambda: routes_of(client, network_id) == [], 5, what="the LAN route gone from the client")
    assert LAN_NET not in kernel_routes(client)
    assert not client.ping(LAN_HOST_IP, timeout_s=1)
    # Back again, then the client is deauthorized: the route goes with its config.
    controller.ctl("network", "update", network_id, "--route", f"{LAN_NET}@10.147.17.3")
    wait_until(lambda: wanted in routes_of(client, network_id), 5, what="the LAN route back on the client")
    controller.ctl("member", "deauthorize", network_id, client.node_id)
    wait_until(lambda: network_status(client, network_id) == "ACCESS_DENIED", 5, what="the client deauthorized")
    wait_until(lambda: LAN_NET not in kernel_routes(client), 5, what="the LAN route gone after deauthorization")
    assert routes_of(client, network_id) == []


def test_subnet_router_flags_persist_across_restarts_and_forwarding_is_undone_on_sigterm_and_on_leave(topology: Topology) -> None:
    _, network_id, hosts = joined_network(topology, {"router": ("10.147.17.3", ["--subnet-router"])})
    router = hosts["router"]
    assert sysctl(router, "net.ipv4.ip_forward") == "1"
    assert router.stop_daemon() == 0
    assert sysctl(router, "net.ipv4.ip_forward") == "0"  # put back as the daemon found it
    router.start_daemon()
    wait_until(lambda: network_status(router, network_id) == "OK", 15, what="router OK after its restart")
    wait_until(lambda: network_entry(router, network_id)["forwarding"], 5, what="forwarding again after the restart")
    assert network_entry(router, network_id)["subnet_router"] and sysctl(router, "net.ipv4.ip_forward") == "1"
    router.l2mesh("leave", network_id)
    wait_until(lambda: sysctl(router, "net.ipv4.ip_forward") == "0", 5, what="forwarding off after leave")


def test_a_member_with_allow_default_reaches_the_internet_through_the_exit_node_and_keeps_its_own_paths(topology: Topology) -> None:
    controller, network_id, hosts = joined_network(
        topology, {"exit": ("10.147.17.2", ["--exit-node"]), "member": ("10.147.17.1", ["--allow-default"]), "other": ("10.147.17.4", [])}
    )
    exit_node, member, other = hosts["exit"], hosts["member"], hosts["other"]
    internet = topology.lab.add_host("inet", lan=INTERNET_LAN)
    # The member's underlay as a real host has it: a default route to its ISP's router (in place of the lab's
    # 198.18.0.0/15), so only the overlay's default route can compete for the Internet host. Its one link
    # leads to the lab's router namespace, which routes 198.18.0.0/15 and nothing else: nothing leaves the lab.
    # Strict reverse-path filtering, as some distributions set it, must not drop the peers' replies either.
    member.run("ip", "route", "replace", "default", "via", f"198.18.{member_lan(member)}.1")
    member.run("ip", "route", "del", "198.18.0.0/15")
    member.run("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
    topology.popen_in(internet.namespace, [PYTHON, "-c", WHO_AM_I, internet.ip, str(HTTP_PORT)], log_name="internet-http")
    wait_until(lambda: f"{internet.ip}:{HTTP_PORT} " in topology.run_in(internet.namespace, ["ss", "-Hltn"]).stdout, 10,
               what="the Internet host listening")
    # Before the exit route: the member reaches the Internet host directly, with its own address.
    assert fetch(member, internet.ip) == member.underlay_ip

    controller.ctl("network", "update", network_id, "--route", "0.0.0.0/0@10.147.17.2")
    default = {"target": "0.0.0.0/0", "via": "10.147.17.2"}
    wait_until(lambda: default in routes_of(member, network_id), 5, what="the default route on the member")
    assert routes_of(other, network_id) == [] and network_entry(other, network_id)["routes_refused"] == []  # no --allow-default
    assert "default" not in kernel_routes(other, "table", "all")
    tap = member.tap_name(network_id)
    assert f"default via 10.147.17.2 dev {tap}" in kernel_routes(member, "table", str(member.port))
    assert f"dev {tap}" in member.run("ip", "route", "get", internet.ip).stdout

    # The Internet host sees the exit node's underlay address: masqueraded there.
    assert wait_until(lambda: fetch(member, internet.ip) == exit_node.underlay_ip, 10, what="a fetch through the exit node")
    assert member.ping(internet.ip, count=2, timeout_s=2)
    exit_entry = network_entry(exit_node, network_id)
    assert exit_entry["exit_node"] and exit_entry["forwarding"] and exit_entry["routes"] == []
    assert f"l2mesh_{exit_node.port}_{network_id}" in exit_node.run("nft", "list", "tables").stdout

    # The member's own l2mesh traffic stays on the underlay: a direct path to the exit node's and the other
    # member's underlay addresses (not through itself), the controller online, the overlay working.
    for peer in (exit_node, other):
        member.ping("10.147.17.2" if peer is exit_node else "10.147.17.4", count=1, timeout_s=2)
        wait_until(lambda p=peer: peer_entry(member, p)["path"] == "direct", 10, what=f"direct path to {peer.name}")
        assert peer_entry(member, peer)["endpoint"] == f"{peer.underlay_ip}:{peer.port}"
    assert member.status()["online"]
    assert member.ping("10.147.17.4", count=3, timeout_s=2)
    marked = member.run("ip", "route", "get", exit_node.underlay_ip, "mark", str(member.port)).stdout
    assert "dev eth0" in marked, marked

    # Leave: the default route, its policy rules and the mark restore go; the Internet host is out of reach.
    member.l2mesh("leave", network_id)
    wait_until(lambda: f"lookup {member.port}" not in member.run("ip", "rule").stdout, 5, what="the policy rules gone after leave")
    assert "suppress_prefixlength" not in member.run("ip", "rule").stdout
    assert f"table {member.port}" not in kernel_routes(member, "table", "all")
    assert "l2mesh_" not in member.run("nft", "list", "tables").stdout
    assert sysctl(member, "net.ipv4.conf.all.src_valid_mark") == "0"
    assert fetch(member, internet.ip) == member.underlay_ip  # back to its own underlay path
    # And the exit node undoes its NAT and forwarding on SIGTERM.
    assert exit_node.stop_daemon() == 0
    assert "l2mesh_" not in exit_node.run("nft", "list", "tables").stdout
    assert sysctl(exit_node, "net.ipv4.ip_forward") == "0"


def test_a_route_that_would_override_the_underlay_is_refused_and_logged_and_bad_input_is_one_line(topology: Topology) -> None:
    controller, network_id, hosts = joined_network(topology, {"m1": ("10.147.17.1", []), "m2": ("10.147.17.2", [])})
    m1 = hosts["m1"]
    # 198.18.0.0/16 holds m1's underlay gateway and m2's and the controller's addresses: routing it into the
    # overlay would cut m1 off. The other route is fine and is installed beside it. (m2 is their gateway.)
    controller.ctl("network", "update", network_id, "--route", "198.18.0.0/16@10.147.17.2", "--route", "198.19.201.0/24@10.147.17.2")
    wait_until(lambda: network_entry(m1, network_id)["routes_refused"], 5, what="the refusal on m1")
    entry = network_entry(m1, network_id)
    assert [r["target"] for r in entry["routes_refused"]] == ["198.18.0.0/16"]
    assert "would override the underlay" in entry["routes_refused"][0]["reason"]
    assert [r["target"] for r in entry["routes"]] == ["198.19.201.0/24"]
    assert "198.18.0.0/16" not in kernel_routes(m1)
    log = (topology.logs / "m1-daemon.log").read_text()
    assert "route 198.18.0.0/16 via 10.147.17.2 refused: it would override the underlay" in log
    assert m1.ping("10.147.17.2", timeout_s=2)  # still connected
    # An on-link route (another overlay subnet on the same segment) comes and goes like the others.
    controller.ctl("network", "update", network_id, "--route", "10.147.18.0/24")
    wait_until(lambda: "10.147.18.0/24 dev" in kernel_routes(m1), 5, what="the on-link route on m1")
    assert {"target": "10.147.18.0/24", "via": None} in network_entry(m1, network_id)["routes"]
    controller.ctl("network", "update", network_id, "--no-route", "10.147.18.0/24")
    wait_until(lambda: "10.147.18.0/24" not in kernel_routes(m1), 5, what="the on-link route gone from m1")
    # Joined again with --no-managed-routes: none installed at all, and none refused either.
    m1.l2mesh("join", network_id, "--controller", controller.endpoint, "--no-managed-routes")
    wait_until(lambda: network_entry(m1, network_id)["managed_routes"] is False, 5, what="m1 joined again")
    wait_until(lambda: network_entry(m1, network_id)["routes"] == [], 5, what="no routes on m1")
    assert network_entry(m1, network_id)["routes_refused"] == []
    assert "198.19.201.0/24" not in kernel_routes(m1)
    # Bad input: one line, non-zero, no traceback, nothing stored.
    for argv in (["--route", "198.19.200.0/24@10.147.99.9"], ["--route", "10.0.0.0/33"], ["--no-route", "198.19.250.0/24"],
                 ["--dns-domain", "no_underscores.example"]):
        result = controller.ctl("network", "update", network_id, *argv, check=False)
        assert result.returncode != 0 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, (argv, result.stderr)
    shown = controller.ctl_json("network", "show", network_id)
    assert [r["target"] for r in shown["routes"]] == ["198.18.0.0/16", "198.19.201.0/24"]
    # Stored durably: a restarted controller has the same routes and domain.
    controller.ctl("network", "update", network_id, "--dns-domain", "corp.example")
    controller.stop()
    controller.start()
    restarted = controller.ctl_json("network", "show", network_id)
    assert (restarted["routes"], restarted["dns_domain"]) == (shown["routes"], "corp.example")


def member_lan(host: Host) -> int:
    return int(host.underlay_ip.split(".")[2])


def fetch(host: Host, ip: str) -> str | None:
    result = host.run(PYTHON, "-c", FETCH, ip, str(HTTP_PORT), check=False, timeout_s=10)
    return result.stdout.strip() if result.returncode == 0 else None


def peer_entry(host: Host, peer: Host) -> dict[str, Any]:
    return next(p for p in json.loads(host.l2mesh("peers", "--json").stdout) if p["id"] == peer.node_id)
