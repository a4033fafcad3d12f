"""The Storage protocol in SQL, shared by the SQLite and PostgreSQL back-ends.

Both keep the same tables (networks, members, and meta with the schema
version), the same rows and the same migrations; a back-end supplies its
connection, its column types (the CREATE statements), how a transaction
begins and ends, and what else a committed change must do (PostgreSQL
announces it to the other controller instances on the same database).
Statements here use `?` placeholders; a back-end that spells them
differently translates them in _execute.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from l2mesh.controller.instances import ControllerInstance
from l2mesh.controller.model import Member, Network, NotFound
from l2mesh.errors import StateError
from l2mesh.identity import PublicIdentity
from l2mesh.ids import NETWORK_NUMBER_MASK, format_network_id, format_node_id, make_network_id
from l2mesh.managed_routes import RouteError, parse_route_spec
from l2mesh.rules.syntax import RuleSyntaxError, parse_rules

log = logging.getLogger("l2mesh.controller.storage")

SCHEMA_VERSION = 5

# Controller instances sharing this database (issue 12): each upserts its row every few
# seconds; members learn the live ones' endpoints from their configs. Not admin data.
# DOUBLE PRECISION, not REAL: PostgreSQL's REAL (4 bytes) would round wall times to minutes;
# SQLite reads either as REAL, so one statement serves both back-ends.
INSTANCES_TABLE = """
CREATE TABLE IF NOT EXISTS controller_instances (
    id TEXT PRIMARY KEY,
    endpoints TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL
);
"""

# The web admin (issue 15): named admins' argon2 password hashes, and login tokens (one-time links and
# sessions), here rather than in one instance's state directory so that every instance on a shared
# database honours a link or a session another one issued, and a logout or a used link ends everywhere.
# A token is stored as its SHA-256 only: the table leaks no usable session.
WEB_TABLES = (
    """CREATE TABLE IF NOT EXISTS web_admins (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS web_tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    admin TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires DOUBLE PRECISION NOT NULL
)""",
)

# From version N to N+1, run in one transaction with the version update. Columns
# are appended (as a fresh schema has them), so rows read the same either way.
# The statements are plain SQL that both back-ends take.
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
    3: (INSTANCES_TABLE,),  # several controller instances on one database (issue 12)
    4: WEB_TABLES,  # the web admin's admins and login tokens (issue 15)
}

Statement = tuple[str, tuple[Any, ...]]
_UNSIGNED64 = 0xFFFFFFFFFFFFFFFF


def signed64(value: int) -> int:
    """SQL integers are signed 64-bit; network ids use all 64 bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


# -- rows <-> model ------------------------------------------------------------------------------------
def network_row(network: Network) -> tuple[Any, ...]:
    settings = {
        "pools": list(network.pools),
        "routes": [route.spec() for route in network.routes],
        "mtu": network.mtu_bytes,
        "multicast_limit": network.multicast_limit,
        "broadcast": network.broadcast,
        "private": network.private,
    }
    return (
        signed64(network.network_id), network.name, json.dumps(settings), network.revision, network.created_s,
        network.rules.text, network.dns_domain,
    )


def network_from_row(row: tuple[Any, ...]) -> Network:
    settings = json.loads(row[2])
    try:
        rules = parse_rules(row[5])
    except RuleSyntaxError as exc:
        # Checked when set; a stored text that no longer parses is a damaged database, not a reason to drop rules.
        raise StateError(f"network {format_network_id(row[0] & _UNSIGNED64)}: stored flow {exc}") from None
    try:
        routes = tuple(parse_route_spec(spec) for spec in settings["routes"])
    except RouteError as exc:
        raise StateError(f"network {format_network_id(row[0] & _UNSIGNED64)}: stored {exc}") from None
    return Network(
        network_id=row[0] & _UNSIGNED64,
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


def member_row(member: Member) -> tuple[Any, ...]:
    return (
        signed64(member.network_id),
        member.node_id,
        member.identity.x25519_public if member.identity else None,
        member.identity.ed25519_public if member.identity else None,
        member.authorized,  # a bool: SQLite stores 1/0, PostgreSQL a boolean
        member.bridge,
        json.dumps(list(member.ips)),
        member.name,
        member.created_s or time.time(),
        member.last_seen_s,
        member.endpoint,
        json.dumps(list(member.tags)),
    )


def member_from_row(row: tuple[Any, ...]) -> Member:
    identity = PublicIdentity(bytes(row[2]), bytes(row[3])) if row[2] is not None else None
    return Member(
        network_id=row[0] & _UNSIGNED64,
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


_BUMP = "UPDATE networks SET revision=revision+1 WHERE id=?"
_INSERT_MEMBER = "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class SqlStorage:
    """Everything but the connection: see the module docstring for what a back-end supplies."""

    _in_transaction = False

    # -- what a back-end supplies -------------------------------------------------------------
    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement; a cursor with rowcount, fetchone() and fetchall()."""
        raise NotImplementedError

    def _begin(self) -> None:
        """Start a transaction that holds the write lock from here on (reads included)."""
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _announce(self, network_id: int) -> None:
        """Inside the transaction that changed this network or its members; nothing by default."""

    def close(self) -> None:
        raise NotImplementedError

    # -- schema ------------------------------------------------------------------------------------
    def _schema_version(self) -> int | None:
        row = self._execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        return int(row[0]) if row is not None else None

    def _init_schema(self, where: str) -> None:
        """After the back-end's CREATE TABLE IF NOT EXISTS: stamp a new database, or migrate an older one."""
        version = self._schema_version()
        if version is None:
            self._execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            return
        if version > SCHEMA_VERSION:
            raise StateError(f"{where}: schema version {version} is newer than this controller's {SCHEMA_VERSION}; upgrade l2mesh")
        if version < 1:
            raise StateError(f"{where}: unknown schema version {version}")
        if version < SCHEMA_VERSION:
            log.info("%s: migrating the schema from version %d to %d", where, version, SCHEMA_VERSION)
        while version < SCHEMA_VERSION:
            statements: list[Statement] = [(sql, ()) for sql in MIGRATIONS[version]]
            statements.append(("UPDATE meta SET value=? WHERE key='schema'", (str(version + 1),)))
            self._write(statements)
            version += 1

    # -- transactions ------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for everything inside; nested calls join the open one."""
        if self._in_transaction:
            yield
            return
        self._begin()
        self._in_transaction = True
        try:
            yield
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._in_transaction = False

    def _write(self, statements: list[Statement], changed: Iterable[int] = ()) -> int:
        """Run statements in one transaction (the caller's, if one is open); the rows the last one changed.

        changed: the networks this write changes (its own row or its members'), announced in the same transaction.
        """
        count = 0
        with self.transaction():
            for sql, params in statements:
                count = self._execute(sql, params).rowcount
            for network_id in sorted(set(changed)):
                self._announce(network_id)
        return count

    # -- networks --------------------------------------------------------------------------------
    def create_network(self, controller_id: int, fields: dict[str, Any]) -> Network:
        with self.transaction():
            # Random, not the lowest free number: a deleted network's id must not come
            # back as another network that an old member would then join unasked.
            used = {row[0] & NETWORK_NUMBER_MASK for row in self._execute("SELECT id FROM networks").fetchall()}
            number = 0
            while number == 0 or number in used:
                number = secrets.randbelow(NETWORK_NUMBER_MASK) + 1
            network = Network(network_id=make_network_id(controller_id, number), created_s=time.time(), **fields)
            self._write([("INSERT INTO networks VALUES (?, ?, ?, ?, ?, ?, ?)", network_row(network))], [network.network_id])
        return network

    def find_network(self, network_id: int) -> Network | None:
        row = self._execute("SELECT * FROM networks WHERE id=?", (signed64(network_id),)).fetchone()
        return network_from_row(row) if row is not None else None

    def get_network(self, network_id: int) -> Network:
        network = self.find_network(network_id)
        if network is None:
            raise NotFound(f"no network {format_network_id(network_id)}")
        return network

    def list_networks(self) -> list[Network]:
        return [network_from_row(r) for r in self._execute("SELECT * FROM networks ORDER BY created").fetchall()]

    def update_network(self, network_id: int, fields: dict[str, Any]) -> Network:
        with self.transaction():
            current = self.get_network(network_id)
            updated = Network(**{**current.__dict__, **fields, "revision": current.revision + 1})
            row = network_row(updated)
            self._write(
                [("UPDATE networks SET name=?, settings=?, revision=?, rules=?, dns_domain=? WHERE id=?", (row[1], row[2], row[3], row[5], row[6], row[0]))],
                [network_id],
            )
        return updated

    def delete_network(self, network_id: int) -> None:
        with self.transaction():
            self.get_network(network_id)
            self._write(
                [
                    ("DELETE FROM members WHERE network_id=?", (signed64(network_id),)),
                    ("DELETE FROM networks WHERE id=?", (signed64(network_id),)),
                ],
                [network_id],
            )

    def bump_revision(self, network_id: int) -> None:
        self._write([(_BUMP, (signed64(network_id),))], [network_id])

    # -- members ---------------------------------------------------------------------------------------
    def find_member(self, network_id: int, node_id: int) -> Member | None:
        row = self._execute("SELECT * FROM members WHERE network_id=? AND node_id=?", (signed64(network_id), node_id)).fetchone()
        return member_from_row(row) if row is not None else None

    def get_member(self, network_id: int, node_id: int) -> Member:
        member = self.find_member(network_id, node_id)
        if member is None:
            raise NotFound(f"no member {format_node_id(node_id)} in network {format_network_id(network_id)}")
        return member

    def list_members(self, network_id: int) -> list[Member]:
        rows = self._execute("SELECT * FROM members WHERE network_id=? ORDER BY created", (signed64(network_id),)).fetchall()
        return [member_from_row(r) for r in rows]

    def save_member(self, member: Member, bump_revision: bool) -> Member:
        statements: list[Statement] = [
            (
                _INSERT_MEMBER + " ON CONFLICT (network_id, node_id) DO UPDATE SET x25519=excluded.x25519, ed25519=excluded.ed25519, "
                "authorized=excluded.authorized, bridge=excluded.bridge, ips=excluded.ips, name=excluded.name, "
                "last_seen=excluded.last_seen, endpoint=excluded.endpoint, tags=excluded.tags",
                member_row(member),
            )
        ]
        if bump_revision:
            statements.append((_BUMP, (signed64(member.network_id),)))
        self._write(statements, [member.network_id])
        return member

    def insert_member(self, member: Member) -> bool:
        with self.transaction():
            inserted = self._write([(_INSERT_MEMBER + " ON CONFLICT (network_id, node_id) DO NOTHING", member_row(member))]) == 1
            if inserted:
                self._announce(member.network_id)
        return inserted

    def bind_identity(self, network_id: int, node_id: int, identity: PublicIdentity) -> bool:
        sql = "UPDATE members SET x25519=?, ed25519=? WHERE network_id=? AND node_id=? AND x25519 IS NULL"
        params = (identity.x25519_public, identity.ed25519_public, signed64(network_id), node_id)
        with self.transaction():
            bound = self._write([(sql, params)]) == 1
            if bound:
                self._announce(network_id)
        return bound

    def set_endpoint(self, network_id: int, node_id: int, endpoint: str) -> None:
        sql = "UPDATE members SET endpoint=? WHERE network_id=? AND node_id=?"
        self._write([(sql, (endpoint, signed64(network_id), node_id))], [network_id])

    def delete_member(self, network_id: int, node_id: int) -> None:
        with self.transaction():
            self.get_member(network_id, node_id)
            self._write(
                [
                    ("DELETE FROM members WHERE network_id=? AND node_id=?", (signed64(network_id), node_id)),
                    (_BUMP, (signed64(network_id),)),
                ],
                [network_id],
            )

    def record_seen(self, seen: list[tuple[int, int, float]]) -> None:
        """Last-seen times: runtime facts, written in batches, not admin changes."""
        self._write(
            [("UPDATE members SET last_seen=? WHERE network_id=? AND node_id=?", (t, signed64(n), m)) for n, m, t in seen],
            [n for n, _, _ in seen],
        )

    # -- controller instances (issue 12) ---------------------------------------------------------------
    def record_instance(self, instance: ControllerInstance) -> None:
        self._write([(
            "INSERT INTO controller_instances VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET endpoints=excluded.endpoints, heartbeat=excluded.heartbeat",
            (instance.instance_id, json.dumps(list(instance.endpoints)), instance.started_s, instance.heartbeat_s),
        )])

    def live_instances(self, heard_since_s: float) -> list[ControllerInstance]:
        rows = self._execute(
            "SELECT id, endpoints, started, heartbeat FROM controller_instances WHERE heartbeat >= ? ORDER BY started, id",
            (heard_since_s,),
        ).fetchall()
        return [ControllerInstance(r[0], tuple(json.loads(r[1])), r[2], r[3]) for r in rows]

    def remove_instances(self, instance_id: str | None, heard_before_s: float) -> None:
        self._write([("DELETE FROM controller_instances WHERE id=? OR heartbeat < ?", (instance_id, heard_before_s))])

    # -- the web admin (issue 15): admins and login tokens, see WEB_TABLES -------------------------------
    def set_web_admin(self, name: str, password_hash: str, now_s: float) -> bool:
        """Add the admin, or give an existing one this password; True if it is new."""
        with self.transaction():
            known = self._execute("SELECT 1 FROM web_admins WHERE name=?", (name,)).fetchone() is not None
            self._write([(
                "INSERT INTO web_admins VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET password_hash=excluded.password_hash",
                (name, password_hash, now_s),
            )])
        return not known

    def web_admin_hash(self, name: str) -> str | None:
        row = self._execute("SELECT password_hash FROM web_admins WHERE name=?", (name,)).fetchone()
        return row[0] if row is not None else None

    def list_web_admins(self) -> list[tuple[str, float]]:
        return [(r[0], r[1]) for r in self._execute("SELECT name, created FROM web_admins ORDER BY name").fetchall()]

    def remove_web_admin(self, name: str) -> bool:
        """The admin and its sessions; False if there was no such admin."""
        with self.transaction():
            self._write([("DELETE FROM web_tokens WHERE admin=?", (name,))])
            return self._write([("DELETE FROM web_admins WHERE name=?", (name,))]) == 1

    def add_web_token(self, token_hash: str, kind: str, admin: str, csrf: str, expires_s: float, now_s: float) -> None:
        """A new login link or session; expired ones go at the same time (nothing else sweeps them)."""
        self._write([
            ("DELETE FROM web_tokens WHERE expires < ?", (now_s,)),
            ("INSERT INTO web_tokens VALUES (?, ?, ?, ?, ?)", (token_hash, kind, admin, csrf, expires_s)),
        ])

    def find_web_token(self, token_hash: str, kind: str, now_s: float) -> tuple[str, str] | None:
        """(admin, csrf) of an unexpired token of this kind."""
        row = self._execute(
            "SELECT admin, csrf FROM web_tokens WHERE token_hash=? AND kind=? AND expires >= ?", (token_hash, kind, now_s)
        ).fetchone()
        return (row[0], row[1]) if row is not None else None

    def take_web_token(self, token_hash: str, kind: str, now_s: float) -> tuple[str, str] | None:
        """find_web_token, and the token is gone: a one-time link works once, on whichever instance."""
        with self.transaction():
            found = self.find_web_token(token_hash, kind, now_s)
            self._write([("DELETE FROM web_tokens WHERE token_hash=?", (token_hash,))])
        return found
