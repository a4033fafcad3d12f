"""The PostgreSQL storage's own concerns (its Storage semantics are the controller tests', run on both back-ends):
schema versions and migrations as SQLite's, one writer at a time across instances, durable commits, a lost
connection, and `serve --db URL` choosing and opening the back-end with one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from l2mesh.cli.ctl import main as ctl_main
from l2mesh.controller.model import Member
from l2mesh.edge.controller import sql_storage
from l2mesh.edge.controller.pg_storage import PgStorage
from l2mesh.edge.controller.sql_storage import SCHEMA_VERSION
from l2mesh.edge.controller.sqlite_storage import SqliteStorage
from l2mesh.edge.controller.storage_url import open_storage, storage_from_url
from l2mesh.errors import StateError
from l2mesh.rules import NO_RULES, parse_rules
from tests.pg_server import PgServer
from tests.unit.test_sqlite_migration import NETWORKS, V1_MEMBERS, V1_NETWORKS, v1_rows

# Version 1's tables in PostgreSQL's types (as pg_storage's, less the columns later versions added).
SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE networks (id BIGINT PRIMARY KEY, name TEXT NOT NULL, settings TEXT NOT NULL, revision BIGINT NOT NULL,
                       created DOUBLE PRECISION NOT NULL);
CREATE TABLE members (
    network_id BIGINT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, node_id BIGINT NOT NULL, x25519 BYTEA, ed25519 BYTEA,
    authorized BOOLEAN NOT NULL, bridge BOOLEAN NOT NULL, ips TEXT NOT NULL, name TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION, endpoint TEXT, PRIMARY KEY (network_id, node_id)
);
INSERT INTO meta VALUES ('schema', '1');
"""


def v1_database(url: str) -> None:
    network_rows, member_rows = v1_rows()
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA_V1)
        conn.cursor().executemany("INSERT INTO networks VALUES (%s, %s, %s, %s, %s)", network_rows)
        conn.cursor().executemany("INSERT INTO members VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", member_rows)


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def schema_of(url: str) -> int:
    return int(str(query(url, "SELECT value FROM meta WHERE key='schema'")[0][0]))


def test_a_version_1_database_opens_migrated_with_every_network_and_member(pg_url: str) -> None:
    v1_database(pg_url)
    storage = PgStorage(pg_url)
    assert schema_of(pg_url) == SCHEMA_VERSION == 5
    assert storage.list_networks() == V1_NETWORKS
    assert all(n.rules == NO_RULES and n.dns_domain == "" for n in storage.list_networks())
    assert [m for n in NETWORKS for m in storage.list_members(n)] == V1_MEMBERS
    rules = parse_rules("drop tcp dport 22 src-tag guest\n")
    storage.update_network(NETWORKS[0], {"rules": rules})
    storage.save_member(Member(**{**V1_MEMBERS[0].__dict__, "tags": ("guest",)}), bump_revision=True)
    storage.close()
    reopened = PgStorage(pg_url)
    assert reopened.get_network(NETWORKS[0]).rules == rules
    assert reopened.get_network(NETWORKS[0]).revision == 7
    assert reopened.get_member(NETWORKS[0], V1_MEMBERS[0].node_id).tags == ("guest",)
    reopened.close()


def test_a_fresh_database_and_a_migrated_one_have_the_same_columns(pg_server: PgServer, pg_url: str) -> None:
    fresh_url = pg_server.create_schema()
    v1_database(pg_url)
    PgStorage(pg_url).close()
    PgStorage(fresh_url).close()
    sql = "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema=current_schema() ORDER BY 1, ordinal_position"
    assert query(pg_url, sql) == query(fresh_url, sql)


def test_a_failed_migration_changes_nothing_and_is_one_line(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    v1_database(pg_url)
    monkeypatch.setitem(sql_storage.MIGRATIONS, 2, ("ALTER TABLE no_such_table ADD COLUMN x TEXT",))
    with pytest.raises(StateError) as excinfo:
        PgStorage(pg_url)
    assert "\n" not in str(excinfo.value) and "no_such_table" in str(excinfo.value)
    assert schema_of(pg_url) == 1  # version 1 -> 2 had succeeded, and went back with the rest
    monkeypatch.undo()
    storage = PgStorage(pg_url)
    assert [m for n in NETWORKS for m in storage.list_members(n)] == V1_MEMBERS
    storage.close()


def test_a_database_from_a_newer_version_is_refused_in_one_line(pg_url: str) -> None:
    PgStorage(pg_url).close()
    newer = sql_storage.SCHEMA_VERSION + 1
    query(pg_url, f"UPDATE meta SET value='{newer}' WHERE key='schema' RETURNING key")
    with pytest.raises(StateError, match=f"schema version {newer} is newer than this controller's {sql_storage.SCHEMA_VERSION}"):
        PgStorage(pg_url)


def test_instances_write_one_at_a_time_and_commit_durably(pg_server: PgServer) -> None:
    url = pg_server.create_schema(synchronous_commit="off")  # a session default the storage must override
    first, second = PgStorage(url), PgStorage(url)
    assert first.conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    network = first.create_network(0x0A1B2C3D4E, {"name": "lab"})
    second_done = threading.Event()

    def second_writes() -> None:
        second.update_network(network.network_id, {"name": "second"})
        second_done.set()

    with first.transaction():
        current = first.get_network(network.network_id)
        writer = threading.Thread(target=second_writes)
        writer.start()
        time.sleep(0.3)
        assert not second_done.is_set()  # waits for first's transaction, as a second SQLite writer would
        first.update_network(network.network_id, {"name": f"{current.name}-first"})
    writer.join(10)
    assert second_done.is_set()
    assert (first.get_network(network.network_id).name, first.get_network(network.network_id).revision) == ("second", network.revision + 2)
    first.close()
    second.close()


def test_a_lost_connection_fails_one_call_in_one_line_and_the_next_connects_again(pg_url: str) -> None:
    storage = PgStorage(pg_url)
    network = storage.create_network(0x0A1B2C3D4E, {"name": "lab"})
    pid = storage.conn.info.backend_pid
    query(pg_url, f"SELECT pg_terminate_backend({pid})")
    with pytest.raises(StateError) as excinfo:
        storage.bump_revision(network.network_id)
    assert "\n" not in str(excinfo.value)
    storage.bump_revision(network.network_id)
    assert storage.get_network(network.network_id).revision == network.revision + 1
    storage.close()


def test_the_db_url_chooses_the_back_end(pg_url: str, tmp_path: Path) -> None:
    default = open_storage(None, tmp_path)
    assert isinstance(default, SqliteStorage) and (tmp_path / "controller.db").exists()
    default.close()
    elsewhere = open_storage(f"sqlite://{tmp_path}/other.db", tmp_path / "unused")
    assert isinstance(elsewhere, SqliteStorage) and (tmp_path / "other.db").exists()
    elsewhere.close()
    postgresql = open_storage(pg_url, tmp_path)
    assert isinstance(postgresql, PgStorage)
    postgresql.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/l2mesh", "unknown scheme 'mysql'"),
        ("controller.db", "unknown scheme 'controller.db'"),
        ("sqlite://relative.db", "sqlite:///ABSOLUTE/PATH"),
        ("sqlite:///nonexistent-dir/controller.db", "cannot open controller database"),
        ("postgresql://host/l2mesh?nosuchoption=1", "bad PostgreSQL URL"),
        ("postgresql:///l2mesh?host=/nonexistent", "cannot connect to the PostgreSQL database"),
    ],
)
def test_a_bad_or_unreachable_db_url_is_one_line(url: str, message: str) -> None:
    with pytest.raises(StateError) as excinfo:
        storage_from_url(url)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_serve_with_an_unreachable_database_exits_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ctl_main(["serve", "--state-dir", str(tmp_path), "--db", "postgresql:///l2mesh?host=/nonexistent"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect to the PostgreSQL database" in err and "Traceback" not in err


L2MESH_CTL = str(Path(sys.executable).parent / "l2mesh-ctl")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_with_a_postgresql_url_keeps_its_networks_there(pg_url: str, tmp_path: Path) -> None:
    """The whole `serve --db` path on loopback: a network created through the admin API is a row in PostgreSQL."""
    state_dir = tmp_path / "state"
    command = [L2MESH_CTL, "serve", "--state-dir", str(state_dir), "--db", pg_url,
               "--listen", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", "--api", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (state_dir / "api.json").exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the controller did not start"
            time.sleep(0.05)
        created = subprocess.run([L2MESH_CTL, "network", "create", "plant", "--state-dir", str(state_dir)],
                                 env=env, capture_output=True, text=True, timeout=30)
        assert created.returncode == 0, created.stderr
        network_id = int(created.stdout.strip(), 16)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0
    assert query(pg_url, "SELECT name FROM networks") == [("plant",)]
    storage = PgStorage(pg_url)
    assert storage.get_network(network_id).name == "plant"
    storage.close()
    assert not (state_dir / "controller.db").exists()
