"""Issue 12: on a controller's network, multicast groups are liked to the controller and gathered from it.

Members joined through a real `l2mesh-ctl serve` (no static configs): a
receiver joins an IPv4 group on B only, A's datagrams to the group reach B
and never C, mDNS (python-zeroconf) works between members, IPv6 neighbour
discovery (solicited-node groups) works, and the controller's status counts
the subscriptions it holds.
"""

from __future__ import annotations

import time

from tests.integration.test_lan_protocols import (
    MULTICAST_RECEIVER,
    MULTICAST_SENDER,
    PYTHON,
    ZEROCONF_BROWSE,
    ZEROCONF_REGISTER,
    link_local,
    python,
    wait_log,
)
from tests.integration.topology import Controller, Host, Topology, add_controller, network_status, networks_of, wait_until

GROUP = "239.7.7.7"


def joined_members(topology: Topology, controller: Controller, names: tuple[str, ...]) -> tuple[str, list[Host], list[str]]:
    network_id = controller.ctl("network", "create", "mcast", "--pool", "10.147.61.0/24").stdout.strip()
    hosts = [topology.add_host(name) for name in names]
    for host in hosts:
        host.start_daemon()
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
        controller.ctl("member", "authorize", network_id, host.node_id)
    for host in hosts:
        wait_until(lambda h=host: network_status(h, network_id) == "OK", 15, what=f"{host.name} OK")
    ips = []
    for host in hosts:
        ip = wait_until(lambda h=host: next((n["ips"][0].split("/")[0] for n in networks_of(h)
                                             if n["id"] == network_id and n["ips"]), None), 10, what=f"{host.name} IP")
        ips.append(ip)
    return network_id, hosts, ips


def test_a_group_joined_on_one_member_reaches_it_and_no_one_else(topology: Topology) -> None:
    controller = add_controller(topology)
    network_id, (a, b, c), (ip_a, ip_b, _) = joined_members(topology, controller, ("a", "b", "c"))
    assert wait_until(lambda: a.ping(ip_b, timeout_s=1), 10, what="a -> b")
    tap_c = c.tap_name(network_id)
    c.popen("tcpdump", "-n", "-l", "-i", tap_c, f"dst host {GROUP}", log_name="c-tcpdump")
    wait_log(topology, "c-tcpdump", "listening on")
    sender = a.popen(PYTHON, "-c", MULTICAST_SENDER, GROUP, ip_a, "30", log_name="a-mcast-sender")
    result = python(b, MULTICAST_RECEIVER, GROUP, ip_b, timeout_s=20)
    print(f"\nB joins {GROUP} -> first datagram from A: {result['latency_s']} s, {result['received']} received")
    assert result["latency_s"] is not None, "B never received the group's datagrams"
    assert result["latency_s"] < 3.0  # LIKE to the controller, pushed to A, which gathered the group
    assert result["received"] >= 10
    topology.stop_process(sender)
    time.sleep(0.5)
    assert f"> {GROUP}" not in topology.log_of("c-tcpdump"), "a datagram for B's group reached C"
    status = controller.ctl_json("status")
    print(f"controller multicast: {status['multicast']}")
    assert status["multicast"], status


def test_mdns_and_ipv6_neighbour_discovery_work_through_gathered_groups(topology: Topology) -> None:
    controller = add_controller(topology)
    network_id, (a, b), (ip_a, ip_b) = joined_members(topology, controller, ("a", "b"))
    tap_a, tap_b = a.tap_name(network_id), b.tap_name(network_id)
    target = wait_until(lambda: link_local(b, tap_b), 15, interval_s=0.2, what="B's link-local address past DAD")
    wait_until(lambda: link_local(a, tap_a), 15, interval_s=0.2, what="A's link-local address past DAD")
    # The first solicitation may go before A gathered B's solicited-node group: the kernel retries.
    wait_until(
        lambda: a.run("ping", "-6", "-n", "-c", "1", "-W", "1", f"{target}%{tap_a}", check=False, timeout_s=10).returncode == 0,
        15, what="first IPv6 link-local echo reply",
    )
    a.popen(PYTHON, "-c", ZEROCONF_REGISTER, ip_a, "60", log_name="a-zeroconf")
    wait_log(topology, "a-zeroconf", "registered", timeout_s=20)
    result = python(b, ZEROCONF_BROWSE, ip_b, timeout_s=45)
    print(f"\nzeroconf through gathered groups: {result}")
    assert result["found"] == ["member-a._l2mt._tcp.local."], result
    assert result["addresses"] == [ip_a], result
