"""Fixtures shared by the sans-IO control-plane tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.harness import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fake network with one controller on a SQLite file in tmp_path; members are added by the test."""
    world = World()
    world.add_controller(tmp_path / "controller.db")
    yield world
    world.close()
