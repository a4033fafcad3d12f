"""The SQLite change feed (l2mesh.edge.controller.change_feed): another connection's commit is reported within a poll."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from l2mesh.controller import admin
from l2mesh.edge.controller.change_feed import SQLITE_POLL_S, sqlite_path, watch_changes
from l2mesh.edge.controller.sqlite_storage import SqliteStorage
from l2mesh.errors import L2meshError


async def test_a_commit_by_another_connection_is_reported_within_a_poll(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    writer = SqliteStorage(path)
    seen: list[int | None] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_changes, f"sqlite://{path}", seen.append)
        await trio.sleep(3 * SQLITE_POLL_S)
        assert seen == []  # nothing committed: nothing reported
        admin.create_network(writer, 0x0A1B2C3D4E, {"name": "lab"})
        with trio.fail_after(5 * SQLITE_POLL_S):
            while not seen:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert seen == [None]
    writer.close()


def test_database_urls_are_checked_in_one_line() -> None:
    assert sqlite_path("sqlite:///var/lib/l2mesh-ctl/shared.db") == Path("/var/lib/l2mesh-ctl/shared.db")
    for bad in ("sqlite://", "mysql://x", "/var/lib/x.db"):
        with pytest.raises(L2meshError, match="invalid database URL"):
            sqlite_path(bad)
