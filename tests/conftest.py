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
    """A new empty schema on the worker's server: the libpq URL of a session in it."""
    return pg_server.create_schema()
