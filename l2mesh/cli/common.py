"""What both CLIs share: state-dir resolution, one-line errors, JSON or rich-table output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from l2mesh.errors import L2meshError

if TYPE_CHECKING:
    from rich.console import Console

STATE_DIR_ENV = "L2MESH_STATE_DIR"


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


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (the usage stays available under --help)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)", exit_code=2)


def add_state_dir_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"state directory (default: ${STATE_DIR_ENV} or {default})",
    )
    parser.set_defaults(_state_dir_default=default)


def endpoint_arg(text: str) -> tuple[str, int]:
    """An argparse type for IP:PORT or [IPv6]:PORT."""
    # Imported on use: most commands take no endpoint and start faster without l2mesh.netconf (~20 ms).
    from l2mesh.netconf import NetconfError, parse_endpoint

    try:
        return parse_endpoint(text)
    except NetconfError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """An argparse type for a count or size of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def resolve_state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir is not None:
        return args.state_dir
    return Path(os.environ.get(STATE_DIR_ENV) or args._state_dir_default)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def print_data(args: argparse.Namespace, data: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """What every listing command prints: the data as JSON with --json, else a table of rows."""
    if getattr(args, "json", False):
        print_json(data)
    else:
        print_table(None, columns, rows)
    return 0


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for column in columns:
        numeric = column.endswith(("ms", "bytes", "MTU", "port"))
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    # Piped output (grep, less, logs) gets every cell whole instead of an 80-column squeeze.
    width = None if sys.stdout.isatty() else 250
    Console(soft_wrap=True, width=width).print(table)


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> NoReturn:
    """Parse argv and run the chosen subcommand (its `func`), with run_main's error handling."""

    def body() -> int:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)

    run_main(body)


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
