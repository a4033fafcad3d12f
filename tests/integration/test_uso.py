"""UDP segmentation offload against the real kernel: coalesced UDP_L4 frames written to a TAP arrive as the very
datagrams, locally and forwarded with checksums the kernel completed; a local segmented send reaches us as one
super-frame that split_uso cuts back (tests/integration/uso_probe.py does the work inside a fresh namespace); and UDP
between two members, segmented and plain, arrives whole and in order with the receiver's writes coalesced."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from l2mesh.lab import Lab
from tests.integration.topology import Topology, wait_until


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("l2mt-") as made:
        yield made


def test_coalesced_udp_frames_reach_sockets_and_wire_as_the_datagrams_sent(lab: Lab) -> None:
    namespace = lab.add_namespace("uso")
    probe = [sys.executable, "-m", "tests.integration.uso_probe"]
    done = lab.run_in(namespace, probe, timeout_s=30, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["uso"]:
        pytest.skip("this kernel has no TUN_F_USO4/6 (before 6.2)")
    assert result["problems"] == []
    assert result["coalesced"] == {"uso_writes": 8, "uso_datagrams": 168}
    assert result["counts"] == {"v4_super_frames_read": 1, "v6_super_frames_read": 1}


RECEIVER = """
import json, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: a burst must not overflow the socket
sock.bind((sys.argv[1], 6000))
sock.settimeout(3.0)
print("ready", flush=True)
got = []
try:
    while True:
        got.append(sock.recv(70000).hex())
except TimeoutError:
    pass
with open(sys.argv[2], "w") as out:
    json.dump(got, out)
"""

SENDER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((sys.argv[1], 6000))
# One segmented send: the sending TAP hands the daemon one UDP_L4 super-frame.
sock.sendmsg([b"".join(bytes([i]) * 64 for i in range(40)) + b"tail"], [(socket.SOL_UDP, 103, (64).to_bytes(2, "little"))])
time.sleep(0.2)
# Then plain small datagrams in bursts: the receiving daemon gets them in runs and coalesces them.
for burst in range(30):
    for i in range(100):
        sock.send((burst * 100 + i).to_bytes(4, "big") * 16)
    time.sleep(0.002)
"""


def test_udp_across_the_overlay_arrives_whole_and_in_order_with_coalesced_writes(topology: Topology) -> None:
    hosts = [topology.add_host(f"m{i}") for i in (1, 2)]
    network_id, files = topology.write_static_netconfs(hosts)
    for host in hosts:
        host.start_daemon("--static-netconf", str(files[host.name]))
    assert wait_until(lambda: hosts[0].ping("10.147.1.2"), 15, what="m1 -> m2")
    received = topology.work_dir / "received.json"
    receiver = hosts[1].popen(sys.executable, "-c", RECEIVER, "10.147.1.2", str(received), log_name="m2-udp-receiver")
    wait_until(lambda: "ready" in topology.log_of("m2-udp-receiver"), 10, what="UDP receiver")
    hosts[0].run(sys.executable, "-c", SENDER, "10.147.1.2", timeout_s=30)
    receiver.wait(15)
    got = [bytes.fromhex(h) for h in json.loads(received.read_text())]
    assert got[:41] == [bytes([i]) * 64 for i in range(40)] + [b"tail"]
    numbers = [int.from_bytes(d[:4], "big") for d in got[41:]]
    assert all(d == d[:4] * 16 for d in got[41:]), "a datagram arrived changed"
    assert numbers == sorted(numbers), "datagrams arrived out of order"
    assert len(numbers) >= 0.99 * 3000, f"{3000 - len(numbers)} of 3000 lost"
    counters = hosts[1].status()["counters"]["uso"]
    assert counters.get("uso_writes", 0) > 0, counters
