"""The TCP fallback end to end on loopback: a real root (reactor thread, UDP socket, TCP listener) and
the member's RootStream; refused upgrades; reconnect backoff. Loopback only, no root needed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from l2mesh.edge.node.root_stream import RECONNECT_INITIAL_S, RootStream
from l2mesh.edge.root.server import RootOptions, RootServer
from l2mesh.wire.messages import MessageKind
from l2mesh.wire.stream import HeadReader
from tests.root_client import RootClient, drive_stream

DEADLINE_S = 5.0


class LiveRoot:
    def __init__(self, state_dir: Path) -> None:
        self.server = RootServer(RootOptions(state_dir, ("127.0.0.1", 0), ("127.0.0.1", 0)))
        assert self.server.streams is not None
        self.udp: tuple[str, int] = self.server.sock.getsockname()
        self.tcp: tuple[str, int] = self.server.streams.sock.getsockname()
        self.thread = threading.Thread(target=self.server.reactor.run, daemon=True)
        self.thread.start()

    def status(self) -> dict[str, Any]:
        return self.server.reactor.call(self.server.core.status).result(timeout=2)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.server.reactor.stop()
        self.thread.join(timeout=5)
        if self.server.streams is not None:
            self.server.streams.close()
        self.server.sock.close()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[LiveRoot]:
    live = LiveRoot(tmp_path / "root")
    yield live
    live.stop()


def pump(stream: RootStream, until: Callable[[list[bytes]], bool], timeout_s: float = DEADLINE_S) -> list[bytes]:
    received = drive_stream(stream, until, timeout_s)
    if not until(received):
        raise AssertionError(f"not reached within {timeout_s} s; stream {stream.state}, drops {dict(stream.drops)}")
    return received


def udp_ask(sock: socket.socket, root: LiveRoot, data: bytes) -> bytes:
    sock.sendto(data, root.udp)
    sock.settimeout(DEADLINE_S)
    return sock.recv(65536)


def stream_node(root: LiveRoot, identity_of: LiveRoot) -> tuple[RootStream, RootClient]:
    stream = RootStream(root.udp, root.tcp)
    pump(stream, lambda _: stream.is_open)
    client = RootClient(identity_of.server.identity.public)
    assert stream.send(client.initiation(time.monotonic()))
    [response] = pump(stream, lambda got: len(got) >= 1)
    client.receive(response, time.monotonic())
    return stream, client


def test_a_node_registers_over_the_stream_and_is_relayed_to_but_not_handed_out(root: LiveRoot) -> None:
    stream, streamed = stream_node(root, root)
    assert stream.send(streamed.register(time.monotonic(), [("192.168.9.9", 9993)]))
    [answer] = pump(stream, lambda got: len(got) >= 1)
    kind, registered = streamed.receive(answer, time.monotonic())  # type: ignore[misc]
    assert kind == MessageKind.ROOT_REGISTERED
    assert registered.observed == stream._framed.sock.getsockname()  # type: ignore[union-attr]

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        other = RootClient(root.server.identity.public)
        other.receive(udp_ask(udp, root, other.initiation(time.monotonic())), time.monotonic())
        kind, _ = other.receive(udp_ask(udp, root, other.register(time.monotonic())), time.monotonic())  # type: ignore[misc]
        assert kind == MessageKind.ROOT_REGISTERED
        kind, reply = other.receive(udp_ask(udp, root, other.lookup(streamed.node_id, time.monotonic())), time.monotonic())  # type: ignore[misc]
        assert reply.registered and list(reply.endpoints) == [("192.168.9.9", 9993)]
        envelope = other.envelope(streamed.node_id, b"ciphertext for the streamed node")
        udp.sendto(envelope, root.udp)
        assert pump(stream, lambda got: envelope in got)
        # And back: from the stream to the UDP node.
        back = streamed.envelope(other.node_id, b"and back")
        assert stream.send(back)
        udp.settimeout(DEADLINE_S)
        assert udp.recv(65536) == back
    assert root.status()["relayed_packets"] == 2
    stream.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"400"), (b"GET /l2mesh/relay HTTP/1.1\r\nHost: x\r\n\r\n", b"426")],
)
def test_a_request_other_than_our_upgrade_is_answered_with_an_error_and_closed(root: LiveRoot, request_bytes: bytes, status: bytes) -> None:
    with socket.create_connection(root.tcp, timeout=DEADLINE_S) as conn:
        conn.sendall(request_bytes)
        head = HeadReader().feed(conn.recv(4096))
        assert head is not None and head.split(b" ")[1] == status
        assert conn.recv(4096) == b""  # closed


def test_a_refused_connect_is_retried_after_a_growing_backoff() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]  # bound, never listening: connections are refused
        stream = RootStream(("127.0.0.1", closed_port), ("127.0.0.1", closed_port))
        start = time.monotonic()
        pump(stream, lambda _: stream.drops["connect_failed"] >= 1)
        assert stream.state == "idle" and stream.fileno() == -1
        stream.tick(time.monotonic())
        assert stream.state == "idle"  # not before the backoff
        stream.tick(start + RECONNECT_INITIAL_S + 0.5)
        assert stream.state in ("connecting", "idle") and stream.drops["connect_failed"] + (stream.state == "connecting") == 2
        assert not stream.send(b"x")
        stream.close()
