"""reexec: a process re-executes itself under -OO -X no_debug_ranges, keeping its PID and interpreter options;
L2MESH_NO_OPTIMIZE=1 opts out.

Each check runs a fresh interpreter: the process replacing itself is the subject.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from l2mesh.edge.reexec import NO_OPTIMIZE_ENV

PROGRAM = (
    "import json, os, sys\n"
    "from l2mesh.edge.reexec import reexec_optimized\n"
    "print('started', flush=True)\n"
    "reexec_optimized()\n"
    "print(json.dumps({'pid': os.getpid(), 'optimize': sys.flags.optimize, 'xoptions': sys._xoptions,\n"
    "                  'docstring': reexec_optimized.__doc__ is not None}))\n"
)


def run(*options: str, **env: str) -> tuple[int, list[str]]:
    """The child's pid as started, and the lines it printed."""
    process = subprocess.Popen([sys.executable, *options, "-c", PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, **env})
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return process.pid, out.splitlines()


def test_the_process_runs_again_optimized_with_its_pid_and_options() -> None:
    pid, lines = run("-X", "l2mesh_probe=1", **{NO_OPTIMIZE_ENV: ""})
    # 'started' twice: once before the exec (flushed, not lost), once by the program run again.
    assert lines[:2] == ["started", "started"]
    assert json.loads(lines[2]) == {"pid": pid, "optimize": 2, "xoptions": {"l2mesh_probe": "1", "no_debug_ranges": True},
                                    "docstring": False}


def test_an_optimize_level_from_the_environment_does_not_make_it_loop() -> None:
    """PYTHONOPTIMIZE=1 alone would stay 1 whatever -O the command line adds below it; -OO goes above."""
    _, lines = run(PYTHONOPTIMIZE="1", **{NO_OPTIMIZE_ENV: ""})
    assert lines[:2] == ["started", "started"] and json.loads(lines[2])["optimize"] == 2


def test_already_under_minus_OO_it_goes_on_as_it_is() -> None:
    _, lines = run("-OO", **{NO_OPTIMIZE_ENV: ""})
    assert lines[0] == "started" and json.loads(lines[1])["optimize"] == 2


def test_L2MESH_NO_OPTIMIZE_keeps_the_interpreter_as_started() -> None:
    pid, lines = run(**{NO_OPTIMIZE_ENV: "1"})
    assert lines[0] == "started"
    assert json.loads(lines[1]) == {"pid": pid, "optimize": 0, "xoptions": {}, "docstring": True}
