"""Issue 7 acceptance: paths across NAT — hole punching, relay fallback, failover and recovery."""

from __future__ import annotations

import json
import re
import signal
import time

from tests.integration.topology import Controller, Host, Topology, add_controller, block_udp_between, unblock, wait_until


def peer_view(host: Host, peer: Host) -> dict | None:
    for entry in json.loads(host.l2mesh("peers", "--json").stdout):
        if entry["id"] == peer.node_id:
            return entry
    return None


def path_to(host: Host, peer: Host) -> str | None:
    entry = peer_view(host, peer)
    return entry["path"] if entry else None


def ip_on(host: Host, network_id: str) -> str | None:
    for network in json.loads(host.l2mesh("networks", "--json").stdout):
        if network["id"] == network_id and network["ips"] and network["status"] == "OK":
            return network["ips"][0]
    return None


def full_log(topology: Topology, log_name: str) -> str:
    return (topology.logs / f"{log_name}.log").read_text(errors="replace")


def first_reply_after(topology: Topology, host: Host, target: str, since: float | None = None, interval_s: float = 0.05) -> float:
    """Seconds from `since` (default: now) to the first echo reply, read from ping's own timestamps, not CLI polling."""
    started = time.time() if since is None else since
    log_name = f"first-reply-{target}"
    pinger = host.popen("ping", "-n", "-D", "-i", str(interval_s), "-W", "1", "-w", "15", target, log_name=log_name)

    def first_reply() -> float | None:
        match = re.search(r"^\[(\d+\.\d+)\] \d+ bytes from", full_log(topology, log_name), re.M)
        return float(match.group(1)) if match else None

    try:
        replied_at = wait_until(first_reply, 15, interval_s=0.05, what=f"first reply from {target}")
    finally:
        topology.stop_process(pinger, signal.SIGINT)
    return replied_at - started


def network_of_two(topology: Topology, a: Host, b: Host) -> tuple[Controller, str, str, str]:
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "nat", "--pool", "10.147.90.0/24").stdout.strip()
    for host in (a, b):
        controller.ctl("member", "authorize", network_id, host.node_id)
        host.start_daemon()
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
    ip_a = wait_until(lambda: ip_on(a, network_id), 15, what="a configured")
    ip_b = wait_until(lambda: ip_on(b, network_id), 15, what="b configured")
    return controller, network_id, ip_a, ip_b


def test_two_members_behind_cone_nats_get_a_direct_path_within_five_seconds(topology: Topology) -> None:
    a, _ = topology.add_nat_host("a")
    b, _ = topology.add_nat_host("b")
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "nat", "--pool", "10.147.90.0/24").stdout.strip()
    controller.ctl("member", "authorize", network_id, a.node_id, "--ip", "10.147.90.1")
    controller.ctl("member", "authorize", network_id, b.node_id, "--ip", "10.147.90.2")
    for host in (a, b):
        host.start_daemon()
    # From the moment both join (pre-authorized) to the first reply over the overlay.
    started = time.time()
    for host in (a, b):
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
    elapsed = first_reply_after(topology, a, "10.147.90.2", since=started)
    ip_a, ip_b = "10.147.90.1", "10.147.90.2"
    wait_until(lambda: path_to(a, b) == "direct" and path_to(b, a) == "direct", 10, what="direct path a <-> b")
    print(f"cone/cone: first reply {elapsed:.2f} s after both joined, path direct")
    assert elapsed < 5.0
    # Proven direct: traffic keeps flowing while the relay (the controller) is frozen.
    assert controller.process is not None
    controller.process.send_signal(signal.SIGSTOP)
    try:
        assert a.ping(ip_b, count=5, interval_s=0.2, timeout_s=1)
        assert b.ping(ip_a, count=5, interval_s=0.2, timeout_s=1)
    finally:
        controller.process.send_signal(signal.SIGCONT)


def test_members_behind_a_symmetric_nat_use_the_relay_and_iperf3_runs_ten_seconds(topology: Topology) -> None:
    a, _ = topology.add_nat_host("a", symmetric=True)
    b, _ = topology.add_nat_host("b", symmetric=True)
    _, _, _, ip_b = network_of_two(topology, a, b)
    print(f"symmetric/symmetric: first reply after {first_reply_after(topology, a, ip_b):.2f} s")
    assert path_to(a, b) == "relay"
    server = b.popen("iperf3", "-s", "-1", "-B", ip_b)
    wait_until(lambda: "5201" in b.run("ss", "-Htln").stdout, 10, what="iperf3 server")
    result = a.run("iperf3", "-c", ip_b, "-t", "10", "-J", timeout_s=40)
    topology.stop_process(server)
    report = json.loads(result.stdout)
    intervals = [i["sum"]["bits_per_second"] for i in report["intervals"]]
    print(f"relayed iperf3: {report['end']['sum_received']['bits_per_second'] / 1e6:.0f} Mbit/s, intervals {[round(x / 1e6) for x in intervals]}")
    assert len(intervals) >= 10 and min(intervals) > 1e6
    assert path_to(a, b) == "relay"


def _ping_gaps(output: str, interval_s: float) -> float:
    """The longest run of missing replies in `ping -D` output, in seconds."""
    seqs = sorted(int(m) for m in re.findall(r"icmp_seq=(\d+)", output))
    longest = 0
    for before, after in zip(seqs, seqs[1:]):
        longest = max(longest, after - before - 1)
    return longest * interval_s


def test_breaking_the_direct_path_moves_to_the_relay_within_five_seconds_and_back_when_healed(topology: Topology) -> None:
    a, router_a = topology.add_nat_host("a")
    b, router_b = topology.add_nat_host("b")
    _, _, ip_a, ip_b = network_of_two(topology, a, b)
    wait_until(lambda: a.ping(ip_b, timeout_s=0.5) and path_to(a, b) == "direct", 10, interval_s=0.1, what="direct path")
    interval_s = 0.05
    pinger = a.popen("ping", "-n", "-i", str(interval_s), "-W", "1", "-w", "30", ip_b, log_name="pinger")
    time.sleep(2)
    block_udp_between(topology, router_a, router_b)
    broken = time.monotonic()
    wait_until(lambda: path_to(a, b) == "relay", 10, interval_s=0.1, what="a moves to the relay")
    to_relay_s = time.monotonic() - broken
    time.sleep(3)
    unblock(topology)
    healed = time.monotonic()
    wait_until(lambda: path_to(a, b) == "direct" and path_to(b, a) == "direct", 20, interval_s=0.2, what="back to direct")
    to_direct_s = time.monotonic() - healed
    topology.stop_process(pinger, signal.SIGINT)
    gap_s = _ping_gaps(full_log(topology, "pinger"), interval_s)
    print(f"failover: relay after {to_relay_s:.2f} s (longest ping gap {gap_s:.2f} s), back to direct {to_direct_s:.2f} s after healing")
    assert gap_s < 5.0
    assert to_direct_s < 15.0
    assert a.ping(ip_b, count=3, timeout_s=1)
