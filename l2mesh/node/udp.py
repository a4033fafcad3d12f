"""The node's one UDP socket, and the Transmit the core writes through (non-blocking, never awaits)."""

from __future__ import annotations

import errno
import os
import socket
from collections import Counter, deque

from l2mesh.errors import L2meshError
from l2mesh.node.peers import Endpoint

SOCKET_BUFFER_BYTES = 8 * 1024 * 1024
BACKLOG_LIMIT_DATAGRAMS = 4096


def open_udp_socket(port: int, host: str = "0.0.0.0") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
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
            raise L2meshError(f"UDP port {port} is already in use (another l2mesh daemon? use --port)") from None
        raise L2meshError(f"cannot open UDP port {port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class EdgeTransmit:
    """Sends and TAP writes as non-blocking system calls.

    A full socket buffer parks datagrams in a bounded backlog that the edge
    flushes when the socket is writable again (so TCP over the overlay sees
    back-pressure, not loss); a full TAP queue drops the frame, as a switch
    port would.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tap_fds: dict[int, int] = {}
        self.backlog: deque[tuple[bytes, Endpoint]] = deque()
        self.drops: Counter[str] = Counter()
        self._sendto = sock.sendto
        self._write = os.write

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

    def write_frame(self, network_id: int, frame: bytes | memoryview) -> None:
        fd = self.tap_fds.get(network_id)
        if fd is None:
            self.drops["tap_missing"] += 1
            return
        try:
            self._write(fd, frame)
        except BlockingIOError:
            self.drops["tap_queue_full"] += 1
        except OSError:
            self.drops["tap_write_error"] += 1
