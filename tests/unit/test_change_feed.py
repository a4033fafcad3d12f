"""The SQLite change feed (l2mesh.edge.controller.change_feed): another connection's commit is reported within a poll."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from l2mesh.controller import admin
from l2mesh.controller.instances import ControllerInstance
from l2mesh.controller.model import Member
from l2mesh.edge.controller.change_feed import SQLITE_POLL_S, watch_changes
from l2mesh.edge.controller.storage_url import sqlite_file
from l2mesh.edge.controller.sqlite_storage import SqliteStorage
from l2mesh.errors import L2meshError

CONTROLLER_ID = 0xFA1B2C3D4E  # network ids above 2**63: stored as negative integers


async def test_a_commit_by_another_connection_is_reported_within_a_poll(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    writer = SqliteStorage(path)
    seen: list[int | None] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_changes, f"sqlite://{path}", seen.append)
        await trio.sleep(3 * SQLITE_POLL_S)
        assert seen == []  # nothing committed: nothing reported
        network = admin.create_network(writer, CONTROLLER_ID, {"name": "lab"}).answer
        assert network is not None
        await until_seen(seen, [network.network_id])
        # A heartbeat changes no network: nothing to reload.
        writer.record_instance(ControllerInstance("a", ("198.18.0.1:9994",), 1.0, 2.0))
        await trio.sleep(3 * SQLITE_POLL_S)
        assert seen == [network.network_id]
        # A member asking to join (no new revision) is a change of its network too (admins list it).
        writer.insert_member(Member(network.network_id, 0x1122334455, created_s=1.0))
        await until_seen(seen, [network.network_id] * 2)
        nursery.cancel_scope.cancel()
    writer.close()


async def until_seen(seen: list[int | None], expected: list[int]) -> None:
    with trio.fail_after(5 * SQLITE_POLL_S):
        while seen != expected:
            await trio.sleep(0.01)


def test_database_urls_are_checked_in_one_line() -> None:
    assert sqlite_file("sqlite:///var/lib/l2mesh-ctl/shared.db") == Path("/var/lib/l2mesh-ctl/shared.db")
    for bad in ("sqlite://", "sqlite:///var/lib/", "mysql://x", "/var/lib/x.db"):
        with pytest.raises(L2meshError, match="bad --db URL"):
            sqlite_file(bad)
