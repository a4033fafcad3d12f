"""Sliding replay window over 64-bit message counters (RFC 6479: a ring of bitmap blocks, here of 8 bits).

Counters inside the window are accepted once, in any order; duplicates and
counters older than the window are refused. Check before decrypting, mark
only after the tag verified, so forged packets cannot move the window.

Counter c's bit is bit c % 8 of block c // 8, kept in a bytearray ring of
size // 8 + 2 blocks: enough that every block a counter inside the window
can fall in has its own byte. When the highest counter moves into a new
block, the blocks it passes are cleared, so a byte never carries marks of
counters a ring's length earlier. A packet costs a byte read and a byte
write, where a bitmap in one Python int (1 KiB for 8192 counters) was
shifted, masked and copied for every counter that moved the window.
"""

from __future__ import annotations

REPLAY_WINDOW_MESSAGES = 8192


class ReplayWindow:
    __slots__ = ("highest", "_blocks", "_block_count", "_size")

    def __init__(self, size: int = REPLAY_WINDOW_MESSAGES) -> None:
        self.highest = -1
        self._size = size
        self._block_count = size // 8 + 2
        self._blocks = bytearray(self._block_count)

    def may_accept(self, counter: int) -> bool:
        highest = self.highest
        if counter > highest:
            return True
        return highest - counter < self._size and not (self._blocks[(counter >> 3) % self._block_count] >> (counter & 7)) & 1

    def mark(self, counter: int) -> None:
        highest = self.highest
        blocks = self._blocks
        count = self._block_count
        if counter > highest:
            passed = (counter >> 3) - (highest >> 3) if highest >= 0 else count
            if passed == 1:
                blocks[(counter >> 3) % count] = 0
            elif passed >= count:
                blocks[:] = bytes(count)
            elif passed:  # a jump (lost or reordered packets): rare, so zeros are made for it
                start = ((highest >> 3) + 1) % count
                end = start + passed
                if end <= count:
                    blocks[start:end] = bytes(passed)
                else:
                    blocks[start:] = bytes(count - start)
                    blocks[: end - count] = bytes(end - count)
            self.highest = counter
        elif highest - counter >= self._size:
            return  # outside the window (may_accept refused it): its block belongs to a newer counter
        blocks[(counter >> 3) % count] |= 1 << (counter & 7)
