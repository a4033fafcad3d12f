"""The controller's SQLite schema: a database from an earlier version opens, migrated, with every network and member."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from l2mesh.controller.model import Member, Network
from l2mesh.edge.controller import sqlite_storage
from l2mesh.edge.controller.sqlite_storage import SCHEMA_VERSION, SqliteStorage
from l2mesh.errors import StateError
from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.managed_routes import ManagedRoute
from l2mesh.rules import NO_RULES, parse_rules

# Version 1 exactly as l2mesh wrote it before flow rules (issue 13).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created REAL NOT NULL
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
    PRIMARY KEY (network_id, node_id)
);
INSERT INTO meta VALUES ('schema', '1');
"""
CONTROLLER_ID = 0x0A1B2C3D4E
# Above 2**63 as a network id: stored as a negative SQLite integer.
NETWORKS = [make_network_id(CONTROLLER_ID, 7), make_network_id(0xF000000001, 8)]
IDENTITIES = [Identity.generate().public for _ in range(3)]


V1_NETWORKS = [
    Network(NETWORKS[0], "lab", pools=("10.147.17.0/24",), revision=5, created_s=1000.0),
    Network(NETWORKS[1], "plant", routes=(ManagedRoute("10.147.18.0/24"),), mtu_bytes=1400, multicast_limit=8, broadcast=False,
            private=False, revision=2, created_s=1001.0),
]
V1_MEMBERS = [
    Member(NETWORKS[0], IDENTITIES[0].node_id, IDENTITIES[0], authorized=True, ips=("10.147.17.1/24",), name="one",
           created_s=1002.0, last_seen_s=1500.5, endpoint="198.18.1.2:9993"),
    Member(NETWORKS[0], IDENTITIES[1].node_id, IDENTITIES[1], authorized=False, bridge=True, created_s=1003.0),
    Member(NETWORKS[0], 0x0123456789, None, authorized=True, ips=("10.147.17.9/24",), created_s=1004.0),  # pre-authorized
    Member(NETWORKS[1], IDENTITIES[2].node_id, IDENTITIES[2], authorized=True, created_s=1005.0, endpoint="[2001:db8::1]:9993"),
]


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def v1_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of V1_NETWORKS and V1_MEMBERS as version 1 wrote them (booleans as bools: SQLite stores 1/0)."""
    networks = []
    for n in V1_NETWORKS:
        settings = {"pools": list(n.pools), "routes": [r.target for r in n.routes], "mtu": n.mtu_bytes, "multicast_limit": n.multicast_limit,
                    "broadcast": n.broadcast, "private": n.private}
        networks.append((signed(n.network_id), n.name, json.dumps(settings), n.revision, n.created_s))
    members = [
        (signed(m.network_id), m.node_id, m.identity.x25519_public if m.identity else None, m.identity.ed25519_public if m.identity else None,
         m.authorized, m.bridge, json.dumps(list(m.ips)), m.name, m.created_s, m.last_seen_s, m.endpoint)
        for m in V1_MEMBERS
    ]
    return networks, members


def v1_database(path: Path) -> tuple[list[Network], list[Member]]:
    """A version-1 database with two networks and their members, as the old code wrote rows; what they hold."""
    db = sqlite3.connect(str(path))
    db.executescript(SCHEMA_V1)
    network_rows, member_rows = v1_rows()
    db.executemany("INSERT INTO networks VALUES (?, ?, ?, ?, ?)", network_rows)
    db.executemany("INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", member_rows)
    db.commit()
    db.close()
    return V1_NETWORKS, V1_MEMBERS


def schema_of(path: Path) -> int:
    db = sqlite3.connect(str(path))
    try:
        return int(db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0])
    finally:
        db.close()


def test_a_version_1_database_opens_migrated_with_every_network_and_member(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    networks, members = v1_database(path)
    storage = SqliteStorage(path)
    assert schema_of(path) == SCHEMA_VERSION == 5
    assert storage.list_networks() == networks
    assert all(n.rules == NO_RULES for n in storage.list_networks())
    stored = [m for n in networks for m in storage.list_members(n.network_id)]
    assert stored == members
    assert all(m.tags == () for m in stored)
    # The migrated database takes the new fields and keeps them.
    rules = parse_rules("drop tcp dport 22 src-tag guest\n")
    storage.update_network(NETWORKS[0], {"rules": rules})
    storage.save_member(Member(**{**members[0].__dict__, "tags": ("guest",)}), bump_revision=True)
    storage.close()
    reopened = SqliteStorage(path)
    assert reopened.get_network(NETWORKS[0]).rules == rules
    assert reopened.get_network(NETWORKS[0]).revision == 7  # two changes, two revisions
    assert reopened.get_member(NETWORKS[0], members[0].node_id).tags == ("guest",)
    assert len(reopened.list_members(NETWORKS[0])) == 3
    reopened.close()
    assert schema_of(path) == SCHEMA_VERSION


def test_a_fresh_database_and_a_migrated_one_have_the_same_columns(tmp_path: Path) -> None:
    v1_database(tmp_path / "old.db")
    SqliteStorage(tmp_path / "old.db").close()
    SqliteStorage(tmp_path / "new.db").close()

    def columns(path: Path) -> dict[str, list[str]]:
        db = sqlite3.connect(str(path))
        try:
            return {t: [row[1] for row in db.execute(f"PRAGMA table_info({t})")] for t in ("networks", "members", "web_admins", "web_tokens")}
        finally:
            db.close()

    assert columns(tmp_path / "old.db") == columns(tmp_path / "new.db")


def test_a_failed_migration_changes_nothing_and_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "controller.db"
    _, members = v1_database(path)
    broken = (sqlite_storage.MIGRATIONS[1][0], "ALTER TABLE no_such_table ADD COLUMN x TEXT")
    monkeypatch.setitem(sqlite_storage.MIGRATIONS, 1, broken)
    with pytest.raises(StateError) as excinfo:
        SqliteStorage(path)
    assert "\n" not in str(excinfo.value)
    assert schema_of(path) == 1
    monkeypatch.undo()
    storage = SqliteStorage(path)  # the real migration still applies on the untouched database
    assert len([m for n in NETWORKS for m in storage.list_members(n)]) == len(members)
    storage.close()


def test_a_database_from_a_newer_version_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    SqliteStorage(path).close()
    db = sqlite3.connect(str(path))
    db.execute("UPDATE meta SET value='6' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="schema version 6 is newer than this controller's 5"):
        SqliteStorage(path)


def v2_database(path: Path) -> None:
    """A version-2 database as issue 13's l2mesh left it: rules and tags, routes as bare CIDRs, no DNS domain."""
    v1_database(path)
    db = sqlite3.connect(str(path))
    for sql in sqlite_storage.MIGRATIONS[1]:
        db.execute(sql)
    db.execute("UPDATE meta SET value='2' WHERE key='schema'")
    db.execute("UPDATE networks SET rules=? WHERE id=?", ("drop tcp dport 22 src-tag guest\n", signed(NETWORKS[0])))
    db.execute("UPDATE members SET tags=? WHERE name='one'", (json.dumps(["guest"]),))
    db.commit()
    db.close()


def test_a_version_2_database_opens_migrated_with_its_rules_tags_and_routes_and_takes_routes_via_members(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    v2_database(path)
    storage = SqliteStorage(path)
    assert schema_of(path) == SCHEMA_VERSION
    lab, plant = storage.get_network(NETWORKS[0]), storage.get_network(NETWORKS[1])
    assert lab.rules.text == "drop tcp dport 22 src-tag guest\n"
    assert plant.routes == (ManagedRoute("10.147.18.0/24"),)  # a version-2 route: on-link
    assert (lab.dns_domain, lab.effective_dns_domain) == ("", "lab.l2mesh")
    assert [m.tags for m in storage.list_members(NETWORKS[0])][0] == ("guest",)
    routes = (ManagedRoute("0.0.0.0/0", "10.147.17.2"), ManagedRoute("198.19.200.0/24", "10.147.17.3"))
    storage.update_network(NETWORKS[0], {"routes": routes, "dns_domain": "corp.example"})
    storage.close()
    reopened = SqliteStorage(path)
    assert reopened.get_network(NETWORKS[0]).routes == routes
    assert reopened.get_network(NETWORKS[0]).effective_dns_domain == "corp.example"
    assert reopened.get_network(NETWORKS[1]).routes == (ManagedRoute("10.147.18.0/24"),)
    reopened.close()
