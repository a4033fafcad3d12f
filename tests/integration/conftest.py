"""Fixtures for integration tests: a fresh topology per test (on l2mesh.lab), always torn down; a teardown that leaves anything behind fails the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.topology import Topology, environment_problem

_PROBLEM = environment_problem()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if _PROBLEM:
                item.add_marker(pytest.mark.skip(reason=_PROBLEM))


@pytest.fixture
def topology(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Topology]:
    topo = Topology(tmp_path)
    try:
        yield topo
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for name in sorted(p.stem for p in topo.logs.glob("*.log")):
                print(f"--- {name} ---\n{topo.log_of(name)}")
        topo.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
