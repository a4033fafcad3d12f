"""NAT-PMP (RFC 6886): the messages a member exchanges with its home router on UDP port 5351.

Not l2mesh's own protocol but the router's, kept here with ours so that
every byte format the node speaks is in one place. All fields are
big-endian. A request is version 0 and an opcode; the answer carries the
opcode plus 128, a result code and the router's epoch (seconds since its
mapping table started, which is how a client notices a restart).
"""

from __future__ import annotations

import enum
import ipaddress

import construct as c

NATPMP_PORT = 5351
NATPMP_VERSION = 0
RESPONSE_BIT = 128


class Opcode(enum.IntEnum):
    EXTERNAL_ADDRESS = 0
    MAP_UDP = 1
    MAP_TCP = 2


class ResultCode(enum.IntEnum):
    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2  # refused: the router's owner disabled mapping, or secure mode
    NETWORK_FAILURE = 3  # the router has no external address yet (no DHCP lease upstream)
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class _IPv4Adapter(c.Adapter):
    """Four bytes <-> dotted quad."""

    def _decode(self, obj: bytes, context: object, path: str) -> str:
        return str(ipaddress.IPv4Address(obj))

    def _encode(self, obj: str, context: object, path: str) -> bytes:
        return ipaddress.IPv4Address(obj).packed


IPv4Field = _IPv4Adapter(c.Bytes(4))


def _header(opcode: int) -> list[c.Subconstruct]:
    return ["version" / c.Const(NATPMP_VERSION, c.Int8ub), "opcode" / c.Const(opcode, c.Int8ub)]


ExternalAddressRequest = "ExternalAddressRequest" / c.Struct(
    *_header(Opcode.EXTERNAL_ADDRESS),
    c.Terminated,
)
"""Member -> router: what is your external IPv4 address? (Also a cheap poll of the router's epoch.)"""

ExternalAddressResponse = "ExternalAddressResponse" / c.Struct(
    *_header(RESPONSE_BIT + Opcode.EXTERNAL_ADDRESS),
    "result" / c.Int16ub,
    "epoch_s" / c.Int32ub,
    # 0.0.0.0 while the router has none; meaningful only with result SUCCESS.
    "external_ip" / IPv4Field,
    c.Terminated,
)
"""Router -> member: its external address, the address peers on the Internet see."""

MappingRequest = "MappingRequest" / c.Struct(
    "version" / c.Const(NATPMP_VERSION, c.Int8ub),
    "opcode" / c.OneOf(c.Int8ub, [Opcode.MAP_UDP, Opcode.MAP_TCP]),
    "reserved" / c.Const(0, c.Int16ub),
    "internal_port" / c.Int16ub,
    # A hint the router may ignore: the port held before (renewals), else the internal one; 0 when deleting.
    "suggested_external_port" / c.Int16ub,
    # 0 deletes the mapping (on exit).
    "lifetime_s" / c.Int32ub,
    c.Terminated,
)
"""Member -> router: forward external port (the router picks) to this host's internal_port for lifetime_s."""

MappingResponse = "MappingResponse" / c.Struct(
    "version" / c.Const(NATPMP_VERSION, c.Int8ub),
    "opcode" / c.OneOf(c.Int8ub, [RESPONSE_BIT + Opcode.MAP_UDP, RESPONSE_BIT + Opcode.MAP_TCP]),
    "result" / c.Int16ub,
    "epoch_s" / c.Int32ub,
    "internal_port" / c.Int16ub,
    "external_port" / c.Int16ub,  # the port peers send to; may differ from the one suggested
    "lifetime_s" / c.Int32ub,  # granted, possibly less than asked
    c.Terminated,
)
"""Router -> member: the mapping granted (or refused, by result)."""

ERROR_RESPONSE_BYTES = 8
ErrorResponse = "ErrorResponse" / c.Struct(
    "version" / c.Const(NATPMP_VERSION, c.Int8ub),
    "opcode" / c.Int8ub,
    "result" / c.Int16ub,
    "epoch_s" / c.Int32ub,
    c.Terminated,
)
"""Router -> member: the short answer RFC 6886 section 3.5 allows for an unsupported version or opcode."""
