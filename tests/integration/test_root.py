"""Issue 11: a real `l2mesh-ctl root` in a namespace, and nodes in another one talking to it over UDP and TCP."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from tests.integration.topology import L2MESH_CTL, Topology, wait_until

PROBE = str(Path(__file__).with_name("root_probe.py"))
ROOT_PORT = 9993


def test_a_root_registers_looks_up_and_relays_over_udp_and_tcp_and_exits_0_on_sigterm(topology: Topology) -> None:
    lab = topology.lab
    root_host, node_host = lab.add_host("root"), lab.add_host("nodes")
    state_dir = topology.work_dir / "root-state"
    shown = json.loads(lab.run_in(root_host.namespace, [L2MESH_CTL, "root", "--show-id", "--json", "--state-dir", str(state_dir)]).stdout)
    process = lab.start(root_host.namespace, [
        L2MESH_CTL, "root", "--state-dir", str(state_dir), "--listen", f"0.0.0.0:{ROOT_PORT}",
        "--tcp-listen", f"0.0.0.0:{ROOT_PORT}",
    ], "root")
    root_file = state_dir / "root.json"
    wait_until(lambda: root_file.exists() or process.poll() is not None, 15, what="root.json")
    assert process.poll() is None, topology.log_of("root")
    described = json.loads(root_file.read_text())
    assert described["id"] == shown["id"] and described["tcp"] == f"0.0.0.0:{ROOT_PORT}"
    assert f"root {shown['id']} listening on udp 0.0.0.0:{ROOT_PORT}, tcp 0.0.0.0:{ROOT_PORT}" in topology.log_of("root")

    result = lab.run_in(node_host.namespace, [sys.executable, PROBE, shown["id"], root_host.ip, str(ROOT_PORT), str(ROOT_PORT)],
                        timeout_s=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(result.stdout.strip().splitlines()[-1])
    assert checks == {name: True for name in checks} and len(checks) == 10, checks

    assert lab.stop(process, signal.SIGTERM) == 0, topology.log_of("root")


def test_bad_arguments_end_in_one_line_and_a_non_zero_exit(topology: Topology) -> None:
    host = topology.lab.add_host("root")
    for argv in (["--listen", "nowhere"], ["--relay-limit-mbps", "0"], ["--tcp-listen", "198.18.99.99:9993"]):
        result = topology.lab.run_in(host.namespace, [L2MESH_CTL, "root", "--state-dir", str(topology.work_dir / "s"), *argv], check=False)
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
