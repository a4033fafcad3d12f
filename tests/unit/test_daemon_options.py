"""DaemonOptions cross the re-exec as JSON (l2mesh/edge/node/options.py); the daemon's own process refuses anything else
in one line (l2mesh/cli/daemon_start.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from l2mesh.edge.node.options import OPTIONS_ENV, DaemonOptions
from l2mesh.errors import L2meshError
from l2mesh.root_spec import RootSpec


def test_options_come_back_as_they_were_given() -> None:
    options = DaemonOptions(Path("/var/lib/l2mesh"), 9994, [Path("/etc/l2mesh/a.json"), Path("b.json")], False,
                            [RootSpec("198.18.0.1", 9993, 0x1122334455), RootSpec("fd00::1", 443)],
                            port_mapping=False, metrics_listen=("127.0.0.1", 9100))
    assert DaemonOptions.from_json(options.to_json()) == options
    defaults = DaemonOptions(Path("state"))
    assert DaemonOptions.from_json(defaults.to_json()) == defaults


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"state_dir": "s"}', "null",
                                  DaemonOptions(Path("s")).to_json().replace('"port": 9993', '"port": "x"'),
                                  DaemonOptions(Path("s"), roots=[RootSpec("h", 1)]).to_json().replace("h:1", "h:")])
def test_malformed_options_are_one_clear_error(text: str) -> None:
    with pytest.raises(L2meshError, match=f"^(malformed daemon options in {OPTIONS_ENV}|.*root)"):
        DaemonOptions.from_json(text)


def test_the_daemon_process_without_its_options_says_how_to_start_it() -> None:
    environment = {k: v for k, v in os.environ.items() if k != OPTIONS_ENV}
    done = subprocess.run([sys.executable, "-m", "l2mesh.cli.daemon_start", "l2mesh", "daemon"], capture_output=True,
                          text=True, timeout=60, env=environment)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"l2mesh: error: {OPTIONS_ENV} is not set: start the daemon with `l2mesh daemon`"]


def test_the_daemon_process_with_malformed_options_fails_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "l2mesh.cli.daemon_start", "l2mesh", "daemon"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, OPTIONS_ENV: "{not json"})
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"l2mesh: error: malformed daemon options in {OPTIONS_ENV}")
