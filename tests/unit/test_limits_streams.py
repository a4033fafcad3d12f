"""The root's TCP fallback listener bounds each source address (loopback, a real RootServer): how fast
it may open connections and how many it may hold; another address is unaffected."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2mesh.edge.root import streams as streams_module
from tests.unit.test_root_stream import LiveRoot

DEADLINE_S = 5.0


@pytest.fixture
def root(tmp_path: Path) -> Iterator[LiveRoot]:
    live = LiveRoot(tmp_path / "root")
    yield live
    live.stop()


def connect_from(root: LiveRoot, source_ip: str, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(root.tcp, timeout=DEADLINE_S, source_address=(source_ip, 0))
        socks.append(sock)
    return socks


def open_count(socks: list[socket.socket]) -> int:
    """How many the root kept: nothing to read (it waits for the upgrade) rather than end of stream."""
    readable, _, _ = select.select(socks, [], [], 0.3)
    closed = 0
    for sock in readable:
        try:
            closed += sock.recv(1) == b""
        except OSError:
            closed += 1
    return len(socks) - closed


def accepted(root: LiveRoot, count: int) -> tuple[int, dict[str, int]]:
    """Once the root has taken all `count` connections: how many it holds, and its drops."""
    assert root.server.streams is not None
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status = root.server.reactor.call(root.server.streams.status).result(timeout=2)
        held, drops = int(status["connections"]), dict(status["drops"])  # type: ignore[call-overload]
        if held + sum(drops.values()) >= count or time.monotonic() > deadline:
            return held, drops
        time.sleep(0.02)


def test_one_address_opening_connections_in_a_burst_is_cut_and_another_address_is_served(root: LiveRoot) -> None:
    burst = int(streams_module.ACCEPT_BURST_PER_SOURCE)
    socks = connect_from(root, "127.0.0.2", 2 * burst)
    try:
        held, drops = accepted(root, 2 * burst)
        # Connecting takes well under a second: the burst and the few tokens refilled meanwhile pass.
        assert burst <= held < 2 * burst and drops == {"stream_accept_rate_limited": 2 * burst - held}
        assert open_count(socks) == held
        [other] = connect_from(root, "127.0.0.3", 1)
        assert open_count([other]) == 1
        other.close()
    finally:
        for sock in socks:
            sock.close()


def test_one_address_holds_at_most_its_share_of_connections(root: LiveRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams_module, "MAX_CONNECTIONS_PER_SOURCE", 5)
    socks = connect_from(root, "127.0.0.2", 8)
    try:
        held, drops = accepted(root, 8)
        assert held == 5 and drops == {"stream_too_many_from_source": 3}
        assert open_count(socks) == 5
        for sock in socks:
            sock.close()
        [other] = connect_from(root, "127.0.0.3", 1)
        assert open_count([other]) == 1
        other.close()
    finally:
        for sock in socks:
            sock.close()
