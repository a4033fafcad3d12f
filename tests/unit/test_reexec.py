"""reexec: a process re-executes itself as `python -OO -X no_debug_ranges -P ... -m MODULE ARGV...`, keeping its PID,
its interpreter options and its command line, with the environment it is given; L2MESH_NO_OPTIMIZE=1 opts out.

Each check runs a fresh interpreter: the process replacing itself is the subject.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from l2mesh.edge.reexec import NO_OPTIMIZE_ENV

REPO = Path(__file__).resolve().parents[2]
PROGRAM = (
    "from l2mesh.edge.reexec import reexec_optimized\n"
    "from tests.reexec_probe import report\n"
    "print('started', flush=True)\n"
    "reexec_optimized('tests.reexec_probe', {'L2MESH_REEXEC_PROBE': 'handed over'})\n"
    "report()\n"
)


def run(*options: str, **env: str) -> tuple[int, list[str], dict[str, Any]]:
    """The child's pid as started, the lines it printed before its report, and its report."""
    # -P below drops the working directory from sys.path: the tests package is found through PYTHONPATH.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, *options, "-c", PROGRAM, "one", "two"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path, **env})
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    *lines, last = out.splitlines()
    return process.pid, lines, json.loads(last)


def test_the_process_runs_the_module_optimized_with_its_pid_options_arguments_and_environment() -> None:
    pid, lines, report = run("-X", "l2mesh_probe=1", **{NO_OPTIMIZE_ENV: ""})
    assert lines == ["started"]  # flushed before the exec, not lost; the module, not the program, ran next
    assert report == {"pid": pid, "optimize": 2, "xoptions": {"l2mesh_probe": "1", "no_debug_ranges": True},
                      "docstring": False, "argv": ["one", "two"], "probe_env": "handed over", "safe_path": True}


def test_an_optimize_level_from_the_environment_does_not_make_it_loop() -> None:
    """PYTHONOPTIMIZE=1 alone would stay 1 whatever -O the command line adds below it; -OO goes above."""
    _, lines, report = run(PYTHONOPTIMIZE="1", **{NO_OPTIMIZE_ENV: ""})
    assert lines == ["started"] and report["optimize"] == 2 and report["probe_env"] == "handed over"


def test_already_under_minus_OO_it_goes_on_as_it_is() -> None:
    pid, lines, report = run("-OO", **{NO_OPTIMIZE_ENV: ""})
    assert lines == ["started"] and report["pid"] == pid and report["optimize"] == 2 and report["probe_env"] is None


def test_L2MESH_NO_OPTIMIZE_keeps_the_interpreter_as_started() -> None:
    pid, lines, report = run(**{NO_OPTIMIZE_ENV: "1"})
    assert lines == ["started"]
    assert report == {"pid": pid, "optimize": 0, "xoptions": {}, "docstring": True, "argv": ["one", "two"],
                      "probe_env": None, "safe_path": False}
