"""One non-blocking TCP socket carrying l2mesh frames (l2mesh.wire.stream): what both ends of the TCP fallback share.

Writes never block the reactor: bytes the kernel does not take at once wait
in a buffer bounded by MAX_WRITE_BUFFER_BYTES, flushed when the socket is
writable; past the bound a datagram is dropped and counted, as a full UDP
socket buffer would drop it.
"""

from __future__ import annotations

import socket
from collections import Counter

from l2mesh.wire.stream import FrameDecoder, encode_frame, encode_segments

MAX_WRITE_BUFFER_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 256 * 1024
READS_PER_WAKEUP = 8


class FramedSocket:
    def __init__(self, sock: socket.socket, drops: Counter[str]) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames are latency-bound packets
        except OSError:
            pass
        self.sock = sock
        self.drops = drops
        self.decoder = FrameDecoder()
        self.closed = False
        self._out = bytearray()
        self._fd = sock.fileno()

    def fileno(self) -> int:
        return self._fd

    @property
    def wants_write(self) -> bool:
        return bool(self._out) and not self.closed

    def queue(self, data: bytes) -> bool:
        """Send raw bytes (a head or frames) now or as soon as the socket takes them; False when dropped."""
        if self.closed:
            return False
        if len(self._out) + len(data) > MAX_WRITE_BUFFER_BYTES:
            self.drops["stream_write_buffer_full"] += 1
            return False
        self._out += data
        self.flush()
        return True

    def send_frame(self, datagram: bytes | memoryview) -> bool:
        return self.queue(encode_frame(datagram))

    def send_segments(self, data: bytes | memoryview, segment_bytes: int) -> bool:
        """A run of datagrams (as for UDP segmentation offload) in one write: one syscall and few TCP segments."""
        return self.queue(encode_segments(data, segment_bytes))

    def flush(self) -> bool:
        """Write what is buffered; True once nothing is left."""
        out = self._out
        while out and not self.closed:
            try:
                sent = self.sock.send(out)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self.close()
                return False
            del out[:sent]
        return not out

    def receive(self) -> list[bytes]:
        """Bytes waiting on the socket (bounded per call); closes on end of stream or error."""
        chunks = []
        for _ in range(READS_PER_WAKEUP):
            try:
                chunk = self.sock.recv(READ_CHUNK_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                break
            if not chunk:
                self.close()
                break
            chunks.append(chunk)
        return chunks

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.clear()
            self.sock.close()
