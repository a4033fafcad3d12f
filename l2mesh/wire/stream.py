"""The TCP fallback's framing, sans-IO: an HTTP/1.1 upgrade, then datagrams as length-prefixed frames.

Where UDP is blocked (corporate networks, some hotel Wi-Fi), a node reaches
its root over TCP. The connection starts as an HTTP/1.1 upgrade, as
Tailscale's DERP and WebSockets do, so HTTP proxies and middleboxes that
only let HTTP-looking TCP through pass it:

    client: GET /l2mesh/relay HTTP/1.1 / Host: <host>:<port> / Connection: Upgrade / Upgrade: l2mesh-relay/1
    root:   HTTP/1.1 101 Switching Protocols / Connection: Upgrade / Upgrade: l2mesh-relay/1

(anything else: 400 or 426 and close). Then each side sends frames: a
2-byte big-endian length (1..65535) and exactly one datagram, the bytes a
UDP datagram to or from the root would carry. A zero length is a protocol
error (close); a head longer than MAX_HEAD_BYTES too.
"""

from __future__ import annotations

import struct

UPGRADE_PATH = "/l2mesh/relay"
UPGRADE_PROTOCOL = "l2mesh-relay/1"
MAX_HEAD_BYTES = 4096
MAX_FRAME_BYTES = 65535
FRAME_LENGTH = struct.Struct(">H")
_HEAD_END = b"\r\n\r\n"


class StreamError(ValueError):
    """The peer broke the framing (bad head, zero-length or oversized frame): close the connection."""


def upgrade_request(host: str, port: int) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (
        f"GET {UPGRADE_PATH} HTTP/1.1\r\nHost: {authority}\r\n"
        f"Connection: Upgrade\r\nUpgrade: {UPGRADE_PROTOCOL}\r\n\r\n"
    ).encode("ascii")


def upgrade_response() -> bytes:
    return f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {UPGRADE_PROTOCOL}\r\n\r\n".encode("ascii")


def refusal(status: int) -> bytes:
    """400 (not our request) or 426 (ours, but not asking for our protocol); the connection closes after it."""
    reason = {400: "Bad Request", 426: "Upgrade Required"}[status]
    extra = f"Connection: Upgrade\r\nUpgrade: {UPGRADE_PROTOCOL}\r\n" if status == 426 else "Connection: close\r\n"
    return f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n\r\n".encode("ascii")


class HeadReader:
    """Collects an HTTP head from arbitrary chunks: feed() returns it once complete; `rest` holds what followed."""

    def __init__(self, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self.max_head_bytes = max_head_bytes
        self._buffer = bytearray()
        self.rest = b""

    def feed(self, chunk: bytes) -> bytes | None:
        self._buffer += chunk
        end = self._buffer.find(_HEAD_END)
        if end < 0:
            if len(self._buffer) > self.max_head_bytes:
                raise StreamError(f"HTTP head longer than {self.max_head_bytes} bytes")
            return None
        if end + len(_HEAD_END) > self.max_head_bytes:
            raise StreamError(f"HTTP head longer than {self.max_head_bytes} bytes")
        head = bytes(self._buffer[:end])
        self.rest = bytes(self._buffer[end + len(_HEAD_END):])
        self._buffer = bytearray()
        return head


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the header fields (names lower-cased; repeated fields joined by commas)."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise StreamError("HTTP head is not ASCII") from None
    start, *lines = text.split("\r\n")
    fields: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise StreamError(f"malformed header line {line[:40]!r}")
        key = name.lower()
        fields[key] = f"{fields[key]}, {value.strip()}" if key in fields else value.strip()
    return start, fields


def _has_token(value: str | None, token: str) -> bool:
    return value is not None and token.lower() in (t.strip().lower() for t in value.split(","))


def check_request(head: bytes) -> int | None:
    """None when head is our upgrade request; else the status to refuse it with (400 or 426)."""
    try:
        start, fields = _parse_head(head)
    except StreamError:
        return 400
    if start.split(" ") != ["GET", UPGRADE_PATH, "HTTP/1.1"] or "host" not in fields:
        return 400
    if not _has_token(fields.get("connection"), "upgrade") or not _has_token(fields.get("upgrade"), UPGRADE_PROTOCOL):
        return 426
    return None


def check_response(head: bytes) -> None:
    """StreamError unless head is the root's 101 switching to our protocol."""
    start, fields = _parse_head(head)
    parts = start.split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or parts[1] != "101":
        raise StreamError(f"the root refused the upgrade: {start[:60]!r}")
    if not _has_token(fields.get("upgrade"), UPGRADE_PROTOCOL):
        raise StreamError("the root switched to another protocol")


def encode_frame(datagram: bytes | memoryview) -> bytes:
    size = len(datagram)
    if not 0 < size <= MAX_FRAME_BYTES:
        raise ValueError(f"a frame carries 1..{MAX_FRAME_BYTES} bytes, not {size}")
    return FRAME_LENGTH.pack(size) + bytes(datagram)


def encode_segments(data: bytes | memoryview, segment_bytes: int) -> bytes:
    """A run of datagrams of segment_bytes each (the last may be shorter) as consecutive frames, in one buffer."""
    view = memoryview(data)
    return b"".join(encode_frame(view[start : start + segment_bytes]) for start in range(0, len(view), segment_bytes))


class FrameDecoder:
    """Datagrams out of a byte stream cut anywhere: feed() returns the frames completed by each chunk."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes | memoryview) -> list[bytes]:
        buffer = self._buffer
        buffer += chunk
        frames = []
        offset = 0
        while len(buffer) - offset >= 2:
            (size,) = FRAME_LENGTH.unpack_from(buffer, offset)
            if not 0 < size <= self.max_frame_bytes:
                raise StreamError(f"frame of {size} bytes")
            end = offset + 2 + size
            if end > len(buffer):
                break
            frames.append(bytes(buffer[offset + 2 : end]))
            offset = end
        if offset:
            del buffer[:offset]
        return frames
