"""Run the node daemon under `python -OO -X no_debug_ranges`: less in memory (issue 17: idle RSS).

`l2mesh daemon` replaces its process (os.execv: same PID, same environment
and file descriptors, so systemd, tests and benchmarks stop it as before)
with the same command line under OPTIMIZED_OPTIONS, before it imports the
daemon's stack:

- -OO: the docstrings of l2mesh and of everything it imports are never
  loaded (1.4 MiB of an idle member's resident memory). It drops `assert`
  statements too; in l2mesh they narrow types for mypy (an Optional known
  to be set) and check no input, so nothing the daemon relies on goes.
- -X no_debug_ranges: code compiled without column positions (0.13 MiB);
  a traceback in the log then names lines without marking columns. Bytecode
  another -OO run compiled with them keeps them.

L2MESH_NO_OPTIMIZE=1 keeps the interpreter as started (for a debugger, or
to see an assert fire). -OO loads `*.opt-2.pyc` bytecode: where the
installation cannot be written, PYTHONPYCACHEPREFIX names a cache the
daemon can write (contrib/systemd/l2mesh.service does).
"""

from __future__ import annotations

import os
import sys

NO_OPTIMIZE_ENV = "L2MESH_NO_OPTIMIZE"
OPTIMIZED_OPTIONS = ("-OO", "-X", "no_debug_ranges")
OPTIMIZE_LEVEL = 2  # -OO


def optimized_argv() -> list[str] | None:
    """This process's command line again under OPTIMIZED_OPTIONS; None when it runs under -OO already, is told not
    to, or cannot tell."""
    if sys.flags.optimize >= OPTIMIZE_LEVEL or os.environ.get(NO_OPTIMIZE_ENV, "") not in ("", "0"):
        return None
    if not sys.executable or not sys.orig_argv:
        return None  # embedded: no interpreter to run again
    # orig_argv keeps the interpreter's own options (-X, -W, -u, ...) and how it was started (script, -m, -c).
    # Prepended, -OO makes the level at least 2 whatever PYTHONOPTIMIZE or an -O already there say: no loop.
    return [sys.executable, *OPTIMIZED_OPTIONS, *sys.orig_argv[1:]]


def reexec_optimized() -> None:
    """Replace this process with itself under OPTIMIZED_OPTIONS (returns only when it does not: see optimized_argv)."""
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
