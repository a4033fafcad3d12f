"""The root's TCP fallback listener: upgraded connections whose frames reach the core as if they were UDP.

Each connection is accepted non-blocking and served on the reactor thread.
Once its HTTP upgrade is accepted, every frame is handed to the core as a
datagram from the connection's remote (ip, port), flagged as from a stream;
datagrams the root sends to that address go back over the connection
(RootTransmit). Connections are bounded in number, in total and per source
address, and so is how fast one address may open them (a TCP handshake
proves the address, so per-address limits hold); one that has not
upgraded within UPGRADE_TIMEOUT_S or has been silent for IDLE_TIMEOUT_S is
closed (nodes renew their registration every ~25 s). What an upgraded
connection carries meets the core's own limits, as UDP does.
"""

from __future__ import annotations

from functools import partial

import logging
import socket
from collections import Counter
from collections.abc import Callable

from l2mesh.edge.framed import FramedSocket
from l2mesh.edge.reactor import Reactor
from l2mesh.edge.udp import DatagramSender, Endpoint, bind_error, plain_endpoint
from l2mesh.ratelimit import KeyedLimit
from l2mesh.relaying import same_size_runs
from l2mesh.wire.stream import HeadReader, StreamError, check_request, refusal, upgrade_response

MAX_CONNECTIONS = 4096
# Several nodes behind one NAT may all need the fallback, so not one; but not all of MAX_CONNECTIONS.
MAX_CONNECTIONS_PER_SOURCE = 64
# A node reconnects after a backoff (root_stream.py): one a second per node behind an address is plenty.
ACCEPTS_PER_SOURCE_PER_S = 10.0
ACCEPT_BURST_PER_SOURCE = 20.0
ACCEPTS_PER_WAKEUP = 64
UPGRADE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 90.0
LISTEN_BACKLOG = 512

log = logging.getLogger("l2mesh.root.streams")
OnDatagram = Callable[[memoryview, Endpoint, float, bool], None]
# A run of same-size datagrams from one stream (data, segment bytes, remote, now): True when forwarded whole.
OnSegments = Callable[[memoryview, int, Endpoint, float], bool]


def open_tcp_listener(listen: Endpoint) -> socket.socket:
    host, port = listen
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise bind_error(exc, "TCP", host, port) from None
    sock.setblocking(False)
    return sock


class StreamConnection:
    def __init__(self, framed: FramedSocket, remote: Endpoint, now: float) -> None:
        self.framed = framed
        self.remote = remote
        self.head: HeadReader | None = HeadReader()  # None once upgraded
        self.opened_s = now
        self.heard_s = now


class StreamListener:
    def __init__(
        self, sock: socket.socket, reactor: Reactor, on_datagram: OnDatagram, clock: Callable[[], float],
        on_segments: OnSegments | None = None,
    ) -> None:
        self.sock = sock
        self.reactor = reactor
        self.on_datagram = on_datagram
        self.on_segments = on_segments
        self.clock = clock
        self.by_remote: dict[Endpoint, StreamConnection] = {}
        self.per_source: Counter[str] = Counter()  # open connections by remote address
        self.drops: Counter[str] = Counter()
        self._accepts = KeyedLimit("stream_accept_rate_limited", ACCEPTS_PER_SOURCE_PER_S, ACCEPT_BURST_PER_SOURCE, self.drops)
        reactor.add_reader(sock.fileno(), self._accept)

    # -- reactor callbacks ------------------------------------------------------------------------
    def _accept(self) -> None:
        now = self.clock()
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.drops["stream_accept_error"] += 1  # EMFILE and friends: the next wakeup retries
                return
            if len(self.by_remote) >= MAX_CONNECTIONS:
                self.drops["stream_too_many_connections"] += 1
                conn.close()
                continue
            remote = plain_endpoint(address)
            if not self._accepts.take(remote[0], now):
                conn.close()
                continue
            old = self.by_remote.get(remote)
            if old is not None:
                self._close(old)
            if self.per_source[remote[0]] >= MAX_CONNECTIONS_PER_SOURCE:
                self.drops["stream_too_many_from_source"] += 1
                conn.close()
                continue
            connection = StreamConnection(FramedSocket(conn, self.drops), remote, now)
            self.by_remote[remote] = connection
            self.per_source[remote[0]] += 1
            self.reactor.add_reader(connection.framed.fileno(), partial(self._readable, connection))

    def _readable(self, connection: StreamConnection) -> None:
        now = self.clock()
        framed = connection.framed
        datagrams: list[bytes] = []
        try:
            for chunk in framed.receive():
                connection.heard_s = now
                if connection.head is not None:
                    chunk = self._upgrade(connection, chunk)
                    if not chunk:
                        continue
                datagrams += framed.decoder.feed(chunk)
        except StreamError:
            self.drops["stream_protocol_error"] += 1
            framed.close()
        self._deliver(datagrams, connection.remote, now)
        self._after_io(connection)

    def _deliver(self, datagrams: list[bytes], remote: Endpoint, now: float) -> None:
        """A read's datagrams: runs of one relay envelope forwarded whole (one send, as UDP GRO runs are), the rest one by one."""
        on_segments = self.on_segments
        for run in same_size_runs(datagrams) if on_segments is not None and len(datagrams) > 1 else [datagrams]:
            if len(run) > 1 and on_segments is not None and on_segments(memoryview(b"".join(run)), len(run[0]), remote, now):
                continue
            for datagram in run:
                self.on_datagram(memoryview(datagram), remote, now, True)

    def _upgrade(self, connection: StreamConnection, chunk: bytes) -> bytes:
        """Feed the head; once complete, answer it: the bytes that followed it (frames), or b""."""
        assert connection.head is not None
        head = connection.head.feed(chunk)
        if head is None:
            return b""
        status = check_request(head)
        if status is not None:
            self.drops["stream_upgrade_refused"] += 1
            connection.framed.queue(refusal(status))
            connection.framed.close()  # the refusal is small: the kernel took it above
            return b""
        rest = connection.head.rest
        connection.head = None
        connection.framed.queue(upgrade_response())
        return rest

    def _writable(self, connection: StreamConnection) -> None:
        connection.framed.flush()
        self._after_io(connection)

    def _after_io(self, connection: StreamConnection) -> None:
        framed = connection.framed
        if framed.closed:
            self._close(connection)
        else:
            self.reactor.set_writer(framed.fileno(), partial(self._writable, connection) if framed.wants_write else None)

    def _close(self, connection: StreamConnection) -> None:
        fd = connection.framed.fileno()
        self.reactor.remove_reader(fd)
        self.reactor.set_writer(fd, None)
        connection.framed.close()
        if self.by_remote.get(connection.remote) is connection:
            del self.by_remote[connection.remote]
            ip = connection.remote[0]
            self.per_source[ip] -= 1
            if not self.per_source[ip]:
                del self.per_source[ip]

    # -- the root's sending side -----------------------------------------------------------------------
    def connection_to(self, address: Endpoint) -> StreamConnection | None:
        connection = self.by_remote.get(address)
        return connection if connection is not None and connection.head is None else None

    def send(self, connection: StreamConnection, datagram: bytes | memoryview) -> None:
        self._sent(connection, connection.framed.send_frame(datagram))

    def send_segments(self, connection: StreamConnection, data: bytes | memoryview, segment_bytes: int) -> None:
        self._sent(connection, connection.framed.send_segments(data, segment_bytes))

    def _sent(self, connection: StreamConnection, queued: bool) -> None:
        if queued and connection.framed.wants_write:
            self._after_io(connection)
        elif connection.framed.closed:
            self._close(connection)

    # -- timers ---------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for connection in list(self.by_remote.values()):
            limit_s = UPGRADE_TIMEOUT_S if connection.head is not None else IDLE_TIMEOUT_S
            if now - (connection.opened_s if connection.head is not None else connection.heard_s) > limit_s:
                self.drops["stream_timed_out"] += 1
                self._close(connection)

    def close(self) -> None:
        for connection in list(self.by_remote.values()):
            self._close(connection)
        self.reactor.remove_reader(self.sock.fileno())
        self.sock.close()

    def status(self) -> dict[str, object]:
        return {"connections": len(self.by_remote), "drops": dict(self.drops)}


class RootTransmit:
    """The core's Transmit: to an address with an upgraded TCP connection over it (framed), else over UDP."""

    def __init__(self, udp: DatagramSender, streams: StreamListener | None) -> None:
        self.udp = udp
        self.streams = streams

    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None:
        streams = self.streams
        connection = streams.connection_to(address) if streams is not None else None
        if streams is None or connection is None:
            self.udp.send_datagram(data, address)
        else:
            streams.send(connection, data)

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None:
        streams = self.streams
        connection = streams.connection_to(address) if streams is not None else None
        if streams is None or connection is None:
            self.udp.send_segments(data, segment_bytes, address)
            return
        # A stream carries one datagram per frame: the run goes as consecutive frames, in one write.
        streams.send_segments(connection, data, segment_bytes)
