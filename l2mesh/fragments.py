"""Splitting sealed transport packets that exceed one underlay datagram, and reassembling them.

The virtual MTU (2800 by default, as ZeroTier) exceeds what one UDP datagram
carries over a 1500-byte path, and IP fragments are dropped by many networks,
so l2mesh fragments itself. It splits the *sealed* packet: one AEAD call per
frame, and a forged fragment only ever spoils one reassembly, which then
fails authentication. Reassembly memory is bounded per source and overall,
and incomplete packets are dropped after a timeout.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from collections.abc import Hashable

from l2mesh.wire.packets import (
    FRAGMENT_HEADER,
    FRAGMENT_HEADER_BYTES,
    MAX_FRAGMENTS,
    TRANSPORT_HEADER_BYTES,
    PacketType,
)

DEFAULT_MAX_DATAGRAM_BYTES = 1444  # fits IPv4 and IPv6 over 1500-byte links with room for PPPoE
REASSEMBLY_TIMEOUT_S = 2.0
MAX_PENDING_PER_SOURCE = 64
MAX_PENDING_BYTES = 16 * 1024 * 1024
MAX_PENDING_MESSAGES = 4096
FRAGMENT_OVERHEAD_BYTES = 200  # what a stored chunk costs beyond its bytes (objects, dict entry)

_FRAGMENT = PacketType.FRAGMENT
_TRANSPORT_PREFIX = bytes([PacketType.TRANSPORT, 0, 0, 0])
_TRANSPORT_NAMES = struct.Struct("<IQ")  # receiver index and counter, as in the transport header


def fragment(packet: bytes | memoryview, max_datagram_bytes: int) -> list[bytes]:
    """Fragments of a sealed transport packet; every one fits max_datagram_bytes."""
    chunk_bytes = max_datagram_bytes - FRAGMENT_HEADER_BYTES
    body = memoryview(packet)[TRANSPORT_HEADER_BYTES:]
    count = -(-len(body) // chunk_bytes)
    if count > MAX_FRAGMENTS:
        raise ValueError(f"packet of {len(packet)} bytes needs more than {MAX_FRAGMENTS} fragments")
    names = bytes(packet[4:TRANSPORT_HEADER_BYTES])  # receiver index and counter
    return [
        bytes((_FRAGMENT, index, count, 0)) + names + body[index * chunk_bytes : (index + 1) * chunk_bytes]
        for index in range(count)
    ]


def fragment_into(packet: bytes | memoryview, max_datagram_bytes: int, out: bytearray | memoryview, prefix: bytes = b"") -> int:
    """The fragments of fragment(), each after prefix (a relay envelope, say), laid end to end in
    out; every one but the last is exactly max_datagram_bytes long, which is the layout UDP
    segmentation offload (UDP_SEGMENT) sends as separate datagrams in one system call.
    Returns the number of bytes written."""
    prefix_bytes = len(prefix)
    chunk_bytes = max_datagram_bytes - prefix_bytes - FRAGMENT_HEADER_BYTES
    body = memoryview(packet)[TRANSPORT_HEADER_BYTES:]
    count = -(-len(body) // chunk_bytes)
    if count > MAX_FRAGMENTS:
        raise ValueError(f"packet of {len(packet)} bytes needs more than {MAX_FRAGMENTS} fragments")
    receiver_index, counter = _TRANSPORT_NAMES.unpack_from(packet, 4)
    pack_header = FRAGMENT_HEADER.pack_into
    offset = 0
    for index in range(count):
        chunk = body[index * chunk_bytes : (index + 1) * chunk_bytes]
        if prefix_bytes:
            out[offset : offset + prefix_bytes] = prefix
            offset += prefix_bytes
        pack_header(out, offset, _FRAGMENT, index, count, receiver_index, counter)
        end = offset + FRAGMENT_HEADER_BYTES + len(chunk)
        out[offset + FRAGMENT_HEADER_BYTES : end] = chunk
        offset = end
    return offset


class _Pending:
    __slots__ = ("chunks", "received", "count", "started_s", "size_bytes")

    def __init__(self, count: int, now: float) -> None:
        self.chunks: list[bytes | None] = [None] * count
        self.received = 0
        self.count = count
        self.started_s = now
        self.size_bytes = 0


class Reassembler:
    """Bounded reassembly: per sender address (by IP, so port-hopping does not multiply the
    allowance), in all, and in bytes counted with a per-fragment overhead (Python objects cost
    more than the chunk they hold, which tiny hostile fragments would exploit)."""

    def __init__(
        self,
        timeout_s: float = REASSEMBLY_TIMEOUT_S,
        max_pending_per_source: int = MAX_PENDING_PER_SOURCE,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        max_pending_messages: int = MAX_PENDING_MESSAGES,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_pending_per_source = max_pending_per_source
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_messages = max_pending_messages
        self._pending: OrderedDict[tuple[Hashable, bytes], _Pending] = OrderedDict()
        self._per_source: dict[Hashable, OrderedDict[tuple[Hashable, bytes], None]] = {}
        self.pending_bytes = 0
        self.drops: Counter[str] = Counter()

    def add(self, datagram: bytes | memoryview, source: Hashable, now: float) -> bytes | None:
        """The whole transport packet once its last fragment arrives, else None."""
        if len(datagram) <= FRAGMENT_HEADER_BYTES:
            self.drops["fragment_too_short"] += 1
            return None
        _, index, count, _, _ = FRAGMENT_HEADER.unpack_from(datagram)
        if count == 0 or count > MAX_FRAGMENTS or index >= count:
            self.drops["fragment_bad_index"] += 1
            return None
        key = (source, bytes(datagram[4:FRAGMENT_HEADER_BYTES]))
        pending = self._pending.get(key)
        if pending is None:
            pending = self._start(key, count, now)
        elif pending.count != count:
            self.drops["fragment_count_mismatch"] += 1
            return None
        if pending.chunks[index] is not None:
            self.drops["fragment_duplicate"] += 1
            return None
        chunk = bytes(datagram[FRAGMENT_HEADER_BYTES:])
        pending.chunks[index] = chunk
        pending.received += 1
        cost = len(chunk) + FRAGMENT_OVERHEAD_BYTES
        pending.size_bytes += cost
        self.pending_bytes += cost
        if pending.received == pending.count:
            self._forget(key, pending)
            return _TRANSPORT_PREFIX + key[1] + b"".join(pending.chunks)  # type: ignore[arg-type]
        while self.pending_bytes > self.max_pending_bytes and self._pending:
            self.drops["fragment_memory_limit"] += 1
            oldest_key = next(iter(self._pending))
            self._forget(oldest_key, self._pending[oldest_key])
        return None

    def take_whole(self, run: memoryview, offset: int, segment_bytes: int, source: Hashable) -> tuple[bytes, int] | None:
        """The transport packet whose fragments all lie in order at offset of a UDP_GRO run, joined in one
        copy, and the bytes they took; None unless that holds (the caller then adds the fragment alone).

        A GRO run is datagrams of segment_bytes each, the last maybe shorter: a super-frame's
        fragments usually arrive whole in one, and 44 add() calls become one join. Only the first
        and the last fragment's headers are read: a run is what one sender sent in order, a gap
        or a stranger's fragment in between moves the last one (no match), and a forged middle
        fails the packet's authentication, as it would through add().
        """
        size = len(run)
        if size - offset <= FRAGMENT_HEADER_BYTES:
            return None
        kind, index, count, receiver_index, counter = FRAGMENT_HEADER.unpack_from(run, offset)
        if kind != _FRAGMENT or index != 0 or count == 0 or count > MAX_FRAGMENTS:
            return None
        last = offset + (count - 1) * segment_bytes
        if size - last <= FRAGMENT_HEADER_BYTES:
            return None
        if FRAGMENT_HEADER.unpack_from(run, last) != (_FRAGMENT, count - 1, count, receiver_index, counter):
            return None
        names = bytes(run[offset + 4 : offset + FRAGMENT_HEADER_BYTES])
        if (source, names) in self._pending:
            return None  # part of it came before: the fragment-by-fragment path owns it
        end = min(last + segment_bytes, size)
        body = FRAGMENT_HEADER_BYTES
        parts: list[bytes | memoryview] = [_TRANSPORT_PREFIX, names]
        parts += [run[at + body : at + segment_bytes] for at in range(offset, last, segment_bytes)]
        parts.append(run[last + body : end])
        return b"".join(parts), end - offset

    def _start(self, key: tuple[Hashable, bytes], count: int, now: float) -> _Pending:
        mine = self._per_source.setdefault(_sender_of(key[0]), OrderedDict())
        if len(mine) >= self.max_pending_per_source:
            self.drops["fragment_source_limit"] += 1
            oldest = next(iter(mine))
            self._forget(oldest, self._pending[oldest])
        if len(self._pending) >= self.max_pending_messages:
            self.drops["fragment_message_limit"] += 1
            oldest = next(iter(self._pending))
            self._forget(oldest, self._pending[oldest])
        pending = self._pending[key] = _Pending(count, now)
        self._per_source.setdefault(_sender_of(key[0]), OrderedDict())[key] = None
        return pending

    def expire(self, now: float) -> None:
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if now - pending.started_s < self.timeout_s:
                break
            self.drops["fragment_timeout"] += 1
            self._forget(key, pending)

    def _forget(self, key: tuple[Hashable, bytes], pending: _Pending) -> None:
        del self._pending[key]
        self.pending_bytes -= pending.size_bytes
        sender = _sender_of(key[0])
        mine = self._per_source.get(sender)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._per_source[sender]

    @property
    def pending_count(self) -> int:
        return len(self._pending)


def _sender_of(source: Hashable) -> Hashable:
    """The part of a source that limits apply to: the IP of an (IP, port) address."""
    return source[0] if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], int) else source
