"""untouched_buffer: no resident memory until written, then the pages written; bytearray's ways of use."""

from __future__ import annotations

import ctypes
import mmap
import socket

from l2mesh.buffers import untouched_buffer

PAGE = mmap.PAGESIZE


def resident_bytes(buffer: mmap.mmap) -> int:
    """Rss of the mapping that holds buffer, from /proc/self/smaps."""
    start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                low, high = (int(part, 16) for part in first.split("-"))
                inside = low <= start < high
            elif inside and first == "Rss:":
                return int(line.split()[1]) * 1024
    raise AssertionError("the buffer's mapping is not in /proc/self/smaps")


def test_pages_become_resident_only_when_written() -> None:
    buffer = untouched_buffer(64 * PAGE)
    assert resident_bytes(buffer) == 0
    buffer[:3] = b"abc"
    buffer[10 * PAGE] = 1
    assert resident_bytes(buffer) == 2 * PAGE
    assert len(buffer) == 64 * PAGE and buffer[3:PAGE] == bytes(PAGE - 3) and buffer[-1] == 0
    written = bytearray(64 * PAGE)  # what it replaces: every page resident from the start
    assert written == bytes(64 * PAGE)


def test_it_is_used_as_the_scratch_bytearrays_were() -> None:
    buffer = untouched_buffer(4 * PAGE)
    view = memoryview(buffer)
    view[5:8] = b"xyz"
    assert bytes(view[4:9]) == b"\0xyz\0" and buffer[5:8] == b"xyz"
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        left.send(b"datagram")
        size, _, _, _ = right.recvmsg_into([buffer])
        assert buffer[:size] == b"datagram"
