"""The daemon's control socket is root's alone (issue 16): a real daemon in a lab namespace, the `l2mesh`
CLI run as root and as `nobody`. Nobody gets one line and a non-zero exit, whether the directory, the
socket's own mode, or (if an admin widened that by hand) the daemon's peer-credential check stops it;
root is answered.

The interpreter lives under /root here, which nobody may not read, so `setpriv` cannot start the CLI as
nobody: a root process loads the CLI (and the lazily imported modules its error path needs), drops to
nobody, and only then parses its arguments and talks to the daemon, as `l2mesh` run by nobody would.
"""

from __future__ import annotations

import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.topology import L2MESH, Host, Topology, wait_until

NOBODY_UID = NOBODY_GID = 65534
# `l2mesh ARGS...` as nobody (see the module docstring).
AS_NOBODY = (
    sys.executable, "-c",
    "import locale, os, sys\n"
    "from l2mesh.cli import common, exits, node\n"
    "parser = node.build_parser()\n"
    "exits._stderr()\n"
    f"os.setgroups([]); os.setgid({NOBODY_GID}); os.setuid({NOBODY_UID})\n"
    "common.run_parser(parser, sys.argv[1:])\n",
)


@pytest.fixture
def open_state_dir() -> Iterator[Path]:
    """A state directory anyone may pass through (not list): only the socket's own mode guards it then."""
    path = Path(tempfile.mkdtemp(prefix="l2mt-ctl-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_daemon(host: Host, state_dir: Path) -> None:
    host.daemon = host.popen(L2MESH, "daemon", "--state-dir", str(state_dir), "--port", str(host.port), log_name=f"{host.name}-daemon")
    daemon = host.daemon
    wait_until(lambda: (state_dir / "control.sock").exists() or daemon.poll() is not None, 15, what="daemon control socket")
    assert daemon.poll() is None, host.topology.log_of(f"{host.name}-daemon")


def status(host: Host, state_dir: Path, as_nobody: bool = False) -> tuple[int, str, str]:
    cli = AS_NOBODY if as_nobody else (L2MESH,)
    result = host.run("env", "L2MESH_DAEMON_WAIT_S=0", *cli, "status", "--json", "--state-dir", str(state_dir), check=False)
    return result.returncode, result.stdout, result.stderr


def assert_refused(outcome: tuple[int, str, str], says: str) -> None:
    code, stdout, stderr = outcome
    assert code != 0 and stdout == "", outcome
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in stderr, stderr


def test_only_root_can_use_the_control_socket_of_a_running_daemon(topology: Topology, open_state_dir: Path) -> None:
    host = topology.add_host("n")
    start_daemon(host, open_state_dir)
    sock = open_state_dir / "control.sock"
    mode = sock.stat()
    assert stat.S_ISSOCK(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == 0
    code, stdout, _ = status(host, open_state_dir)
    assert code == 0 and '"id"' in stdout
    # The directory lets nobody through: the socket's mode refuses the connection.
    assert_refused(status(host, open_state_dir, as_nobody=True), "permission denied")
    # Widened by hand: the daemon itself refuses a peer that is not root.
    sock.chmod(0o666)
    assert_refused(status(host, open_state_dir, as_nobody=True), "only root may use")
    assert status(host, open_state_dir)[0] == 0


def test_the_default_state_directory_keeps_nobody_away_from_the_socket(topology: Topology) -> None:
    host = topology.add_host("n")
    host.start_daemon()
    assert stat.S_IMODE(host.state_dir.stat().st_mode) == 0o700
    assert_refused(status(host, host.state_dir, as_nobody=True), "permission denied")
    assert status(host, host.state_dir)[0] == 0
