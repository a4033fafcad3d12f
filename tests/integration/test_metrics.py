"""Issue 15, metrics: the controller's GET /metrics (bearer token; served as behind a reverse proxy, so loopback too) and a
node's `l2mesh daemon --metrics-listen`, scraped over real sockets in the lab after a ping across the overlay."""

from __future__ import annotations

import json
import sys

from l2mesh.controller.defaults import TOKEN_FILE
from tests.integration.topology import (
    L2MESH,
    Controller,
    Host,
    Topology,
    networks_of,
    wait_until,
)
from tests.prometheus_samples import samples_of, value

API_PORT = 9995
METRICS_LISTEN = "127.0.0.1:9100"

# Runs inside a namespace: GET url with the headers given as JSON; prints the status, then the body.
FETCH = """
import json, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))
try:
    with urllib.request.urlopen(request, timeout=5) as answer:
        print(answer.status)
        sys.stdout.write(answer.read().decode())
except urllib.error.HTTPError as refused:
    print(refused.code)
"""


def fetch(host: Host, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(status, body) of a GET from inside host's namespace."""
    out = host.run(sys.executable, "-c", FETCH, url, json.dumps(headers or {})).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def overlay_ip(host: Host, network_id: str) -> str | None:
    for network in networks_of(host):
        if network["id"] == network_id and network["ips"] and network["status"] == "OK":
            return str(network["ips"][0])
    return None


def test_controller_and_node_metrics_after_a_ping_with_the_token_rule_and_bind_errors(topology: Topology) -> None:
    ctl_host = topology.add_host("ctl")
    controller = Controller(ctl_host, topology.work_dir / "ctl-state")
    # Reachable from the members too, so the token rule applies; plain HTTP off loopback needs --behind-proxy.
    controller.start("--api", f"0.0.0.0:{API_PORT}", "--behind-proxy")
    network_id = controller.ctl("network", "create", "lab", "--pool", "10.147.17.0/24").stdout.strip()
    a, b = topology.add_host("a"), topology.add_host("b")
    a.start_daemon("--metrics-listen", METRICS_LISTEN)
    b.start_daemon()
    for host in (a, b):
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
        controller.ctl("member", "authorize", network_id, host.node_id)
    b_ip = wait_until(lambda: overlay_ip(b, network_id), 10, what="b's overlay address")
    assert b_ip is not None
    wait_until(lambda: overlay_ip(a, network_id), 10, what="a's overlay address")
    assert wait_until(lambda: a.ping(b_ip, count=3, timeout_s=1), 10, what="a pings b")

    # The node: bytes to and from b, and b on the direct path.
    status, text = fetch(a, f"http://{METRICS_LISTEN}/metrics")
    assert status == 200
    node = samples_of(text)
    assert value(node, "l2mesh_node_peers", role="member", path="direct") == 1
    assert value(node, "l2mesh_node_peer_bytes_total", peer=b.node_id, role="member", direction="tx") > 0
    assert value(node, "l2mesh_node_peer_bytes_total", peer=b.node_id, role="member", direction="rx") > 0
    assert value(node, "l2mesh_node_peer_packets_total", peer=b.node_id, role="member", direction="rx") >= 3
    assert value(node, "l2mesh_node_network_status", network=network_id, status="OK") == 1
    assert value(node, "l2mesh_node_netconf_revision", network=network_id) >= 1
    assert value(node, "l2mesh_node_reactor_tick_lateness_seconds_count") > 0
    assert value(node, "process_resident_memory_bytes") > 0

    # The controller serves behind a (stand-in) reverse proxy, where every request would look local: so
    # even its own loopback needs the token (a controller on loopback alone trusts it: the unit tests).
    token = (controller.state_dir / TOKEN_FILE).read_text().strip()
    assert fetch(ctl_host, f"http://127.0.0.1:{API_PORT}/metrics")[0] == 401
    status, text = fetch(ctl_host, f"http://127.0.0.1:{API_PORT}/metrics", {"Authorization": f"Bearer {token}"})
    assert status == 200
    members = samples_of(text)
    assert value(members, "l2mesh_controller_members", network=network_id, state="authorized") == 2
    assert value(members, "l2mesh_controller_members_online", network=network_id) == 2
    remote = f"http://{ctl_host.underlay_ip}:{API_PORT}/metrics"
    assert fetch(a, remote)[0] == 401
    status, text = fetch(a, remote, {"Authorization": f"Bearer {token}"})
    assert status == 200
    assert value(samples_of(text), "l2mesh_controller_join_requests_total") == 2

    # A second daemon on a's metrics port, and a malformed address: one line each, non-zero exit.
    taken = a.run(
        L2MESH, "daemon", "--state-dir", str(topology.work_dir / "a2"), "--port", "9997",
        "--metrics-listen", METRICS_LISTEN, check=False, timeout_s=20,
    )
    assert taken.returncode == 1
    assert taken.stderr.strip().splitlines()[-1].endswith(f"cannot serve metrics on {METRICS_LISTEN}: Address already in use")
    assert "Traceback" not in taken.stderr
    malformed = a.l2mesh("daemon", "--metrics-listen", "localhost", check=False)
    assert malformed.returncode == 2 and malformed.stderr.count("\n") == 1 and "--metrics-listen" in malformed.stderr
