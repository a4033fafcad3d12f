"""The one UDP socket a node or controller speaks on: opening it, draining it, sending without blocking."""

from __future__ import annotations

import errno
import socket
from collections import Counter, deque
from collections.abc import Callable

from l2mesh.buffers import untouched_buffer
from l2mesh.errors import L2meshError
from l2mesh.wire.common import Endpoint

SOCKET_BUFFER_BYTES = 8 * 1024 * 1024
# linux/udp.h: segmentation offload (one sendmsg, many datagrams) and its receive side.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
# A UDP_SEGMENT send may carry at most 64 segments and 64 KiB in all.
MAX_SEGMENTS_PER_SEND = 44
# A held run stays under the largest UDP payload (65,507 bytes over IPv4).
MAX_RUN_BYTES = 65000
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
        try:
            # Coalesce runs of same-size datagrams (our fragments) into one receive.
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            pass
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise bind_error(exc, "UDP", host, port) from None
    sock.setblocking(False)
    return sock


def bind_error(exc: OSError, protocol: str, host: str, port: int) -> L2meshError:
    """The one-line error for a socket that could not bind (or listen) where it was told to."""
    if exc.errno == errno.EADDRINUSE:
        return L2meshError(f"{protocol} port {port} is already in use (another l2mesh process? choose another port)")
    return L2meshError(f"cannot open {protocol} {host}:{port}: {exc.strerror}")


class DatagramSender:
    """Non-blocking sends; a full socket buffer parks datagrams in a bounded backlog flushed when writable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.backlog: deque[tuple[bytes, Endpoint]] = deque()
        self.drops: Counter[str] = Counter()
        self._sendto = sock.sendto
        self._sendmsg = sock.sendmsg
        self.segmentation = True
        # A run of datagrams held back to go out in one segmented send (see hold()).
        self._holding = False
        self._run = bytearray()
        self._run_address: Endpoint | None = None
        self._run_segment = 0
        self._run_count = 0
        self._run_closed = False  # a shorter datagram ended it: UDP_SEGMENT allows only the last to be short

    def hold(self) -> None:
        """Until release(), datagrams of one size to one address queue up and leave as one segmented send.

        Small frames read from a TAP in one wake-up (a VoIP or game stream,
        iperf3 -u) cost one system call per run instead of one each; the
        receiver's UDP_GRO takes the run in one receive too. Nothing waits
        longer than the wake-up that produced it.
        """
        self._holding = True

    def release(self) -> None:
        self._holding = False
        if self._run_count:
            self._flush_run()

    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None:
        if self._holding and self.segmentation and not self.backlog:
            self._add_to_run(data, address)
            return
        if self.backlog:
            self._park(data, address)
            return
        try:
            self._sendto(data, address)
        except BlockingIOError:
            self._park(data, address)
        except OSError:
            self.drops["send_error"] += 1

    def _add_to_run(self, data: bytes | memoryview, address: Endpoint) -> None:
        size = len(data)
        if self._run_count and (
            address != self._run_address
            or size > self._run_segment
            or self._run_closed
            or self._run_count >= MAX_SEGMENTS_PER_SEND
            or len(self._run) + size > MAX_RUN_BYTES
        ):
            self._flush_run()
        if not self._run_count:
            self._run_address, self._run_segment = address, size
        elif size < self._run_segment:
            self._run_closed = True
        self._run += data
        self._run_count += 1

    def _flush_run(self) -> None:
        run, address, segment_bytes, count = self._run, self._run_address, self._run_segment, self._run_count
        assert address is not None
        self._run_count, self._run_closed = 0, False
        try:
            if count == 1:
                self._sendto(run, address)
            else:
                self._sendmsg([run], [(SOL_UDP, UDP_SEGMENT, segment_bytes.to_bytes(2, "little"))], 0, address)
        except BlockingIOError:
            self._park_segments(memoryview(bytes(run)), segment_bytes, address)
        except OSError:
            if count > 1:
                # No UDP GSO on this path (old kernel, a device without it): plain sends from now on.
                self.segmentation = False
                self._send_each(memoryview(bytes(run)), segment_bytes, address)
            else:
                self.drops["send_error"] += 1
        del run[:]

    def _park(self, data: bytes | memoryview, address: Endpoint) -> None:
        if len(self.backlog) >= BACKLOG_LIMIT_DATAGRAMS:
            self.drops["send_backlog_full"] += 1
            return
        self.backlog.append((bytes(data), address))

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None:
        """Datagrams of segment_bytes each (the last may be shorter), in as few system calls as the kernel allows."""
        if self._run_count:
            self._flush_run()  # what was held goes first: frames leave in the order they came
        view = memoryview(data)
        if not self.segmentation or self.backlog:
            self._send_each(view, segment_bytes, address)
            return
        control = [(SOL_UDP, UDP_SEGMENT, segment_bytes.to_bytes(2, "little"))]
        per_send = segment_bytes * MAX_SEGMENTS_PER_SEND
        for start in range(0, len(view), per_send):
            piece = view[start : start + per_send]
            if not self.segmentation:
                self._send_each(piece, segment_bytes, address)
                continue
            try:
                self._sendmsg([piece], control if len(piece) > segment_bytes else [], 0, address)
            except BlockingIOError:
                self._park_segments(piece, segment_bytes, address)
            except OSError:
                # No UDP GSO on this path (old kernel, a device without it): plain sends from now on.
                self.segmentation = False
                self._send_each(piece, segment_bytes, address)

    def _send_each(self, view: memoryview, segment_bytes: int, address: Endpoint) -> None:
        for start in range(0, len(view), segment_bytes):
            self.send_datagram(view[start : start + segment_bytes], address)

    def _park_segments(self, view: memoryview, segment_bytes: int, address: Endpoint) -> None:
        for start in range(0, len(view), segment_bytes):
            self._park(view[start : start + segment_bytes], address)

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


_GRO_CONTROL_BYTES = socket.CMSG_SPACE(4)


def plain_endpoint(source: tuple) -> Endpoint:  # type: ignore[type-arg]
    """(host, port) from an IPv6 socket's 4-tuple; IPv4 peers of a dual-stack socket appear as ::ffff:a.b.c.d."""
    host = source[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, source[1]


def make_socket_drainer(
    sock: socket.socket,
    on_datagram: Callable[[memoryview, Endpoint, float], None],
    clock: Callable[[], float],
    on_segments: Callable[[memoryview, int, Endpoint, float], bool] | None = None,
) -> Callable[[], None]:
    """A reader callback: receive until EAGAIN (bounded), handing each datagram to on_datagram.

    With UDP_GRO the kernel hands over runs of same-size datagrams from one
    sender in one receive and says the size in a control message; they are
    split back into datagrams here, unless on_segments takes the run whole
    (a relay forwarding it in one send) and returns True.
    """
    buffer = untouched_buffer(MAX_DATAGRAM_BYTES)  # mostly small datagrams: most of its pages never resident
    view = memoryview(buffer)
    receive = sock.recvmsg_into
    buffers = [buffer]

    def drain() -> None:
        now = clock()
        for _ in range(DRAIN_BATCH):
            try:
                size, control, _, source = receive(buffers, _GRO_CONTROL_BYTES)
            except BlockingIOError:
                return
            except OSError:
                continue  # ICMP errors surface here on Linux; nothing to act on
            if len(source) != 2:
                source = plain_endpoint(source)
            if not control:
                on_datagram(view[:size], source, now)
                continue
            segment_bytes = int.from_bytes(control[0][2][:4], "little") or size
            if on_segments is not None and on_segments(view[:size], segment_bytes, source, now):
                continue
            for start in range(0, size, segment_bytes):
                on_datagram(view[start : min(start + segment_bytes, size)], source, now)

    return drain
