"""Run the node daemon under `python -OO`: no docstrings in memory (issue 17: idle RSS).

`l2mesh daemon` replaces its process (os.execv: same PID, same environment
and file descriptors, so systemd, tests and benchmarks stop it as before)
with the same command line under `-OO`, before it imports the daemon's
stack. Docstrings of l2mesh and everything it imports are then never loaded:
about 1.4 MiB of an idle member's resident memory. -OO also drops `assert`
statements; in l2mesh they narrow types for mypy (an Optional known to be
set) and check no input, so nothing the daemon relies on goes with them.

L2MESH_NO_OPTIMIZE=1 keeps the interpreter as started (for a debugger, or
to see an assert fire). -OO loads `*.opt-2.pyc` bytecode: where the
installation cannot be written, PYTHONPYCACHEPREFIX names a cache the
daemon can write (contrib/systemd/l2mesh.service does).
"""

from __future__ import annotations

import os
import sys

NO_OPTIMIZE_ENV = "L2MESH_NO_OPTIMIZE"
OPTIMIZE_LEVEL = 2  # -OO


def optimized_argv() -> list[str] | None:
    """This process's command line again under -OO; None when it runs so already, is told not to, or cannot tell."""
    if sys.flags.optimize >= OPTIMIZE_LEVEL or os.environ.get(NO_OPTIMIZE_ENV, "") not in ("", "0"):
        return None
    if not sys.executable or not sys.orig_argv:
        return None  # embedded: no interpreter to run again
    # orig_argv keeps the interpreter's own options (-X, -W, -u, ...) and how it was started (script, -m, -c).
    # Prepended, -OO makes the level at least 2 whatever PYTHONOPTIMIZE or an -O already there say: no loop.
    return [sys.executable, "-OO", *sys.orig_argv[1:]]


def reexec_optimized() -> None:
    """Replace this process with itself under -OO (returns only when it does not: see optimized_argv)."""
    argv = optimized_argv()
    if argv is None:
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # exec discards what Python still buffers
    try:
        os.execv(argv[0], argv)
    except OSError:
        return  # the interpreter cannot be run again: go on as started, only bigger
