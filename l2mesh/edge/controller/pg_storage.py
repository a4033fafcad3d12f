"""The controller's PostgreSQL storage: the Storage protocol for several controller instances on one database.

The queries, rows and migrations are SQLite's (sql_storage.py); this module
holds the connection, PostgreSQL's column types, and two things several
instances need:

- one writer at a time: each transaction first takes a transaction-level
  advisory lock, so an admin change reads, checks and writes with no other
  instance's change in between, as SQLite's BEGIN IMMEDIATE gives one process;
- change notification: a transaction that changes a network or its members
  also runs pg_notify(CHANGES_CHANNEL, <network id in hex>), delivered to
  listeners (pg_listen.py) only if and when it commits.

Durable: synchronous_commit is on for this session whatever the server's
default, so a COMMIT returns once the change is on disk (and on synchronous
standbys), before the writer acknowledges it. A lost connection fails the
call in progress (a StateError, as any storage failure) and the next call
connects again.
"""

from __future__ import annotations

from typing import Any

import psycopg

from l2mesh.edge.controller.sql_storage import INSTANCES_TABLE, WEB_TABLES, SqlStorage
from l2mesh.errors import StateError
from l2mesh.ids import format_network_id

CHANGES_CHANNEL = "l2mesh_changes"
# pg_advisory_xact_lock key that serializes l2mesh's write transactions ("l2mesh" in ASCII).
WRITE_LOCK_KEY = 0x6C326D657368
CONNECT_TIMEOUT_S = 10

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS networks (
        id BIGINT PRIMARY KEY,
        name TEXT NOT NULL,
        settings TEXT NOT NULL,
        revision BIGINT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        rules TEXT NOT NULL DEFAULT '',
        dns_domain TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS members (
        network_id BIGINT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        node_id BIGINT NOT NULL,
        x25519 BYTEA,
        ed25519 BYTEA,
        authorized BOOLEAN NOT NULL,
        bridge BOOLEAN NOT NULL,
        ips TEXT NOT NULL,
        name TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION,
        endpoint TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (network_id, node_id)
    )""",
    INSTANCES_TABLE,
    *WEB_TABLES,
)


def one_line(exc: BaseException) -> str:
    """libpq's messages run over several lines (hints, "Is the server running..."): the first says what failed."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """An autocommit connection (transactions are explicit), or a one-line StateError."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)
    except psycopg.ProgrammingError as exc:  # a malformed URL
        raise StateError(f"bad PostgreSQL URL: {one_line(exc)}") from None
    except psycopg.Error as exc:
        raise StateError(f"cannot connect to the PostgreSQL database: {one_line(exc)}") from None


class PgStorage(SqlStorage):
    def __init__(self, url: str) -> None:
        self.url = url
        self._announcements: set[int] = set()  # networks this transaction changed, notified with its COMMIT
        self.conn = self._connect()
        where = f"PostgreSQL database {self.conn.info.dbname}"
        try:
            with self.transaction():  # the write lock: two instances starting on a new database create it once
                for statement in _SCHEMA:
                    self._execute(statement)
                self._init_schema(where)
        except psycopg.Error as exc:
            self.conn.close()
            raise StateError(f"cannot open the {where}: {one_line(exc)}") from None
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.url)
        try:
            conn.execute("SET synchronous_commit = on")
            conn.execute("SET client_min_messages = warning")  # no NOTICEs for tables that already exist
        except psycopg.Error as exc:
            conn.close()
            raise StateError(f"PostgreSQL: {one_line(exc)}") from None
        return conn

    def close(self) -> None:
        self.conn.close()

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> psycopg.Cursor[Any]:
        if self.conn.closed and not self._in_transaction:
            self.conn = self._connect()  # the last call lost the connection
        try:
            # `?` is the shared statements' placeholder; none of them has a literal `%` or `?`.
            return self.conn.execute(sql.replace("?", "%s"), params)
        except psycopg.OperationalError as exc:
            raise StateError(f"PostgreSQL: {one_line(exc)}") from None

    # A transaction's round trips: one to begin and lock, one per statement, one to notify and commit
    # (statements without parameters go together, as one simple query).
    def _begin(self) -> None:
        self._announcements.clear()
        self._execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")

    def _commit(self) -> None:
        # Payloads are 16 hex digits (format_network_id), so they are safe as literals.
        notify = "".join(f"SELECT pg_notify('{CHANGES_CHANNEL}', '{format_network_id(n)}'); " for n in sorted(self._announcements))
        self._announcements.clear()
        self._execute(notify + "COMMIT")

    def _rollback(self) -> None:
        self._announcements.clear()
        try:
            self.conn.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection is gone, and the transaction with it

    def _announce(self, network_id: int) -> None:
        self._announcements.add(network_id)
