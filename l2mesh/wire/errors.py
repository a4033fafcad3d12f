"""The one error every parser in l2mesh.wire raises on bytes it cannot accept."""

from __future__ import annotations

from typing import Any

import construct


class ParseError(ValueError):
    """Truncated, oversized, malformed or unknown bytes from the network."""


def parse_exact(definition: construct.Construct, data: bytes | memoryview) -> Any:
    """Parse data with definition, turning every failure (construct's or a codec's) into ParseError."""
    try:
        return definition.parse(bytes(data))
    except ParseError:
        raise
    except Exception as exc:  # construct raises many unrelated types on hostile input
        raise ParseError(f"{getattr(definition, 'name', None) or 'message'}: {type(exc).__name__}") from None


def parse_tagged(definitions: dict[Any, construct.Construct], data: bytes | memoryview) -> tuple[Any, Any]:
    """(tag, parsed) for data whose first byte selects one of definitions."""
    if not data:
        raise ParseError("empty message")
    definition = definitions.get(data[0])
    if definition is None:
        raise ParseError(f"unknown message type {data[0]}")
    return data[0], parse_exact(definition, data)


def parse_or_none(definition: construct.Construct, data: bytes | memoryview) -> Any:
    """The parsed message, or None for bytes parse_exact refuses (the caller counts the drop)."""
    try:
        return parse_exact(definition, data)
    except ParseError:
        return None
