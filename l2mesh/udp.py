"""The one UDP socket a node or controller speaks on: opening it, draining it, sending without blocking."""

from __future__ import annotations

import errno
import socket
from collections import Counter, deque
from collections.abc import Callable

from l2mesh.errors import L2meshError

Endpoint = tuple[str, int]
SOCKET_BUFFER_BYTES = 8 * 1024 * 1024
BACKLOG_LIMIT_DATAGRAMS = 4096
DRAIN_BATCH = 256
MAX_DATAGRAM_BYTES = 65536


def open_udp_socket(port: int, host: str = "0.0.0.0") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        # As root, lift the sysctl caps (net.core.[rw]mem_max) for this socket alone.
        for option in (getattr(socket, "SO_SNDBUFFORCE", 32), getattr(socket, "SO_RCVBUFFORCE", 33)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            except OSError:
                pass
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise L2meshError(f"UDP port {port} is already in use (another l2mesh process? choose another port)") from None
        raise L2meshError(f"cannot open UDP {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class DatagramSender:
    """Non-blocking sends; a full socket buffer parks datagrams in a bounded backlog flushed when writable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.backlog: deque[tuple[bytes, Endpoint]] = deque()
        self.drops: Counter[str] = Counter()
        self._sendto = sock.sendto

    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None:
        if self.backlog:
            self._park(data, address)
            return
        try:
            self._sendto(data, address)
        except BlockingIOError:
            self._park(data, address)
        except OSError:
            self.drops["send_error"] += 1

    def _park(self, data: bytes | memoryview, address: Endpoint) -> None:
        if len(self.backlog) >= BACKLOG_LIMIT_DATAGRAMS:
            self.drops["send_backlog_full"] += 1
            return
        self.backlog.append((bytes(data), address))

    def flush_backlog(self) -> bool:
        """Send parked datagrams; True when the backlog is empty."""
        backlog = self.backlog
        while backlog:
            data, address = backlog[0]
            try:
                self._sendto(data, address)
            except BlockingIOError:
                return False
            except OSError:
                self.drops["send_error"] += 1
            backlog.popleft()
        return True


def make_socket_drainer(
    sock: socket.socket, on_datagram: Callable[[memoryview, Endpoint, float], None], clock: Callable[[], float]
) -> Callable[[], None]:
    """A reader callback: receive until EAGAIN (bounded), handing each datagram to on_datagram."""
    buffer = bytearray(MAX_DATAGRAM_BYTES)
    view = memoryview(buffer)
    receive = sock.recvfrom_into

    def drain() -> None:
        now = clock()
        for _ in range(DRAIN_BATCH):
            try:
                size, source = receive(buffer)
            except BlockingIOError:
                return
            except OSError:
                continue  # ICMP errors surface here on Linux; nothing to act on
            on_datagram(view[:size], source, now)

    return drain
