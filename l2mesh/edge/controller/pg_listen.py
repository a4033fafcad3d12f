"""Changes other controller instances commit to a shared PostgreSQL database, as they commit them.

PgStorage runs pg_notify(CHANGES_CHANNEL, <network id, 16 hex digits>) in
every transaction that changes a network or its members; PostgreSQL delivers
it to every session that LISTENs, once the transaction commits (never for
one rolled back). listen_changes() holds one such session for a trio task.

psycopg is not trio-native: connecting (which blocks) runs in a worker
thread, and the listening itself waits for the socket with
trio.lowlevel.wait_readable, then lets libpq read what arrived without
blocking. A lost connection is made again, with backoff; notifications sent
meanwhile are lost, so on_resync (if given) is then called: the caller
rereads what it holds instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import trio

from l2mesh.edge.controller.pg_storage import CHANGES_CHANNEL, connect, one_line
from l2mesh.errors import InvalidId, StateError
from l2mesh.ids import parse_network_id

log = logging.getLogger("l2mesh.controller.pg_listen")

RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0
# A TCP connection to a database host that vanished (no FIN, no RST) is noticed within about 20 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 5, "keepalives_count": 3}

# Notifications dropped, by reason: a payload that is no network id (someone else's NOTIFY on the channel).
dropped: Counter[str] = Counter()


def _listening_connection(url: str, deliver: Callable[[psycopg.Notify], None]) -> psycopg.Connection[Any]:
    """Blocking (run it in a thread): a connection that LISTENs; deliver gets what psycopg reads while it executes."""
    conn = connect(url, **KEEPALIVES)
    conn.add_notify_handler(deliver)
    try:
        conn.execute(f"LISTEN {CHANGES_CHANNEL}")
    except psycopg.Error as exc:
        conn.close()
        raise StateError(f"PostgreSQL LISTEN: {one_line(exc)}") from None
    return conn


async def listen_changes(
    url: str,
    on_change: Callable[[int], None],
    *,
    on_resync: Callable[[], None] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call on_change(network id) for each change committed on the database at url, forever.

    Started (task_status) once listening: every change committed after that is
    seen. The first connection's failure is raised (a one-line StateError); later
    losses are retried until cancelled, and on_resync() follows each reconnection.
    """

    def deliver(notify: psycopg.Notify) -> None:
        try:
            network_id = parse_network_id(notify.payload)
        except InvalidId:
            dropped["bad_payload"] += 1
            return
        on_change(network_id)

    conn = await trio.to_thread.run_sync(_listening_connection, url, deliver, abandon_on_cancel=True)
    task_status.started()
    while True:
        try:
            await _receive(conn, deliver)
        finally:
            conn.close()
        conn = await _reconnect(url, deliver)
        if on_resync is not None:
            on_resync()


async def _receive(conn: psycopg.Connection[Any], deliver: Callable[[psycopg.Notify], None]) -> None:
    """Deliver notifications as they arrive; return when the connection is lost."""
    pgconn = conn.pgconn
    while True:
        # First what libpq already holds: bytes read along with LISTEN's answer are parsed here, not signalled by the socket.
        while (raw := pgconn.notifies()) is not None:
            deliver(psycopg.Notify(raw.relname.decode(), raw.extra.decode(errors="replace"), raw.be_pid))
        await trio.lowlevel.wait_readable(conn.fileno())
        try:
            pgconn.consume_input()  # reads what the socket holds; never blocks
        except psycopg.OperationalError as exc:
            log.warning("change notifications: connection lost (%s); reconnecting", one_line(exc))
            return
        if pgconn.status != psycopg.pq.ConnStatus.OK:  # the server said goodbye (a FATAL message) and libpq hung up
            log.warning("change notifications: the server ended the connection; reconnecting")
            return


async def _reconnect(url: str, deliver: Callable[[psycopg.Notify], None]) -> psycopg.Connection[Any]:
    delay_s = RECONNECT_FIRST_S
    while True:
        await trio.sleep(delay_s)
        try:
            conn = await trio.to_thread.run_sync(_listening_connection, url, deliver, abandon_on_cancel=True)
        except StateError as exc:
            log.warning("change notifications: %s; retrying in %.1f s", exc, min(delay_s * 2, RECONNECT_MAX_S))
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)
            continue
        log.info("change notifications: listening again")
        return conn
