"""`python -m tests.fuzz --iterations N --seed S`: the fuzz run as a table; exit 1 on any unhandled exception."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.fuzz.runner import DEFAULT_GENERATED_SHARE, TargetReport, fuzz, replay


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--iterations", type=int, default=100_000, help="inputs in all, spread over the targets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", default="", help="comma-separated name prefixes (default: every target)")
    parser.add_argument("--generated-share", type=float, default=DEFAULT_GENERATED_SHARE,
                        help="share of each target's inputs drawn from its hypothesis strategy")
    parser.add_argument("--findings-dir", type=Path, default=Path("fuzz-findings"), help="where repro files go")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    parser.add_argument("--replay", type=Path, help="run one saved input (with --target) and print its outcome")
    parser.add_argument("--target", help="the target --replay runs")
    args = parser.parse_args(argv)
    if args.iterations < 1 or not 0 <= args.generated_share <= 1:
        parser.error("--iterations must be positive and --generated-share within 0..1")
    if args.replay is not None and not args.target:
        parser.error("--replay needs --target")
    return args


def table(reports: list[TargetReport], seconds: float) -> Table:
    view = Table(title=f"fuzz: {sum(r.inputs for r in reports):,} inputs in {seconds:.0f} s")
    for column in ("target", "inputs", "generated", "outcomes", "unhandled", "inputs/s", "first repro"):
        view.add_column(column, justify="left" if column in ("target", "first repro") else "right")
    for report in reports:
        first = report.findings[0].repro if report.findings else None
        view.add_row(report.name, f"{report.inputs:,}", f"{report.generated:,}", str(len(report.outcomes)),
                     f"[red]{report.unhandled}[/red]" if report.unhandled else "0", f"{report.inputs_per_s:,.0f}",
                     str(first) if first else "")
    return view


def as_json(reports: list[TargetReport], seconds: float) -> dict[str, object]:
    return {
        "seconds": round(seconds, 1),
        "inputs": sum(r.inputs for r in reports),
        "unhandled": sum(r.unhandled for r in reports),
        "targets": [
            {"name": r.name, "inputs": r.inputs, "generated": r.generated, "outcomes": dict(r.outcomes.most_common()),
             "unhandled": r.unhandled, "inputs_per_s": round(r.inputs_per_s),
             "findings": [{"error": f.error, "where": f.where, "repro": str(f.repro) if f.repro else None} for f in r.findings]}
            for r in reports
        ],
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    if args.replay is not None:
        try:
            print(replay(args.target, args.replay.read_bytes()))
        except (OSError, ValueError) as exc:
            errors.print(f"[red]fuzz: {exc}[/red]")
            return 1
        return 0
    started = time.perf_counter()
    only = [name for name in args.targets.split(",") if name]

    def progress(report: TargetReport) -> None:
        if not args.json:
            errors.print(f"{report.name}: {report.inputs:,} inputs, {report.unhandled} unhandled, {report.seconds:.1f} s")

    try:
        reports = fuzz(args.iterations, args.seed, only, args.generated_share, args.findings_dir, progress=progress)
    except ValueError as exc:
        errors.print(f"[red]fuzz: {exc}[/red]")
        return 1
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps(as_json(reports, seconds), indent=2))
    else:
        console.print(table(reports, seconds))
        for report in reports:
            for finding in report.findings:
                errors.print(f"[red]{finding.target}[/red]: {finding.error} at {finding.where} (repro {finding.repro})")
    return 1 if any(r.unhandled for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
