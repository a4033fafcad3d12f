"""Sliding replay window over 64-bit message counters (RFC 6479's idea, on a Python int bitmap).

Counters inside the window are accepted once, in any order; duplicates and
counters older than the window are refused. Check before decrypting, mark
only after the tag verified, so forged packets cannot move the window.
"""

from __future__ import annotations

REPLAY_WINDOW_MESSAGES = 8192


class ReplayWindow:
    __slots__ = ("highest", "_seen", "_size", "_mask")

    def __init__(self, size: int = REPLAY_WINDOW_MESSAGES) -> None:
        self.highest = -1
        self._seen = 0  # bit i set: counter (highest - i) was accepted
        self._size = size
        self._mask = (1 << size) - 1

    def may_accept(self, counter: int) -> bool:
        if counter > self.highest:
            return True
        offset = self.highest - counter
        return offset < self._size and not (self._seen >> offset) & 1

    def mark(self, counter: int) -> None:
        if counter > self.highest:
            shift = counter - self.highest
            self._seen = ((self._seen << shift) | 1) & self._mask if shift < self._size else 1
            self.highest = counter
        else:
            self._seen |= 1 << (self.highest - counter)
