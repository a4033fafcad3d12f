"""Fixtures shared by the sans-IO control-plane tests.

The controller's tests (test_controller_*.py) run once per storage back-end,
SQLite and PostgreSQL, through storage_url; the other tests that use a
controller run on SQLite only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from l2mesh.controller.storage import Storage
from l2mesh.edge.controller.storage_url import storage_from_url
from tests.unit.harness import World

STORAGE_BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    controller_test = metafunc.module.__name__.rsplit(".", 1)[-1].startswith("test_controller_")
    if controller_test and "storage_backend" in metafunc.fixturenames:
        metafunc.parametrize("storage_backend", STORAGE_BACKENDS, indirect=True)


@pytest.fixture
def storage_backend(request: pytest.FixtureRequest) -> str:
    """The back-end under test: each in turn for the controller's tests, SQLite for the others."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def storage_url(storage_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, empty controller database of the back-end under test: its --db URL."""
    if storage_backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite://{tmp_path / 'controller.db'}"


@pytest.fixture
def storage(storage_url: str) -> Iterator[Storage]:
    storage = storage_from_url(storage_url)
    yield storage
    storage.close()


@pytest.fixture
def world(storage_url: str) -> Iterator[World]:
    """A fake network with one controller on a new database; members are added by the test."""
    world = World()
    world.add_controller(storage_url)
    yield world
    world.close()
