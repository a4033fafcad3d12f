"""Fixtures for every test directory: a PostgreSQL server per pytest (xdist) worker, started on first use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg_server import PgServer, PgUnavailable


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One server for this worker's session (each xdist worker its own, on its own socket); skips if PostgreSQL is absent."""
    try:
        server = PgServer().start()
    except PgUnavailable as exc:
        pytest.skip(f"no PostgreSQL for the tests: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A new empty database on the worker's server: its libpq URL."""
    return pg_server.create_database()
