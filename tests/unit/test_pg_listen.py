"""l2mesh.edge.controller.pg_listen against a real PostgreSQL: what PgStorage commits reaches every listener, once
committed, and a listener whose connection is killed listens again and says so."""

from __future__ import annotations

import psycopg
import pytest
import trio

from l2mesh.controller import admin
from l2mesh.controller.model import Network
from l2mesh.edge.controller import pg_listen
from l2mesh.edge.controller.pg_listen import listen_changes
from l2mesh.edge.controller.pg_storage import CHANGES_CHANNEL, PgStorage
from l2mesh.errors import StateError
from l2mesh.identity import Identity
from tests.pg_server import PgServer

CONTROLLER = Identity.generate()
A = 0x1000000001
WAIT_S = 10.0


class Heard:
    """What a listener was told, with a way to wait for it."""

    def __init__(self) -> None:
        self.changes: list[int] = []
        self.resyncs = 0
        self.event = trio.Event()

    def changed(self, network_id: int) -> None:
        self.changes.append(network_id)
        self.event.set()

    def resynced(self) -> None:
        self.resyncs += 1
        self.event.set()

    async def wait_for(self, predicate: object) -> None:
        with trio.fail_after(WAIT_S):
            while not predicate():  # type: ignore[operator]
                self.event = trio.Event()
                await self.event.wait()


async def in_thread(function: object, *args: object) -> object:
    """Storage calls block (as on the controller's writer thread): off the trio thread."""
    return await trio.to_thread.run_sync(function, *args)  # type: ignore[arg-type]


async def test_committed_changes_reach_every_listener_and_rolled_back_ones_none(pg_url: str) -> None:
    storage = PgStorage(pg_url)
    first, second = Heard(), Heard()
    async with trio.open_nursery() as nursery:
        await nursery.start(listen_changes, pg_url, first.changed)
        await nursery.start(listen_changes, pg_url, second.changed)
        created = await in_thread(lambda: admin.create_network(storage, CONTROLLER.node_id, {"name": "lab", "pools": ["10.147.17.0/24"]}))
        network = created.answer  # type: ignore[attr-defined]
        assert isinstance(network, Network)

        def refused() -> None:
            with pytest.raises(RuntimeError), storage.transaction():
                storage.update_network(network.network_id, {"name": "never"})
                raise RuntimeError("rolled back")

        await in_thread(refused)
        await in_thread(lambda: admin.update_member(storage, network.network_id, A, {"authorized": True}, 1000.0))
        await in_thread(lambda: storage.record_seen([(network.network_id, A, 1001.0)]))
        await first.wait_for(lambda: len(first.changes) >= 3)
        await second.wait_for(lambda: len(second.changes) >= 3)
        await trio.sleep(0.2)  # room for a notification that should not come
        nursery.cancel_scope.cancel()
    assert first.changes == second.changes == [network.network_id] * 3
    storage.close()


async def test_a_listener_whose_connection_is_killed_listens_again_and_resyncs(pg_url: str) -> None:
    heard = Heard()
    storage = PgStorage(pg_url)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: listen_changes(pg_url, heard.changed, on_resync=heard.resynced, task_status=task_status))

        def kill_listeners() -> int:
            with psycopg.connect(pg_url, autocommit=True) as admin_conn:
                row = admin_conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                    (f"LISTEN {CHANGES_CHANNEL}",),
                ).fetchone()
                return int(row[0]) if row else 0

        assert await in_thread(kill_listeners) == 1
        await heard.wait_for(lambda: heard.resyncs == 1)
        created = await in_thread(lambda: admin.create_network(storage, CONTROLLER.node_id, {"name": "lab"}))
        await heard.wait_for(lambda: heard.changes == [created.answer.network_id])  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()
    storage.close()


async def test_a_listener_outlives_a_server_restart_and_resyncs(pg_server: PgServer, pg_url: str) -> None:
    heard = Heard()
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: listen_changes(pg_url, heard.changed, on_resync=heard.resynced, task_status=task_status))
        await in_thread(pg_server.restart, 0.5)  # down long enough for a failed reconnection or two
        await heard.wait_for(lambda: heard.resyncs == 1)
        storage = PgStorage(pg_url)
        created = await in_thread(lambda: admin.create_network(storage, CONTROLLER.node_id, {"name": "lab"}))
        await heard.wait_for(lambda: heard.changes == [created.answer.network_id])  # type: ignore[attr-defined]
        storage.close()
        nursery.cancel_scope.cancel()


async def test_a_payload_that_is_no_network_id_is_dropped_and_counted(pg_url: str) -> None:
    heard = Heard()
    before = pg_listen.dropped["bad_payload"]
    async with trio.open_nursery() as nursery:
        await nursery.start(listen_changes, pg_url, heard.changed)

        def notify(payload: str) -> None:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, payload))

        await in_thread(notify, "not a network id")
        await in_thread(notify, "0a1b2c3d4e000007")
        await heard.wait_for(lambda: heard.changes == [0x0A1B2C3D4E000007])
        nursery.cancel_scope.cancel()
    assert pg_listen.dropped["bad_payload"] == before + 1


async def test_an_unreachable_database_fails_the_start_in_one_line(pg_url: str) -> None:
    with pytest.raises(StateError) as excinfo:
        await listen_changes(pg_url.replace("host=", "host=/nonexistent"), lambda network_id: None)
    assert "cannot connect" in str(excinfo.value) and "\n" not in str(excinfo.value)
