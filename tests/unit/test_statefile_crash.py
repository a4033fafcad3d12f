"""Issue 16 regression: a writer SIGKILLed mid-write leaves its temporary file behind; the next start removes
it (found by the node crash loop, tests/integration/test_crash_loops.py: they piled up, one per unlucky kill)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from l2mesh.edge.node.state_dir import NodeState
from l2mesh.edge.statefile import ensure_state_dir, remove_stale_temporaries

# A child that writes through the real code and SIGKILLs itself at the step before the file would be in place.
_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from l2mesh.edge import statefile
def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)
path = Path(sys.argv[2])
if sys.argv[1] == "atomic":
    os.replace = die
    statefile.atomic_write_bytes(path, b"new")
else:
    os.link = die
    statefile.create_exclusively(path, b"new")
"""


def killed_mid_write(how: str, path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _KILLED_WRITER, how, str(path)], capture_output=True)
    assert result.returncode == -9, result.stderr


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_start_removes_what_writers_killed_mid_write_left_and_keeps_the_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "netconf").mkdir(parents=True)
    (state / "networks.json").write_text("old")
    killed_mid_write("atomic", state / "networks.json")
    killed_mid_write("exclusive", state / "identity.json")
    killed_mid_write("atomic", state / "netconf" / "0123456789abcdef.signed")
    assert len(leftovers(state)) == 2 and len(leftovers(state / "netconf")) == 1
    ensure_state_dir(state)  # every daemon and controller start
    NodeState(state)  # the daemon's, for its subdirectories
    assert leftovers(state) == [] and leftovers(state / "netconf") == []
    assert (state / "networks.json").read_text() == "old"  # the old version stays whole
    assert not (state / "identity.json").exists()


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    ours = tmp_path / f".networks.json.tmp.{os.getpid()}"  # a writer still at work (this process)
    ours.write_text("half")
    unrelated = tmp_path / ".hidden"
    unrelated.write_text("x")
    assert remove_stale_temporaries(tmp_path) == 0
    assert ours.exists() and unrelated.exists()


def test_a_missing_directory_has_nothing_to_remove(tmp_path: Path) -> None:
    assert remove_stale_temporaries(tmp_path / "absent") == 0
