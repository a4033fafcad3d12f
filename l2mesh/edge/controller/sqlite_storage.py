"""The controller's SQLite storage (the Storage protocol of l2mesh.controller.storage).

SQLite in WAL mode with synchronous=FULL; each admin change is one
transaction committed before the caller acknowledges it, so a SIGKILL at
any moment loses nothing that was acknowledged. Each fsync takes
milliseconds, so only the controller's storage writer thread calls this,
never the reactor thread that carries packets. Other back-ends (PostgreSQL
for several controller instances) implement the same Storage protocol.

A database from an older schema version is migrated when opened, in one
transaction, keeping every network and member (MIGRATIONS).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from l2mesh.controller.instances import ControllerInstance
from l2mesh.controller.model import Member, Network, NotFound
from l2mesh.errors import StateError
from l2mesh.rules.syntax import RuleSyntaxError, parse_rules
from l2mesh.identity import PublicIdentity
from l2mesh.ids import NETWORK_NUMBER_MASK, format_network_id, format_node_id, make_network_id
from l2mesh.managed_routes import RouteError, parse_route_spec

SCHEMA_VERSION = 4
DATABASE_FILE = "controller.db"
BUSY_TIMEOUT_MS = 10_000


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
# Controller instances sharing this database (issue 12): each upserts its row every few
# seconds; members learn the live ones' endpoints from their configs. Not admin data.
# DOUBLE PRECISION, not REAL: PostgreSQL's REAL (4 bytes) would round wall times to minutes;
# SQLite reads either as REAL, so one statement serves both back-ends.
_INSTANCES_TABLE = """
CREATE TABLE IF NOT EXISTS controller_instances (
    id TEXT PRIMARY KEY,
    endpoints TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL
);
"""
# From version N to N+1, run in one transaction with the version update. Columns
# are appended (as a fresh _SCHEMA has them), so rows read the same either way.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (  # flow rules (issue 13): a network's rules text, a member's tags
        "ALTER TABLE networks ADD COLUMN rules TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE members ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
    ),
    # Routes and names (issue 14): a network's DNS domain ('' = `<name>.l2mesh`). Routes stay in
    # settings, now as CIDR[@VIA] texts; the CIDRs version 2 stored are on-link routes in that form.
    # The version bump itself matters: an older controller refuses this database rather than
    # rewriting settings without the gateways it cannot read.
    2: ("ALTER TABLE networks ADD COLUMN dns_domain TEXT NOT NULL DEFAULT ''",),
    3: (_INSTANCES_TABLE,),  # several controller instances on one database (issue 12)
}


class SqliteStorage:
    def __init__(self, path: Path) -> None:
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            # Several controller processes may share the file: wait for each other's write locks.
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA + _INSTANCES_TABLE)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            self._in_transaction = False
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            else:
                self._migrate(path, int(row[0]))
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open controller database {path}: {exc}") from None

    def _migrate(self, path: Path, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StateError(f"{path}: schema version {version} is newer than this controller's {SCHEMA_VERSION}; upgrade l2mesh")
        if version < 1:
            raise StateError(f"{path}: unknown schema version {version}")
        while version < SCHEMA_VERSION:
            statements: list[tuple[str, tuple[Any, ...]]] = [(sql, ()) for sql in MIGRATIONS[version]]
            statements.append(("UPDATE meta SET value=? WHERE key='schema'", (str(version + 1),)))
            self._write(statements)
            version += 1

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for everything inside (reads included: BEGIN IMMEDIATE holds the write lock)."""
        if self._in_transaction:
            yield
            return
        cursor = self.db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> int:
        """Run statements in one transaction (the caller's, if one is open); the rows the last one changed."""
        changed = 0
        with self.transaction():
            cursor = self.db.cursor()
            for sql, params in statements:
                changed = cursor.execute(sql, params).rowcount
        return changed

    # -- networks --------------------------------------------------------------------------------
    def create_network(self, controller_id: int, fields: dict[str, Any]) -> Network:
        # Random, not the lowest free number: a deleted network's id must not come
        # back as another network that an old member would then join unasked.
        used = {row[0] & NETWORK_NUMBER_MASK for row in self.db.execute("SELECT id FROM networks")}
        number = 0
        while number == 0 or number in used:
            number = secrets.randbelow(NETWORK_NUMBER_MASK) + 1
        network = Network(network_id=make_network_id(controller_id, number), created_s=time.time(), **fields)
        self._write([("INSERT INTO networks VALUES (?, ?, ?, ?, ?, ?, ?)", self._network_row(network))])
        return network

    @staticmethod
    def _network_row(network: Network) -> tuple[Any, ...]:
        settings = {
            "pools": list(network.pools),
            "routes": [route.spec() for route in network.routes],
            "mtu": network.mtu_bytes,
            "multicast_limit": network.multicast_limit,
            "broadcast": network.broadcast,
            "private": network.private,
        }
        return (
            _signed64(network.network_id), network.name, json.dumps(settings), network.revision, network.created_s,
            network.rules.text, network.dns_domain,
        )

    @staticmethod
    def _network_from_row(row: tuple[Any, ...]) -> Network:
        settings = json.loads(row[2])
        try:
            rules = parse_rules(row[5])
        except RuleSyntaxError as exc:
            # Checked when set; a stored text that no longer parses is a damaged database, not a reason to drop rules.
            raise StateError(f"network {format_network_id(row[0] & 0xFFFFFFFFFFFFFFFF)}: stored flow {exc}") from None
        try:
            routes = tuple(parse_route_spec(spec) for spec in settings["routes"])
        except RouteError as exc:
            raise StateError(f"network {format_network_id(row[0] & 0xFFFFFFFFFFFFFFFF)}: stored {exc}") from None
        return Network(
            network_id=row[0] & 0xFFFFFFFFFFFFFFFF,
            name=row[1],
            pools=tuple(settings["pools"]),
            routes=routes,
            mtu_bytes=settings["mtu"],
            multicast_limit=settings["multicast_limit"],
            broadcast=settings["broadcast"],
            private=settings["private"],
            revision=row[3],
            created_s=row[4],
            rules=rules,
            dns_domain=row[6],
        )

    def find_network(self, network_id: int) -> Network | None:
        row = self.db.execute("SELECT * FROM networks WHERE id=?", (_signed64(network_id),)).fetchone()
        return self._network_from_row(row) if row is not None else None

    def get_network(self, network_id: int) -> Network:
        network = self.find_network(network_id)
        if network is None:
            raise NotFound(f"no network {format_network_id(network_id)}")
        return network

    def list_networks(self) -> list[Network]:
        return [self._network_from_row(r) for r in self.db.execute("SELECT * FROM networks ORDER BY created")]

    def update_network(self, network_id: int, fields: dict[str, Any]) -> Network:
        current = self.get_network(network_id)
        updated = Network(**{**current.__dict__, **fields, "revision": current.revision + 1})
        row = self._network_row(updated)
        self._write([(
            "UPDATE networks SET name=?, settings=?, revision=?, rules=?, dns_domain=? WHERE id=?",
            (row[1], row[2], row[3], row[5], row[6], row[0]),
        )])
        return updated

    def delete_network(self, network_id: int) -> None:
        self.get_network(network_id)
        self._write(
            [
                ("DELETE FROM members WHERE network_id=?", (_signed64(network_id),)),
                ("DELETE FROM networks WHERE id=?", (_signed64(network_id),)),
            ]
        )

    def bump_revision(self, network_id: int) -> None:
        self._write([("UPDATE networks SET revision=revision+1 WHERE id=?", (_signed64(network_id),))])

    # -- members ---------------------------------------------------------------------------------------
    @staticmethod
    def _member_from_row(row: tuple[Any, ...]) -> Member:
        identity = PublicIdentity(bytes(row[2]), bytes(row[3])) if row[2] is not None else None
        return Member(
            network_id=row[0] & 0xFFFFFFFFFFFFFFFF,
            node_id=row[1],
            identity=identity,
            authorized=bool(row[4]),
            bridge=bool(row[5]),
            ips=tuple(json.loads(row[6])),
            name=row[7],
            created_s=row[8],
            last_seen_s=row[9],
            endpoint=row[10],
            tags=tuple(json.loads(row[11])),
        )

    def find_member(self, network_id: int, node_id: int) -> Member | None:
        row = self.db.execute(
            "SELECT * FROM members WHERE network_id=? AND node_id=?", (_signed64(network_id), node_id)
        ).fetchone()
        return self._member_from_row(row) if row is not None else None

    def get_member(self, network_id: int, node_id: int) -> Member:
        member = self.find_member(network_id, node_id)
        if member is None:
            raise NotFound(f"no member {format_node_id(node_id)} in network {format_network_id(network_id)}")
        return member

    def list_members(self, network_id: int) -> list[Member]:
        rows = self.db.execute("SELECT * FROM members WHERE network_id=? ORDER BY created", (_signed64(network_id),))
        return [self._member_from_row(r) for r in rows]

    @staticmethod
    def _member_row(member: Member) -> tuple[Any, ...]:
        return (
            _signed64(member.network_id),
            member.node_id,
            member.identity.x25519_public if member.identity else None,
            member.identity.ed25519_public if member.identity else None,
            int(member.authorized),
            int(member.bridge),
            json.dumps(list(member.ips)),
            member.name,
            member.created_s or time.time(),
            member.last_seen_s,
            member.endpoint,
            json.dumps(list(member.tags)),
        )

    def save_member(self, member: Member, bump_revision: bool) -> Member:
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (network_id, node_id) DO UPDATE SET x25519=excluded.x25519, ed25519=excluded.ed25519, "
                "authorized=excluded.authorized, bridge=excluded.bridge, ips=excluded.ips, name=excluded.name, "
                "last_seen=excluded.last_seen, endpoint=excluded.endpoint, tags=excluded.tags",
                self._member_row(member),
            )
        ]
        if bump_revision:
            statements.append(("UPDATE networks SET revision=revision+1 WHERE id=?", (_signed64(member.network_id),)))
        self._write(statements)
        return member

    def insert_member(self, member: Member) -> bool:
        sql = "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (network_id, node_id) DO NOTHING"
        return self._write([(sql, self._member_row(member))]) == 1

    def bind_identity(self, network_id: int, node_id: int, identity: PublicIdentity) -> bool:
        sql = "UPDATE members SET x25519=?, ed25519=? WHERE network_id=? AND node_id=? AND x25519 IS NULL"
        params = (identity.x25519_public, identity.ed25519_public, _signed64(network_id), node_id)
        return self._write([(sql, params)]) == 1

    def set_endpoint(self, network_id: int, node_id: int, endpoint: str) -> None:
        self._write([("UPDATE members SET endpoint=? WHERE network_id=? AND node_id=?", (endpoint, _signed64(network_id), node_id))])

    def delete_member(self, network_id: int, node_id: int) -> None:
        self.get_member(network_id, node_id)
        self._write(
            [
                ("DELETE FROM members WHERE network_id=? AND node_id=?", (_signed64(network_id), node_id)),
                ("UPDATE networks SET revision=revision+1 WHERE id=?", (_signed64(network_id),)),
            ]
        )

    def record_seen(self, seen: list[tuple[int, int, float]]) -> None:
        """Last-seen times: runtime facts, written in batches, not admin changes."""
        self._write(
            [("UPDATE members SET last_seen=? WHERE network_id=? AND node_id=?", (t, _signed64(n), m)) for n, m, t in seen]
        )

    # -- controller instances (issue 12) ---------------------------------------------------------------
    def record_instance(self, instance: ControllerInstance) -> None:
        self._write([(
            "INSERT INTO controller_instances VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET endpoints=excluded.endpoints, heartbeat=excluded.heartbeat",
            (instance.instance_id, json.dumps(list(instance.endpoints)), instance.started_s, instance.heartbeat_s),
        )])

    def live_instances(self, heard_since_s: float) -> list[ControllerInstance]:
        rows = self.db.execute(
            "SELECT id, endpoints, started, heartbeat FROM controller_instances WHERE heartbeat >= ? ORDER BY started, id",
            (heard_since_s,),
        )
        return [ControllerInstance(r[0], tuple(json.loads(r[1])), r[2], r[3]) for r in rows]

    def remove_instances(self, instance_id: str | None, heard_before_s: float) -> None:
        self._write([("DELETE FROM controller_instances WHERE id=? OR heartbeat < ?", (instance_id, heard_before_s))])


def _signed64(value: int) -> int:
    """SQLite integers are signed 64-bit; network ids use all 64 bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def open_storage(state_dir: Path) -> SqliteStorage:
    return SqliteStorage(state_dir / DATABASE_FILE)
