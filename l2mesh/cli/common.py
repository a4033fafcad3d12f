"""What both CLIs share: state-dir resolution, one-line errors, JSON or rich-table output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from l2mesh.cli.exits import fail, run_main

STATE_DIR_ENV = "L2MESH_STATE_DIR"


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


