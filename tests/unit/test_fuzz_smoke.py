"""The fuzz run of `make test`: 20,000 inputs over every target (tests/fuzz), deterministic, no unhandled exception.

`make fuzz` runs 10^6 with the same code. Hypothesis is derandomized and
the mutator seeded, so every run makes the same choices; only the keys the
worlds generate differ (the saved repro file holds the exact input).
"""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.mutate import Mutator
from tests.fuzz.runner import fuzz
from tests.fuzz.targets import all_targets

SMOKE_INPUTS = 20_000
SMOKE_SEED = 16


def test_every_target_takes_its_share_of_20k_inputs_without_an_unhandled_exception(tmp_path: Path) -> None:
    reports = fuzz(SMOKE_INPUTS, SMOKE_SEED, findings_dir=tmp_path, derandomize=True)
    assert sum(r.inputs for r in reports) == SMOKE_INPUTS
    assert {r.name for r in reports} == {t.name for t in all_targets()}
    findings = [f"{f.target}: {f.error} at {f.where}\n{f.traceback}" for r in reports for f in r.findings]
    assert not findings, "\n".join(findings)
    for report in reports:
        # A target whose every input ends the same way tests one branch, not a parser.
        assert len(report.outcomes) >= 2, (report.name, report.outcomes)
        assert report.generated > 0, report.name


def test_the_mutator_is_deterministic_and_changes_its_input() -> None:
    seeds = [b"\x01\x02\x03\x04" * 8, b'{"a": [1, 2, {"b": "c"}]}']
    one, other = Mutator(5), Mutator(5)
    first = [one.mutate(seed, seeds) for seed in seeds * 50]
    again = [other.mutate(seed, seeds) for seed in seeds * 50]
    assert first == again
    assert sum(mutant not in seeds for mutant in first) > 90
