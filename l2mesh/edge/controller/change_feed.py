"""The change feed: tells this controller instance that the shared database changed, maybe by another instance.

Several instances of one controller share one database (issue 12). Each
must hear of the others' commits at once, to push new configs to the
members connected to it: on_change(network_id) names the network changed,
on_change(None) says only "something changed" (reload everything).

- sqlite:///PATH: SQLite has no notifications; its own read connection polls
  `PRAGMA data_version` every SQLITE_POLL_S, which moves when any other
  connection (this process's writer included) commits. Then a stamp of each
  network (its revision, and its members' count, keys, last-seen times and
  endpoints, summed) says which networks changed: instances' heartbeats
  move data_version every few seconds without changing any network, and a
  reload reads a whole network.
- postgresql://...: LISTEN on the channel every committing change NOTIFYs
  (l2mesh.edge.controller.pg_listen), one call per changed network.

Our own commits come back too; the core compares revisions and pushes
nothing twice (ControllerCore.external_change).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from l2mesh.edge.controller.storage_url import POSTGRESQL_SCHEMES, sqlite_file
from l2mesh.errors import StateError

SQLITE_POLL_S = 0.2
NETWORK_ID_MASK = (1 << 64) - 1  # SQLite stores network ids as signed 64-bit integers

OnChange = Callable[[int | None], None]


async def watch_changes(db_url: str, on_change: OnChange, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Call on_change for every change committed to the database at db_url, until cancelled.

    task_status.started() once watching, so that nothing committed after it is missed.
    """
    if db_url.startswith(POSTGRESQL_SCHEMES):
        # Imported here: psycopg is needed only by those who use PostgreSQL.
        from l2mesh.edge.controller import pg_listen

        # A listener that reconnected may have missed notifications: reload everything then.
        await pg_listen.listen_changes(db_url, on_change, on_resync=lambda: on_change(None), task_status=task_status)
        return
    await _poll_sqlite(sqlite_file(db_url), on_change, task_status)


async def _poll_sqlite(path: Path, on_change: OnChange, task_status: Any) -> None:
    try:
        # Its own connection: data_version ignores the connection's own commits, and ours writes nothing.
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        version = _data_version(db)
        stamps = _network_stamps(db)
    except sqlite3.Error as exc:
        raise StateError(f"cannot watch controller database {path}: {exc}") from None
    task_status.started()
    try:
        while True:
            await trio.sleep(SQLITE_POLL_S)
            try:
                now = await trio.to_thread.run_sync(_data_version, db)
                if now == version:
                    continue
                latest = await trio.to_thread.run_sync(_network_stamps, db)
            except sqlite3.Error:
                continue  # busy or being checkpointed: the next poll sees the change
            version = now
            for network_id in sorted(stamps.keys() | latest.keys()):
                if stamps.get(network_id) != latest.get(network_id):
                    on_change(network_id)
            stamps = latest
    finally:
        db.close()


def _data_version(db: sqlite3.Connection) -> int:
    row = db.execute("PRAGMA data_version").fetchone()
    return int(row[0])


_STAMPS = """
SELECT n.id, n.revision, count(m.node_id), total(m.last_seen), count(m.x25519), total(length(m.endpoint))
FROM networks n LEFT JOIN members m ON m.network_id = n.id GROUP BY n.id
"""


def _network_stamps(db: sqlite3.Connection) -> dict[int, tuple[Any, ...]]:
    """Per network id: what changes when the network or any of its members changes (one read transaction)."""
    return {row[0] & NETWORK_ID_MASK: tuple(row[1:]) for row in db.execute(_STAMPS)}
