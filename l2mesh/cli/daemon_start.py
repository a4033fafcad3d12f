"""The node daemon's own process: what `l2mesh daemon` re-executes into (l2mesh/edge/reexec.py).

Started as `python -OO -X no_debug_ranges -m l2mesh.cli.daemon_start l2mesh
daemon ARGS...`: the arguments after the module's name are the command line
of `l2mesh daemon` as given (what `ps` shows and error lines are prefixed
with), already parsed and checked there; the options come as JSON in
OPTIONS_ENV. So this process never loads argparse or the CLI's modules
(issue 17: idle RSS).
"""

from __future__ import annotations

# First: what the daemon's dependencies import and never use stays out of the process.
from l2mesh.edge import deferred_imports

deferred_imports.install()

import os
import sys
from typing import NoReturn

from l2mesh.cli.exits import fail, run_main
from l2mesh.edge.node.options import OPTIONS_ENV, DaemonOptions


def main() -> NoReturn:
    sys.argv[:] = sys.argv[1:]  # `l2mesh daemon ...` as started: error lines name `l2mesh`
    text = os.environ.pop(OPTIONS_ENV, None)  # not passed on to what the daemon runs (nft, ip)
    if text is None:
        fail(f"{OPTIONS_ENV} is not set: start the daemon with `l2mesh daemon`")

    def body() -> int:
        options = DaemonOptions.from_json(text)
        from l2mesh.edge.node.daemon import run_daemon

        return run_daemon(options)

    run_main(body)


if __name__ == "__main__":
    main()
