"""Entry points that parse any outer packet or inner message, raising only ParseError."""

from __future__ import annotations

from typing import Any

from l2mesh.wire.errors import parse_tagged
from l2mesh.wire.messages import MESSAGES, MessageKind
from l2mesh.wire.packets import PACKETS, PacketType


def parse_packet(data: bytes | memoryview) -> tuple[PacketType, Any]:
    tag, parsed = parse_tagged(PACKETS, data)
    return PacketType(tag), parsed


def parse_message(data: bytes | memoryview) -> tuple[MessageKind, Any]:
    tag, parsed = parse_tagged(MESSAGES, data)
    return MessageKind(tag), parsed
