"""`l2mesh-ctl`: the controller CLI (serve, networks, members)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from l2mesh import __version__
from l2mesh.cli.common import OneLineArgumentParser, run_main


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="l2mesh-ctl", description="l2mesh network controller")
    parser.add_argument("--version", action="version", version=f"l2mesh-ctl {__version__}")
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    parser = build_parser()
    run_main(lambda: (parser.parse_args(argv), 0)[1])
