"""Node ids, network ids and member MACs: parsing, formatting and derivation.

A node id is 40 bits (10 hex digits) hashed from a node's public keys, as in
ZeroTier; a network id is 64 bits: the controller's node id followed by a
24-bit network number, so the id names the controller that governs it.
"""

from __future__ import annotations

import hashlib
import re

from l2mesh.errors import InvalidId

NODE_ID_BITS = 40
NETWORK_NUMBER_BITS = 24
NODE_ID_MASK = (1 << NODE_ID_BITS) - 1
NETWORK_NUMBER_MASK = (1 << NETWORK_NUMBER_BITS) - 1

_NODE_ID_RE = re.compile(r"[0-9a-fA-F]{10}")
_NETWORK_ID_RE = re.compile(r"[0-9a-fA-F]{16}")
_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def is_reserved_node_id(node_id: int) -> bool:
    """Ids 0 and 0xff........ are kept back, as ZeroTier does, for future special addresses."""
    return node_id == 0 or (node_id >> 32) == 0xFF


def parse_node_id(text: str) -> int:
    if not isinstance(text, str) or not _NODE_ID_RE.fullmatch(text.strip()):
        raise InvalidId(f"invalid node id {text!r}: expected 10 hex digits")
    # The digits as matched: int() strips less than str.strip() does ("\x1f" is whitespace to one only).
    value = int(text.strip(), 16)
    if is_reserved_node_id(value):
        raise InvalidId(f"invalid node id {text!r}: reserved value")
    return value


def format_node_id(node_id: int) -> str:
    return f"{node_id:010x}"


def parse_network_id(text: str) -> int:
    if not isinstance(text, str) or not _NETWORK_ID_RE.fullmatch(text.strip()):
        raise InvalidId(f"invalid network id {text!r}: expected 16 hex digits")
    value = int(text.strip(), 16)
    if is_reserved_node_id(controller_of(value)):
        raise InvalidId(f"invalid network id {text!r}: its controller part is a reserved node id")
    return value


def format_network_id(network_id: int) -> str:
    return f"{network_id:016x}"


def make_network_id(controller_id: int, network_number: int) -> int:
    if not 0 <= network_number <= NETWORK_NUMBER_MASK:
        raise InvalidId(f"network number {network_number} does not fit in 24 bits")
    return ((controller_id & NODE_ID_MASK) << NETWORK_NUMBER_BITS) | network_number


def controller_of(network_id: int) -> int:
    return (network_id >> NETWORK_NUMBER_BITS) & NODE_ID_MASK


def _mac_mask(network_id: int) -> bytes:
    # Six bytes hashed from the whole network id, so one node gets unrelated
    # MACs on different networks (even networks 1, 2, 3 of one controller).
    return hashlib.blake2b(network_id.to_bytes(8, "big"), digest_size=6, person=b"l2mesh-mac").digest()


def _mac_first_byte(mask: bytes) -> int:
    # Locally administered (bit 1 set), unicast (bit 0 clear).
    return (mask[0] & 0xFC) | 0x02


def member_mac(node_id: int, network_id: int) -> bytes:
    """The MAC a member uses on a network: invertible, so a MAC names its node."""
    mask = _mac_mask(network_id)
    rest = (node_id ^ int.from_bytes(mask[1:], "big")) & NODE_ID_MASK
    return bytes([_mac_first_byte(mask)]) + rest.to_bytes(5, "big")


def node_of_member_mac(mac: bytes, network_id: int) -> int | None:
    """The node id a member MAC was derived from, or None if it cannot be a member MAC."""
    mask = _mac_mask(network_id)
    if len(mac) != 6 or mac[0] != _mac_first_byte(mask):
        return None
    return int.from_bytes(mac[1:], "big") ^ int.from_bytes(mask[1:], "big")


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    if not isinstance(text, str) or not _MAC_RE.fullmatch(text.strip()):
        raise InvalidId(f"invalid MAC {text!r}: expected six colon-separated hex bytes")
    return bytes(int(part, 16) for part in text.strip().split(":"))
