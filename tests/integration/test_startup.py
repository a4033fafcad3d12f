"""Start-up as a newcomer meets it: `l2mesh daemon & l2mesh join ...` with no sleep, and systemd's readiness."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path

from tests.integration.topology import L2MESH, L2MESH_CTL, Controller, Host, Topology, add_controller, network_status, wait_until

UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
READY_TIMEOUT_S = 20.0


def fake_systemd(path: Path) -> socket.socket:
    """A notify socket as systemd makes one (a path: reachable from the test's namespaces, unlike an abstract name)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(path))
    sock.settimeout(READY_TIMEOUT_S)
    return sock


def wait_for_ready(sock: socket.socket, process: subprocess.Popen[bytes]) -> int:
    """Block until a READY=1 datagram arrives; the pid that sent it (systemd's NotifyAccess=main checks it)."""
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
    assert process.poll() is None, "the service exited"
    assert data.split(b"\n")[0] == b"READY=1", data
    return next(UCRED.unpack(cdata[: UCRED.size])[0] for level, kind, cdata in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)


def no_wait(host: Host, *argv: str) -> subprocess.CompletedProcess[str]:
    """An `l2mesh` command that must work at once (no waiting for a starting daemon)."""
    return host.run("env", "L2MESH_DAEMON_WAIT_S=0", L2MESH, *argv, "--state-dir", str(host.state_dir), check=False)


def test_join_right_after_starting_the_daemon_in_the_background_succeeds(topology: Topology) -> None:
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "bg", "--pool", "10.147.40.0/24").stdout.strip()
    host = topology.add_host("n")
    # `l2mesh daemon & l2mesh join ...`: the join starts while the daemon is still
    # starting (with L2MESH_DAEMON_WAIT_S=0, as before the wait existed, it fails).
    host.daemon = host.popen(L2MESH, "daemon", "--state-dir", str(host.state_dir), "--port", str(host.port), log_name="n-daemon")
    joined = host.l2mesh("join", network_id, "--controller", controller.endpoint, check=False)
    assert joined.returncode == 0, joined.stderr
    assert f"200 join OK {network_id}" in joined.stdout
    assert "Traceback" not in joined.stderr and joined.stderr.count("waiting up to") <= 1
    wait_until(lambda: network_status(host, network_id) in ("REQUESTING", "ACCESS_DENIED"), 10, what="joined")
    controller.ctl("member", "authorize", network_id, host.node_id)
    wait_until(lambda: network_status(host, network_id) == "OK", 10, what="authorized")


def test_daemon_tells_systemd_ready_only_once_status_works(topology: Topology, tmp_path: Path) -> None:
    host = topology.add_host("n")
    systemd = fake_systemd(tmp_path / "notify")
    try:
        host.daemon = host.popen(
            "env", f"NOTIFY_SOCKET={tmp_path / 'notify'}",
            L2MESH, "daemon", "--state-dir", str(host.state_dir), "--port", str(host.port), log_name="n-daemon",
        )
        sender = wait_for_ready(systemd, host.daemon)
        status = no_wait(host, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["id"] == host.node_id
        assert sender == host.daemon.pid  # `ip netns exec` and `env` exec: this is the daemon's own pid
    finally:
        systemd.close()


def test_controller_tells_systemd_ready_only_once_its_admin_api_works(topology: Topology, tmp_path: Path) -> None:
    host = topology.add_host("ctl")
    state_dir = topology.work_dir / "ctl-state"
    systemd = fake_systemd(tmp_path / "notify")
    try:
        process = host.popen(
            "env", f"NOTIFY_SOCKET={tmp_path / 'notify'}",
            L2MESH_CTL, "serve", "--state-dir", str(state_dir), "--listen", "0.0.0.0:9994", log_name="controller",
        )
        controller = Controller(host, state_dir, process=process)
        sender = wait_for_ready(systemd, process)
        assert controller.ctl_json("network", "list") == []
        assert sender == process.pid
    finally:
        systemd.close()
