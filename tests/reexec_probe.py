"""What tests/unit/test_reexec.py's child process reports, run in-process or as the module it re-executes into."""

from __future__ import annotations

import json
import os
import sys


def report() -> None:
    """One JSON line: who this process is and how its interpreter runs."""
    print(json.dumps({"pid": os.getpid(), "optimize": sys.flags.optimize, "xoptions": sys._xoptions,
                      "docstring": report.__doc__ is not None, "argv": sys.argv[1:],
                      "probe_env": os.environ.get("L2MESH_REEXEC_PROBE"), "safe_path": sys.flags.safe_path}))


if __name__ == "__main__":
    sys.argv[:] = sys.argv[1:]  # as l2mesh/cli/daemon_start.py does: the command line of the process that re-executed
    report()
