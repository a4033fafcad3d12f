"""`l2mesh daemon` runs under python -OO (issue 17: idle memory) in the process it was started as; L2MESH_NO_OPTIMIZE=1 opts out."""

from __future__ import annotations

from pathlib import Path

from l2mesh.edge.reexec import OPTIMIZED_OPTIONS
from tests.integration.topology import L2MESH, Topology, wait_until


def interpreter_options(pid: int) -> list[str]:
    """What the process now runs: the options between the interpreter and the `l2mesh` script."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    return argv[1:argv.index(L2MESH)]


def test_the_daemon_runs_under_minus_OO_unless_told_not_to(topology: Topology) -> None:
    host = topology.add_host("n")
    # Opted out: the interpreter as started, and the daemon works (status answers).
    host.daemon = host.popen("env", "L2MESH_NO_OPTIMIZE=1", L2MESH, "daemon", "--state-dir", str(host.state_dir),
                             "--port", str(host.port), log_name="n-daemon-plain")
    wait_until(lambda: (host.state_dir / "control.sock").exists(), 15, what="the opted-out daemon's control socket")
    assert interpreter_options(host.daemon.pid) == []
    assert host.status()["id"] == host.node_id
    assert host.stop_daemon() == 0
    # By default: the same PID (what systemd and the lab stop it by) now runs under -OO -X no_debug_ranges, and works.
    daemon = host.start_daemon()
    assert interpreter_options(daemon.pid) == list(OPTIMIZED_OPTIONS)
    assert host.status()["id"] == host.node_id
    assert host.stop_daemon() == 0
