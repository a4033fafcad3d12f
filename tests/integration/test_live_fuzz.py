"""Issue 16: 30,000 mutated valid packets at a running member (and at a controller); they keep running and count them.

Member: three members on a static network; m1 and m2 run daemons, fz is
listed in the config too, so the fuzzer (tests/fuzz/live_sender.py, in fz's
namespace, with fz's identity) opens a real session with m2 and seals
mutated messages with it, besides sending tampered, replayed, fragmented
and handshake packets. Afterwards m2's daemon is still alive, pings cross
the overlay both ways, and m2's drop counters rose by thousands.

Controller: the same fuzzer opens a session with a controller serving two
joined members and sends it mutated netconf requests (with a real proof),
multicast likes and gathers, hints and outer packets; afterwards the
controller still answers its admin API and the members still ping.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from l2mesh.edge.identity_file import load_identity
from tests.integration.topology import Controller, Host, Topology, add_controller, wait_until

SENDER = Path(__file__).resolve().parents[1] / "fuzz" / "live_sender.py"
PACKETS = 30_000
CONTROLLER_PACKETS = 10_000
RATE_PER_S = 2_500
SENDER_TIMEOUT_S = 60


def drops_of(host: Host) -> Counter[str]:
    """Every drop counter of the member: its core's, its edge's, each network switch's (as switch:REASON)."""
    counters: dict[str, Any] = host.status()["counters"]
    drops = Counter(counters["drops"]) + Counter(counters.get("edge", {}))
    for network in counters["networks"].values():
        drops.update({f"switch:{reason}": count for reason, count in network.get("drops", {}).items()})
    return drops


def test_30000_mutated_valid_packets_leave_a_member_running_and_carrying_traffic(topology: Topology) -> None:
    m1, m2, fz = topology.add_host("m1"), topology.add_host("m2"), topology.add_host("fz")
    network_id, files = topology.write_static_netconfs([m1, m2, fz])
    for host in (m1, m2):
        host.start_daemon("--static-netconf", str(files[host.name]))
    assert wait_until(lambda: m1.ping("10.147.1.2"), 15, what="m1 -> m2 before the fuzz")
    drops_before = drops_of(m2)

    report = send_fuzz(fz, f"{m2.underlay_ip}:{m2.port}", m2.identity["x25519"], "--target-id", m2.node_id,
                       "--target-ip", "10.147.1.2", "--network-id", network_id, "--own-ip", "10.147.1.3", count=PACKETS)

    assert m2.daemon is not None and m2.daemon.poll() is None, topology.log_of("m2-daemon")
    assert wait_until(lambda: m1.ping("10.147.1.2", timeout_s=1.0), 10, what="m1 -> m2 after the fuzz")
    assert m2.ping("10.147.1.1"), "m2 -> m1 after the fuzz"
    dropped = drops_of(m2) - drops_before
    print(f"live fuzz: {report['sent']} packets in {report['seconds']} s ({report['by_kind']}); m2 counted "
          f"{dropped.total()} drops and is still carrying traffic; most common: {dropped.most_common(12)}")
    # Most mutants are refused somewhere (tampered and handshake ones always are; sealed ones mostly).
    assert dropped.total() > PACKETS // 4, dropped
    # Refused after decryption: the sealed mutants got through the session to the parsers and the switch.
    behind_the_session = {"unhandled_message", "probe_malformed", "subscriptions_malformed", "frame_for_unshared_network",
                          "frame_message_too_short"}
    assert sum(dropped[reason] for reason in behind_the_session) + sum(
        count for reason, count in dropped.items() if reason.startswith("switch:")) > 1000, dropped
    assert "Traceback" not in topology.log_of("m2-daemon")


def send_fuzz(fuzzer: Host, target: str, key: str, *argv: str, count: int) -> dict[str, Any]:
    result = fuzzer.run(sys.executable, str(SENDER), target, "--target-key", key, "--state-dir", str(fuzzer.state_dir),
                        "--listen", f"{fuzzer.underlay_ip}:{fuzzer.port}", "--count", str(count), "--rate", str(RATE_PER_S),
                        *argv, timeout_s=SENDER_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["sent"] == count
    return report


def controller_drops(controller: Controller) -> Counter[str]:
    return Counter(controller.ctl_json("status")["drops"])


def test_10000_mutated_valid_packets_leave_a_controller_serving_its_members(topology: Topology) -> None:
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "lab", "--pool", "10.147.17.0/24").stdout.strip()
    a, b, fz = topology.add_host("a"), topology.add_host("b"), topology.add_host("fz")
    for host, ip in ((a, "10.147.17.1"), (b, "10.147.17.2")):
        controller.ctl("member", "authorize", network_id, host.node_id, "--ip", ip)
        host.start_daemon()
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
    assert wait_until(lambda: a.ping("10.147.17.2", timeout_s=1.0), 20, what="a -> b before the fuzz")
    before = controller_drops(controller)

    key = load_identity(controller.state_dir).x25519_public.hex()
    report = send_fuzz(fz, controller.endpoint, key, "--mode", "controller", "--target-id", b.node_id, "--target-ip",
                       "10.147.17.2", "--network-id", network_id, "--own-ip", "10.147.17.3", count=CONTROLLER_PACKETS)

    assert controller.process is not None and controller.process.poll() is None, topology.log_of("controller")
    members = {m["id"]: m for m in controller.ctl_json("member", "list", network_id)}
    assert members[a.node_id]["authorized"] and members[b.node_id]["authorized"]
    assert wait_until(lambda: a.ping("10.147.17.2", timeout_s=1.0), 10, what="a -> b after the fuzz")
    dropped = controller_drops(controller) - before
    print(f"live fuzz of the controller: {report['sent']} packets in {report['seconds']} s ({report['by_kind']}); "
          f"{dropped.total()} drops counted, most common: {dropped.most_common(10)}")
    assert dropped.total() > CONTROLLER_PACKETS // 4, dropped
    assert "Traceback" not in topology.log_of("controller")
