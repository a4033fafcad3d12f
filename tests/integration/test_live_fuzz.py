"""Issue 16: 30,000 mutated valid packets at a running member; it keeps running, counts them, and carries traffic.

Three members on a static network: m1 and m2 run daemons; fz is listed in
the config too, so the fuzzer (tests/fuzz/live_sender.py, in fz's
namespace, with fz's identity) opens a real session with m2 and seals
mutated messages with it, besides sending tampered, replayed, fragmented
and handshake packets. Afterwards m2's daemon is still alive, pings cross
the overlay both ways, and m2's drop counters rose by thousands.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.integration.topology import Host, Topology, wait_until

SENDER = Path(__file__).resolve().parents[1] / "fuzz" / "live_sender.py"
PACKETS = 30_000
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

    result = fz.run(
        sys.executable, str(SENDER), f"{m2.underlay_ip}:{m2.port}", "--target-key", m2.identity["x25519"],
        "--target-id", m2.node_id, "--target-ip", "10.147.1.2", "--state-dir", str(fz.state_dir),
        "--listen", f"{fz.underlay_ip}:{fz.port}", "--network-id", network_id, "--own-ip", "10.147.1.3",
        "--count", str(PACKETS), "--rate", str(RATE_PER_S), timeout_s=SENDER_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert m2.daemon is not None and m2.daemon.poll() is None, topology.log_of("m2-daemon")
    assert wait_until(lambda: m1.ping("10.147.1.2", timeout_s=1.0), 10, what="m1 -> m2 after the fuzz")
    assert m2.ping("10.147.1.1"), "m2 -> m1 after the fuzz"
    dropped = drops_of(m2) - drops_before
    print(f"live fuzz: {report['sent']} packets in {report['seconds']} s ({report['by_kind']}); m2 counted "
          f"{dropped.total()} drops and is still carrying traffic; most common: {dropped.most_common(12)}")
    assert report["sent"] == PACKETS
    # Most mutants are refused somewhere (tampered and handshake ones always are; sealed ones mostly).
    assert dropped.total() > PACKETS // 4, dropped
    # Refused after decryption: the sealed mutants got through the session to the parsers and the switch.
    behind_the_session = {"unhandled_message", "probe_malformed", "subscriptions_malformed", "frame_for_unshared_network",
                          "frame_message_too_short"}
    assert sum(dropped[reason] for reason in behind_the_session) + sum(
        count for reason, count in dropped.items() if reason.startswith("switch:")) > 1000, dropped
    assert "Traceback" not in topology.log_of("m2-daemon")
