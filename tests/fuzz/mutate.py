"""A deterministic, seeded mutator: valid inputs in, near-valid inputs out.

Random bytes die at a parser's first length check; mutants of valid
messages get past it and reach the code behind. Each mutation is one of
AFL's classic moves (bit flips, byte inserts and deletes, truncation,
splicing two corpus items, interesting integers at random offsets, swapping
two spans), and for JSON documents a structural one too (a field removed,
retyped, or set to a boundary value), so that validators see documents that
parse. The same seed gives the same mutants, whatever the machine.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

# AFL's interesting values, and their wider cousins: where lengths, counts and indexes break.
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF, 0x10, 0x20, 0x40, 0x64)
INTERESTING_16 = (0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x100, 0x200, 0x3FF, 0x400, 0x1000, 0xFFFE, 14, 1500, 9000)
INTERESTING_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000, 0xFFFF, 0x100000)
INTERESTING_64 = (0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**32)
JSON_BOUNDARIES: tuple[Any, ...] = (
    0, -1, 1, 2**31 - 1, 2**31, 2**63, -(2**63) - 1, 2**64, 10**400, 1e308, -1e308, 0.5, float("nan"), float("inf"),
    "", "x" * 70, "x" * 5000, "\u0000", "\ud800", "10.147.17.300/24", "::", "ffffffffffffffff", "0000000000",
    True, False, None, [], {}, [None], {"": None}, [[[[[[]]]]]],
)
MAX_MUTANT_BYTES = 1 << 17
# Deeper than Python's JSON parser recurses (the interpreter's limit is 1000): RecursionError is no ValueError.
DEEP_NESTING = 3000
DEEP_NESTING_SHARE = 0.01


class Mutator:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self._moves: list[Callable[[bytearray, Sequence[bytes]], None]] = [
            self._flip_bit, self._flip_bit, self._set_byte, self._insert_bytes, self._delete_bytes,
            self._truncate, self._splice, self._interesting_integer, self._interesting_integer,
            self._swap_spans, self._duplicate_span,
        ]

    def mutate(self, data: bytes, corpus: Sequence[bytes], rounds: int | None = None) -> bytes:
        """data changed by 1..4 moves (or `rounds`); a JSON document is changed in its structure half of the time."""
        rng = self.random
        if (b"{" in data or b"[" in data) and rng.random() < DEEP_NESTING_SHARE:
            return self.nest_deeply(data)
        if data[:1] in (b"{", b"[") and rng.random() < 0.5:
            mutant = self.mutate_json(data)
            if mutant is not None:
                return mutant
        buffer = bytearray(data)
        for _ in range(rounds or rng.choice((1, 1, 1, 2, 2, 3, 4))):
            rng.choice(self._moves)(buffer, corpus)
        return bytes(buffer[:MAX_MUTANT_BYTES])

    # -- byte moves ----------------------------------------------------------------------------
    def _offset(self, buffer: bytearray, end_slack: int = 0) -> int:
        return self.random.randrange(max(1, len(buffer) + end_slack))

    def _flip_bit(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        if buffer:
            at = self._offset(buffer)
            buffer[at] ^= 1 << self.random.randrange(8)

    def _set_byte(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        if buffer:
            buffer[self._offset(buffer)] = self.random.choice(INTERESTING_8 + (self.random.randrange(256),))

    def _insert_bytes(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        rng = self.random
        count = rng.choice((1, 1, 2, 4, 8, 64, 1000))
        filler = bytes([rng.randrange(256)]) * count if rng.random() < 0.5 else rng.randbytes(count)
        at = self._offset(buffer, 1)
        buffer[at:at] = filler

    def _delete_bytes(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        if buffer:
            at = self._offset(buffer)
            del buffer[at : at + self.random.choice((1, 1, 2, 4, 16, 64))]

    def _truncate(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        if buffer:
            del buffer[self._offset(buffer):]

    def _splice(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        """The head of this item and the tail of another: fields of one message behind another's header."""
        if not corpus:
            return
        other = self.random.choice(corpus)
        cut, other_cut = self._offset(buffer, 1), self.random.randrange(len(other) + 1)
        buffer[cut:] = other[other_cut:]

    def _interesting_integer(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        rng = self.random
        width, values = rng.choice(((1, INTERESTING_8), (2, INTERESTING_16), (4, INTERESTING_32), (8, INTERESTING_64)))
        if len(buffer) < width:
            return
        at = rng.randrange(len(buffer) - width + 1)
        value = rng.choice(values)
        if rng.random() < 0.3:
            value = (value + rng.choice((-1, 1))) % (1 << (8 * width))
        buffer[at : at + width] = value.to_bytes(width, rng.choice(("big", "little")))

    def _swap_spans(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        """Two fields trade places (a length where a count was, a port where an index was)."""
        if len(buffer) < 4:
            return
        rng = self.random
        size = rng.choice((1, 2, 4, 8))
        first, second = rng.randrange(len(buffer)), rng.randrange(len(buffer))
        a, b = bytes(buffer[first : first + size]), bytes(buffer[second : second + size])
        if len(a) == len(b):
            buffer[first : first + size], buffer[second : second + size] = b, a

    def _duplicate_span(self, buffer: bytearray, corpus: Sequence[bytes]) -> None:
        """A repeated record: arrays longer than their count says, or a count that now matches nothing."""
        if buffer:
            at = self._offset(buffer)
            span = bytes(buffer[at : at + self.random.choice((2, 5, 6, 8, 16))])
            buffer[at:at] = span * self.random.choice((1, 2, 8))

    # -- JSON moves ------------------------------------------------------------------------------
    def mutate_json(self, data: bytes) -> bytes | None:
        """The document with one value replaced, retyped or removed somewhere inside; None if data is not JSON."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            return None
        for _ in range(self.random.choice((1, 1, 2, 3))):
            doc = self._mutate_value(doc, depth=0)
        try:
            return json.dumps(doc).encode()
        except (ValueError, OverflowError, UnicodeEncodeError):
            return None

    def nest_deeply(self, data: bytes) -> bytes:
        """The input with a value nested DEEP_NESTING lists deep somewhere (at a JSON value's start, mostly)."""
        starts = [at for at in range(len(data)) if data[at : at + 1] in (b"[", b"{", b'"')] or [0]
        at = self.random.choice(starts)
        return data[:at] + b"[" * DEEP_NESTING + data[at:] + b"]" * DEEP_NESTING

    def _mutate_value(self, value: Any, depth: int) -> Any:
        rng = self.random
        if isinstance(value, dict) and value and depth < 8 and rng.random() < 0.8:
            key = rng.choice(sorted(value))
            choice = rng.random()
            if choice < 0.15:
                del value[key]
            elif choice < 0.22:
                value[key + rng.choice(("_", "x", ""))] = rng.choice(JSON_BOUNDARIES)
            else:
                value[key] = self._mutate_value(value[key], depth + 1)
            return value
        if isinstance(value, list) and value and depth < 8 and rng.random() < 0.8:
            index = rng.randrange(len(value))
            choice = rng.random()
            if choice < 0.15:
                del value[index]
            elif choice < 0.25:
                value.append(value[index])
            else:
                value[index] = self._mutate_value(value[index], depth + 1)
            return value
        return self._leaf(value)

    def _leaf(self, value: Any) -> Any:
        rng = self.random
        choice = rng.random()
        if choice < 0.45:
            return rng.choice(JSON_BOUNDARIES)
        if isinstance(value, bool) or value is None:
            return rng.choice((not value, 0, "true", None))
        if isinstance(value, int):
            return value + rng.choice((-1, 1, -(2**32), 2**32, 2**64))
        if isinstance(value, float):
            return rng.choice((-value, value * 1e300, value + 1e-9, int(value) if math.isfinite(value) else 0))
        if isinstance(value, str) and value:
            chars = list(value)
            at = rng.randrange(len(chars))
            move = rng.random()
            if move < 0.4:
                chars[at] = rng.choice("0f:/.-[]@ %\u00e9\u0000zZ9")
            elif move < 0.7:
                del chars[at]
            else:
                chars.insert(at, rng.choice("0f:/.-[]@ %"))
            return "".join(chars)
        return [value] if choice < 0.7 else {"x": value}

