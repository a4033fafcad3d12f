"""`l2mesh daemon` runs under python -OO (issue 17: idle memory) in the process it was started as; L2MESH_NO_OPTIMIZE=1 opts out."""

from __future__ import annotations

from pathlib import Path

from l2mesh.cli.node import DAEMON_START_MODULE
from l2mesh.edge.reexec import OPTIMIZED_OPTIONS
from tests.integration.topology import L2MESH, Topology, wait_until


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_the_daemon_runs_under_minus_OO_unless_told_not_to(topology: Topology) -> None:
    host = topology.add_host("n")
    # Opted out: the interpreter as started, and the daemon works (status answers).
    host.daemon = host.popen("env", "L2MESH_NO_OPTIMIZE=1", L2MESH, "daemon", "--state-dir", str(host.state_dir),
                             "--port", str(host.port), log_name="n-daemon-plain")
    wait_until(lambda: (host.state_dir / "control.sock").exists(), 15, what="the opted-out daemon's control socket")
    assert command_line(host.daemon.pid)[1:3] == [L2MESH, "daemon"]
    assert host.status()["id"] == host.node_id
    assert host.stop_daemon() == 0
    # By default: the same PID (what systemd and the lab stop it by) now runs the daemon's own module under
    # -OO -X no_debug_ranges (-P: not from the working directory), with the command line as given after it, and works.
    daemon = host.start_daemon()
    assert command_line(daemon.pid)[1:] == [*OPTIMIZED_OPTIONS, "-P", "-m", DAEMON_START_MODULE, L2MESH, "daemon",
                                            "--state-dir", str(host.state_dir), "--port", str(host.port)]
    assert host.status()["id"] == host.node_id
    assert host.stop_daemon() == 0
