"""PCP (RFC 6887): the MAP and ANNOUNCE messages a member exchanges with its home router on UDP port 5351.

NAT-PMP's successor, on the same port; kept here with the other formats the
node speaks. Addresses are 16 bytes, IPv4 ones mapped (::ffff:a.b.c.d).
Every response carries the router's epoch (seconds since its mapping state
began), as NAT-PMP's does. A MAP is named by a random nonce: renewals and
the deletion repeat it, and an answer that does not carry it is not ours.
"""

from __future__ import annotations

import enum
import ipaddress

import construct as c

PCP_VERSION = 2
RESPONSE_BIT = 0x80
PROTOCOL_UDP = 17
NONCE_BYTES = 12
MAX_MESSAGE_BYTES = 1100  # RFC 6887 section 7: larger messages are not PCP
HEADER_BYTES = 24


class PcpOpcode(enum.IntEnum):
    ANNOUNCE = 0
    MAP = 1


class PcpResult(enum.IntEnum):
    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


class _MappedIPv4Adapter(c.Adapter):
    """16 bytes (::ffff:a.b.c.d) <-> "a.b.c.d"; an address that is not IPv4-mapped decodes as its IPv6 text."""

    def _decode(self, obj: bytes, context: object, path: str) -> str:
        address = ipaddress.IPv6Address(obj)
        return str(address.ipv4_mapped) if address.ipv4_mapped is not None else str(address)

    def _encode(self, obj: str, context: object, path: str) -> bytes:
        return ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(obj)}").packed


MappedIPv4Field = _MappedIPv4Adapter(c.Bytes(16))

NO_ADDRESS = "0.0.0.0"  # as a suggested external address: no preference (RFC 6887 section 11.1)


def _request_header(opcode: int) -> list[c.Subconstruct]:
    return [
        "version" / c.Const(PCP_VERSION, c.Int8ub),
        "opcode" / c.Const(opcode, c.Int8ub),  # R bit clear: a request
        "reserved" / c.Const(0, c.Int16ub),
        "lifetime_s" / c.Int32ub,  # 0 deletes (MAP) or asks nothing (ANNOUNCE)
        # The address the client sends from: the router refuses a mismatch (ADDRESS_MISMATCH), which is
        # how it notices a NAT between client and router.
        "client_ip" / MappedIPv4Field,
    ]


def _response_header(opcode: int) -> list[c.Subconstruct]:
    return [
        "version" / c.Const(PCP_VERSION, c.Int8ub),
        "opcode" / c.Const(RESPONSE_BIT | opcode, c.Int8ub),
        "reserved" / c.Const(0, c.Int8ub),
        "result" / c.Int8ub,
        # Granted lifetime on success; on an error, how long the error is expected to last.
        "lifetime_s" / c.Int32ub,
        "epoch_s" / c.Int32ub,
        "reserved2" / c.Bytes(12),
    ]


AnnounceRequest = "AnnounceRequest" / c.Struct(
    *_request_header(PcpOpcode.ANNOUNCE),
    c.Terminated,
)
"""Member -> router: are you there, and what is your epoch? (The periodic check for a router restart.)"""

AnnounceResponse = "AnnounceResponse" / c.Struct(
    *_response_header(PcpOpcode.ANNOUNCE),
    "options" / c.GreedyBytes,  # none asked for; ignored
)
"""Router -> member: its epoch."""

MapRequest = "MapRequest" / c.Struct(
    *_request_header(PcpOpcode.MAP),
    "nonce" / c.Bytes(NONCE_BYTES),
    "protocol" / c.Const(PROTOCOL_UDP, c.Int8ub),
    "reserved3" / c.Const(b"\x00\x00\x00", c.Bytes(3)),
    "internal_port" / c.Int16ub,
    "suggested_external_port" / c.Int16ub,  # the port held before, else the internal one
    "suggested_external_ip" / MappedIPv4Field,  # NO_ADDRESS: whatever the router has
    c.Terminated,
)
"""Member -> router: forward a UDP port of yours to internal_port of the client address, for lifetime_s."""

MapResponse = "MapResponse" / c.Struct(
    *_response_header(PcpOpcode.MAP),
    "nonce" / c.Bytes(NONCE_BYTES),
    "protocol" / c.Int8ub,
    "reserved3" / c.Bytes(3),
    "internal_port" / c.Int16ub,
    "external_port" / c.Int16ub,  # assigned: where peers send
    "external_ip" / MappedIPv4Field,  # assigned: the router's external address
    "options" / c.GreedyBytes,  # none asked for; ignored
)
"""Router -> member: the mapping granted (or the error, by result), for the request with this nonce."""

ResponseHeader = "ResponseHeader" / c.Struct(
    "version" / c.Int8ub,
    "opcode" / c.Int8ub,
    "reserved" / c.Int8ub,
    "result" / c.Int8ub,
    "lifetime_s" / c.Int32ub,
    "epoch_s" / c.Int32ub,
    "reserved2" / c.Bytes(12),
    "rest" / c.GreedyBytes,
)
"""Any response's common header: enough to read an error whose opcode body may be cut short."""
