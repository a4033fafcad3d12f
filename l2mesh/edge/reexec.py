"""Run the node daemon under `python -OO -X no_debug_ranges`: less in memory (issue 17: idle RSS).

`l2mesh daemon` replaces its process (os.execv: same PID, same environment
and file descriptors, so systemd, tests and benchmarks stop it as before)
with `python OPTIMIZED_OPTIONS -m l2mesh.cli.daemon_start l2mesh daemon ...`,
its options already parsed (l2mesh/edge/node/options.py), before it imports
the daemon's stack:

- -OO: the docstrings of l2mesh and of everything it imports are never
  loaded (1.4 MiB of an idle member's resident memory). It drops `assert`
  statements too; in l2mesh they narrow types for mypy (an Optional known
  to be set) and check no input, so nothing the daemon relies on goes.
- -X no_debug_ranges: code compiled without column positions (0.13 MiB);
  a traceback in the log then names lines without marking columns. Bytecode
  another -OO run compiled with them keeps them.
- a process that starts in l2mesh.cli.daemon_start, not in the CLI proper: no
  argparse, gettext or CLI modules (0.45 MiB).

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


def interpreter_options() -> list[str]:
    """The options this interpreter was started with (-X, -W, -u, ...), without what it runs (script, -m, -c)."""
    # orig_argv is [interpreter, *options, script | -m MODULE | -c CODE, *arguments]; sys.argv is [script or
    # the module's path or '-c', *arguments]: the same length as what follows the options, but for -m/-c's flag.
    options = list(sys.orig_argv[1 : len(sys.orig_argv) - len(sys.argv)])
    if options and options[-1] in ("-m", "-c"):
        options.pop()
    return options


def optimized_argv(module: str) -> list[str] | None:
    """python OPTIMIZED_OPTIONS -m module, with this process's own command line after it (sys.argv, all of it);
    None when this process runs under -OO already, is told not to, or cannot tell."""
    if sys.flags.optimize >= OPTIMIZE_LEVEL or os.environ.get(NO_OPTIMIZE_ENV, "") not in ("", "0"):
        return None
    if not sys.executable or not sys.orig_argv or not sys.argv:
        return None  # embedded: no interpreter to run again
    # Prepended, -OO makes the level at least 2 whatever PYTHONOPTIMIZE or an -O already there say: no loop.
    # -P: -m would put the working directory first on sys.path, where a root daemon must not import from.
    return [sys.executable, *OPTIMIZED_OPTIONS, "-P", *interpreter_options(), "-m", module, *sys.argv]


def reexec_optimized(module: str, environment: dict[str, str]) -> None:
    """Replace this process with `python OPTIMIZED_OPTIONS -m module ARGV...`, environment added to its own.

    module's main takes over: it finds this process's sys.argv after its own name and what it needs
    in environment. Returns only when it does not replace the process (see optimized_argv).
    """
    argv = optimized_argv(module)
    if argv is None:
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # exec discards what Python still buffers
    added = {name: value for name, value in environment.items() if name not in os.environ}
    os.environ.update(environment)
    try:
        os.execv(argv[0], argv)
    except OSError:
        for name in added:
            del os.environ[name]
        return  # the interpreter cannot be run again: go on as started, only bigger
