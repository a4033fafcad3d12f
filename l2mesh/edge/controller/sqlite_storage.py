"""The controller's SQLite storage (the Storage protocol of l2mesh.controller.storage).

SQLite in WAL mode with synchronous=FULL; each admin change is one
transaction committed before the caller acknowledges it, so a SIGKILL at
any moment loses nothing that was acknowledged. Each fsync takes
milliseconds, so only the controller's storage writer thread calls this,
never the reactor thread that carries packets. The queries, rows and
migrations are shared with the PostgreSQL back-end (sql_storage.py); this
module holds the connection and SQLite's column types.

A database from an older schema version is migrated when opened, one
transaction per version, keeping every network and member (MIGRATIONS).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from l2mesh.edge.controller.sql_storage import INSTANCES_TABLE, MIGRATIONS, SCHEMA_VERSION, WEB_TABLES, SqlStorage
from l2mesh.errors import StateError

__all__ = ["DATABASE_FILE", "MIGRATIONS", "SCHEMA_VERSION", "SqliteStorage"]

DATABASE_FILE = "controller.db"
BUSY_TIMEOUT_MS = 10_000  # several controller instances may share the file: wait for the other's write lock


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created REAL NOT NULL,
    rules TEXT NOT NULL DEFAULT '',
    dns_domain TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS members (
    network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    node_id INTEGER NOT NULL,
    x25519 BLOB,
    ed25519 BLOB,
    authorized INTEGER NOT NULL,
    bridge INTEGER NOT NULL,
    ips TEXT NOT NULL,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL,
    endpoint TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (network_id, node_id)
);
"""


class SqliteStorage(SqlStorage):
    def __init__(self, path: Path) -> None:
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA + INSTANCES_TABLE + "".join(t + ";\n" for t in WEB_TABLES))
            self._init_schema(str(path))
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open controller database {path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def _begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")  # the write lock now: what is read inside is what gets written

    def _commit(self) -> None:
        self.db.execute("COMMIT")

    def _rollback(self) -> None:
        self.db.execute("ROLLBACK")


