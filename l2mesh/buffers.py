"""Scratch buffers whose memory is taken page by page, as it is written (issue 17: idle RSS)."""

from __future__ import annotations

import mmap


def untouched_buffer(size_bytes: int) -> mmap.mmap:
    """A writable buffer of size_bytes zeros that holds no resident memory until written to.

    bytearray(n) writes all n bytes when it is made, so each page of a 64 KiB
    scratch buffer is resident in a daemon that only ever handles small
    packets; an anonymous mapping gets a page from the kernel when a write
    first reaches it. Slicing, slice assignment, len(), memoryview() and
    recv_into() work as on a bytearray; it cannot grow.
    """
    return mmap.mmap(-1, size_bytes)
