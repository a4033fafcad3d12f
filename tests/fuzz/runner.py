"""Runs inputs through targets: valid seeds, hypothesis-generated inputs, then mutants of the seeds.

Per target it counts inputs and their outcomes, and keeps every unhandled
exception as a finding: the first input that raised each distinct one (by
type and the line it came from) is saved as a file that
`python -m tests.fuzz --replay FILE --target NAME` runs again.
"""

from __future__ import annotations

import random
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from tests.fuzz.mutate import Mutator
from tests.fuzz.targets import Target, all_targets

DEFAULT_GENERATED_SHARE = 0.1


@dataclass
class Finding:
    target: str
    error: str  # "TypeName: message"
    where: str  # file:line the exception was raised at
    repro: Path | None
    traceback: str


@dataclass
class TargetReport:
    name: str
    inputs: int = 0
    generated: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    unhandled: int = 0
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def inputs_per_s(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    # The innermost frame in l2mesh is what to fix; else the innermost at all.
    ours = [f for f in frames if "/l2mesh/" in f.filename] or frames
    return f"{ours[-1].filename.rsplit('/l2mesh/', 1)[-1]}:{ours[-1].lineno}" if ours else "?"


class TargetRun:
    """One target's run: feeds inputs, resets its state when due, records outcomes and findings."""

    def __init__(self, target: Target, findings_dir: Path | None) -> None:
        self.target = target
        self.findings_dir = findings_dir
        self.report = TargetReport(target.name)
        self.seeds = target.setup()
        self._since_reset = 0
        self._seen: set[tuple[str, str]] = set()

    def feed(self, data: bytes) -> str:
        target = self.target
        if target.reset_every and self._since_reset >= target.reset_every:
            self.seeds = target.setup()
            self._since_reset = 0
        self._since_reset += 1
        self.report.inputs += 1
        try:
            label = target.run(data)
        except target.handled as exc:
            label = f"refused:{type(exc).__name__}"
        except Exception as exc:  # the whole point: anything else is a finding
            label = "UNHANDLED"
            self._record(data, exc)
            self.seeds = target.setup()  # the state may be half-changed: start clean
            self._since_reset = 0
        self.report.outcomes[label] += 1
        return label

    def _record(self, data: bytes, exc: Exception) -> None:
        self.report.unhandled += 1
        key = (type(exc).__name__, _where(exc))
        if key in self._seen:
            return
        self._seen.add(key)
        repro = None
        if self.findings_dir is not None:
            self.findings_dir.mkdir(parents=True, exist_ok=True)
            repro = self.findings_dir / f"{self.target.name}-{len(self._seen)}.bin"
            repro.write_bytes(data)
            repro.with_suffix(".txt").write_text("".join(traceback.format_exception(exc)))
        self.report.findings.append(
            Finding(self.target.name, f"{type(exc).__name__}: {str(exc)[:200]}", key[1], repro, "".join(traceback.format_exception(exc)))
        )


def run_generated(run: TargetRun, count: int, seed: int | None) -> None:
    """count inputs from the target's hypothesis strategy (derandomized when seed is None)."""
    if count <= 0:
        return

    @settings(max_examples=count, derandomize=seed is None, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(run.target.strategy())
    def drive(data: bytes) -> None:
        run.report.generated += 1
        run.feed(data)

    (drive if seed is None else hypothesis_seed(seed)(drive))()


def run_mutated(run: TargetRun, count: int, seed: int) -> None:
    mutator = Mutator(seed)
    choice = random.Random(seed).choice
    for _ in range(count):
        run.feed(mutator.mutate(choice(run.seeds), run.seeds))


def fuzz_target(target: Target, count: int, seed: int, generated_share: float = DEFAULT_GENERATED_SHARE,
                findings_dir: Path | None = None, derandomize: bool = False) -> TargetReport:
    """count inputs through one target: its seeds as they are, a share from hypothesis, the rest mutated seeds."""
    started = time.perf_counter()
    target_seed = seed ^ zlib.crc32(target.name.encode())
    run = TargetRun(target, findings_dir)
    try:
        for valid in list(run.seeds)[:count]:
            run.feed(valid)
        generated = min(int(count * generated_share), count - run.report.inputs)
        run_generated(run, generated, None if derandomize else target_seed)
        run_mutated(run, count - run.report.inputs, target_seed)
    finally:
        target.close()
    run.report.seconds = time.perf_counter() - started
    return run.report


def share_out(iterations: int, targets: Sequence[Target]) -> list[int]:
    """Inputs per target, by weight, adding up to iterations."""
    total_weight = sum(t.weight for t in targets)
    counts = [int(iterations * t.weight / total_weight) for t in targets]
    for index in range(iterations - sum(counts)):
        counts[index % len(counts)] += 1
    return counts


def fuzz(iterations: int, seed: int, only: Sequence[str] = (), generated_share: float = DEFAULT_GENERATED_SHARE,
         findings_dir: Path | None = None, derandomize: bool = False,
         progress: Callable[[TargetReport], None] | None = None) -> list[TargetReport]:
    """iterations inputs spread over every target (or those whose names start with one of `only`)."""
    targets = [t for t in all_targets() if not only or any(t.name.startswith(prefix) for prefix in only)]
    if not targets:
        raise ValueError(f"no target matches {', '.join(only)}")
    reports = []
    for target, count in zip(targets, share_out(iterations, targets)):
        report = fuzz_target(target, count, seed, generated_share, findings_dir, derandomize)
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports


def replay(target_name: str, data: bytes) -> str:
    """Run one saved input through a fresh target; its outcome (an unhandled exception propagates)."""
    matches = [t for t in all_targets() if t.name == target_name]
    if not matches:
        raise ValueError(f"no target named {target_name}")
    target = matches[0]
    target.setup()
    try:
        try:
            return target.run(data)
        except target.handled as exc:
            return f"refused:{type(exc).__name__}: {exc}"
    finally:
        target.close()
