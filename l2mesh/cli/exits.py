"""How every command ends: its exit code, or one line on stderr and a non-zero exit, never a traceback.

Apart from the rest of the CLI (l2mesh/cli/common.py): the node daemon's own
process (l2mesh/cli/daemon_start.py) ends the same way without loading argparse.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, NoReturn

from l2mesh.errors import L2meshError

if TYPE_CHECKING:
    from rich.console import Console


@cache
def _stderr() -> Console:
    # rich is imported on first use: `l2mesh daemon` goes through this module and must not carry it (4 MiB).
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _prog() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "l2mesh"


def fail(message: str, exit_code: int = 1) -> NoReturn:
    """One red line on stderr and a non-zero exit: how every CLI error ends."""
    from rich.markup import escape

    # Escaped: messages quote user input (paths, names) that may look like rich markup.
    line = escape(message.splitlines()[0] if message else "failed")
    _stderr().print(f"[red]{escape(_prog())}: error:[/red] {line}", markup=True, emoji=False)
    raise SystemExit(exit_code)


def say(message: str) -> None:
    """One plain line on stderr: what the command is doing while the user waits (never data)."""
    _stderr().print(f"{_prog()}: {message}", markup=False, emoji=False)


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def run_main(body: Callable[[], int | None]) -> NoReturn:
    """Run a CLI body: L2meshError and Ctrl-C end in one line, never a traceback."""
    try:
        code = body()
    except L2meshError as exc:
        fail(str(exc))
    except BaseExceptionGroup as group:
        # trio wraps a failing task's error (say, a state dir in use) in a group.
        errors = group.subgroup(lambda e: isinstance(e, (L2meshError, KeyboardInterrupt)))
        if errors is None:
            raise
        first = _first_leaf(errors)
        fail("interrupted" if isinstance(first, KeyboardInterrupt) else str(first), 130 if isinstance(first, KeyboardInterrupt) else 1)
    except KeyboardInterrupt:
        fail("interrupted", exit_code=130)
    except BrokenPipeError:
        raise SystemExit(1)
    raise SystemExit(code or 0)
