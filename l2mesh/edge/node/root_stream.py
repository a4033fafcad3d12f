"""A member's TCP fallback to one root (where UDP is blocked): connect, upgrade, framed datagrams, reconnect.

Usage from the reactor thread (every call is non-blocking; `now` is monotonic seconds):

    stream = RootStream(root_endpoint=("198.18.0.9", 9993), tcp_endpoint=("198.18.0.9", 9993))
    stream.tick(now)             # connects when due (at once the first time; then with backoff)
    fd = stream.fileno()         # -1 while there is no socket; it changes on each (re)connect:
                                 # after any call, (re-)register a reader on fileno() and a writer
                                 # while stream.wants_write
    stream.on_writable(now)      # the socket is writable: completes the connect, flushes frames
    for datagram in stream.on_readable(now):   # the socket is readable
        core.datagram_received(memoryview(datagram), stream.root_endpoint, now)
    stream.send(datagram) -> bool   # False (dropped) unless the upgrade is done and the
                                    # bounded write buffer has room
    stream.is_open                  # upgraded: datagrams flow
    stream.close()

Datagrams are exactly what a UDP datagram to or from the root would carry
(l2mesh.wire.stream frames them), so the node's core sees the stream as one
more path to root_endpoint. A failed connect, a refused upgrade, a closed
connection or a connect that takes longer than CONNECT_TIMEOUT_S leads to a
new attempt after RECONNECT_INITIAL_S, doubling up to RECONNECT_MAX_S; an
upgrade that worked resets the backoff. drops counts what was lost and why.
"""

from __future__ import annotations

import errno
import socket
from collections import Counter

from l2mesh.edge.framed import FramedSocket
from l2mesh.wire.common import Endpoint
from l2mesh.wire.stream import HeadReader, StreamError, check_response, upgrade_request

CONNECT_TIMEOUT_S = 5.0
RECONNECT_INITIAL_S = 1.0
RECONNECT_MAX_S = 30.0


class RootStream:
    def __init__(self, root_endpoint: Endpoint, tcp_endpoint: Endpoint) -> None:
        self.root_endpoint = root_endpoint
        self.tcp_endpoint = tcp_endpoint
        self.drops: Counter[str] = Counter()
        self.state = "idle"  # idle -> connecting -> upgrading -> open; back to idle on any failure
        self._framed: FramedSocket | None = None
        self._head = HeadReader()
        self._started_s = 0.0
        self._next_attempt_s = 0.0
        self._backoff_s = RECONNECT_INITIAL_S
        self.connects = 0  # upgrades that succeeded

    # -- what the reactor asks ------------------------------------------------------------------
    def fileno(self) -> int:
        return self._framed.fileno() if self._framed is not None else -1

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def wants_write(self) -> bool:
        return self._framed is not None and (self.state == "connecting" or self._framed.wants_write)

    # -- timers -----------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if self.state == "idle" and now >= self._next_attempt_s:
            self._connect(now)
        elif self.state in ("connecting", "upgrading") and now - self._started_s > CONNECT_TIMEOUT_S:
            self.drops["connect_timeout"] += 1
            self._fail(now)

    def _connect(self, now: float) -> None:
        host, port = self.tcp_endpoint
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._framed = FramedSocket(sock, self.drops)
        self._head = HeadReader()
        self._started_s = now
        self.state = "connecting"
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            self.drops["connect_failed"] += 1
            self._fail(now)
        elif code == 0:
            self._connected()

    def _connected(self) -> None:
        assert self._framed is not None
        self.state = "upgrading"
        self._framed.queue(upgrade_request(*self.tcp_endpoint))

    def _fail(self, now: float) -> None:
        if self._framed is not None:
            self._framed.close()
            self._framed = None
        self.state = "idle"
        self._next_attempt_s = now + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, RECONNECT_MAX_S)

    # -- socket events ------------------------------------------------------------------------------------
    def on_writable(self, now: float) -> None:
        framed = self._framed
        if framed is None:
            return
        if self.state == "connecting":
            code = framed.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code != 0:
                self.drops["connect_failed"] += 1
                self._fail(now)
                return
            self._connected()
        framed.flush()
        if framed.closed:
            self._fail(now)

    def on_readable(self, now: float) -> list[bytes]:
        framed = self._framed
        if framed is None or self.state == "connecting":
            return []
        datagrams: list[bytes] = []
        try:
            for chunk in framed.receive():
                if self.state == "upgrading":
                    head = self._head.feed(chunk)
                    if head is None:
                        continue
                    check_response(head)
                    self.state = "open"
                    self.connects += 1
                    self._backoff_s = RECONNECT_INITIAL_S
                    chunk = self._head.rest
                datagrams += framed.decoder.feed(chunk)
        except StreamError:
            self.drops["stream_protocol_error"] += 1
            framed.close()
        if framed.closed:
            self.drops["connection_closed"] += 1
            self._fail(now)
        return datagrams

    def send(self, datagram: bytes | memoryview) -> bool:
        if self._framed is None or self.state != "open":
            self.drops["not_open"] += 1
            return False
        return self._framed.send_frame(datagram)

    def send_segments(self, data: bytes | memoryview, segment_bytes: int) -> bool:
        if self._framed is None or self.state != "open":
            self.drops["not_open"] += 1
            return False
        return self._framed.send_segments(data, segment_bytes)

    def close(self) -> None:
        if self._framed is not None:
            self._framed.close()
            self._framed = None
        self.state = "closed"
