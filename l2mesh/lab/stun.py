"""A minimal STUN responder (RFC 5389 Binding) for the lab's "Internet": it tells a home router its WAN address.

Why the lab needs one: miniupnpd refuses port forwarding when its WAN
address lies in a reserved block, and the lab's underlay is 198.18.0.0/15
(RFC 2544 benchmarking), which it counts as reserved. With
`ext_perform_stun=yes` it asks a STUN server instead, and when every answer
shows its own address and port unchanged (no NAT and no filter above it),
it takes that address as public and maps ports. So this responder answers
every Binding request from where it came, with the source it saw, and
ignores CHANGE-REQUEST (it has one address and one port): miniupnpd only
needs the four answers, not where they come from.

Run inside a lab namespace: `python -m l2mesh.lab.stun --listen 198.18.1.1:3478`.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket

import construct as c

STUN_PORT = 3478
MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
MAX_DATAGRAM_BYTES = 2048

StunHeader = "StunHeader" / c.Struct(
    "message_type" / c.Int16ub,
    "length" / c.Int16ub,  # of the attributes that follow, in bytes
    "cookie" / c.Const(MAGIC_COOKIE, c.Int32ub),
    "transaction_id" / c.Bytes(12),
)
"""The 20-byte header of every STUN message (RFC 5389 section 6)."""

XorMappedAddress = "XorMappedAddress" / c.Struct(
    "type" / c.Const(XOR_MAPPED_ADDRESS, c.Int16ub),
    "length" / c.Const(8, c.Int16ub),
    "reserved" / c.Const(0, c.Int8ub),
    "family" / c.Const(1, c.Int8ub),  # IPv4
    "x_port" / c.Int16ub,  # port XOR the cookie's top 16 bits
    "x_address" / c.Int32ub,  # address XOR the cookie
)
"""The requester's address as seen here, XOR-ed with the magic cookie (RFC 5389 section 15.2)."""


def binding_response(request: bytes, source: tuple[str, int]) -> bytes | None:
    """The Binding success response to a request from source, or None for anything that is not an IPv4 Binding request."""
    try:
        header = StunHeader.parse(request)
    except c.ConstructError:
        return None
    address = ipaddress.ip_address(source[0])
    if header.message_type != BINDING_REQUEST or address.version != 4:
        return None
    attribute = XorMappedAddress.build(
        {"x_port": source[1] ^ (MAGIC_COOKIE >> 16), "x_address": int(address) ^ MAGIC_COOKIE}
    )
    return StunHeader.build(
        {"message_type": BINDING_SUCCESS, "length": len(attribute), "transaction_id": header.transaction_id}
    ) + attribute


def serve(listen: tuple[str, int]) -> None:
    """Answer Binding requests until killed (the lab stops it by PID)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(listen)
        print(f"STUN responder on {listen[0]}:{listen[1]}", flush=True)
        while True:
            data, source = sock.recvfrom(MAX_DATAGRAM_BYTES)
            response = binding_response(data, source)
            if response is not None:
                sock.sendto(response, source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="IP:PORT inside the lab")
    host, _, port = parser.parse_args().listen.rpartition(":")
    serve((host, int(port)))


if __name__ == "__main__":
    main()
