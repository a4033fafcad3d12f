"""Field types shared by several messages: node ids, network ids, UDP endpoints (and the one Endpoint type)."""

from __future__ import annotations

import ipaddress

import construct as c

Endpoint = tuple[str, int]
"""A UDP endpoint as l2mesh passes it around: (host, port), as the socket module gives it."""

NodeIdField = c.BytesInteger(5)
"""A 40-bit node id, big-endian, as it reads in hex."""

NetworkIdField = c.Int64ub
"""A 64-bit network id, big-endian, as it reads in hex."""


class _EndpointAdapter(c.Adapter):
    """(ip address string, port) <-> family, raw address, port."""

    def _decode(self, obj: c.Container, context: object, path: str) -> tuple[str, int]:
        return str(ipaddress.ip_address(obj.address)), obj.port

    def _encode(self, obj: tuple[str, int], context: object, path: str) -> dict[str, object]:
        host, port = obj
        packed = ipaddress.ip_address(host).packed
        return {"family": 4 if len(packed) == 4 else 6, "address": packed, "port": port}


EndpointField = _EndpointAdapter(
    c.Struct(
        "family" / c.OneOf(c.Int8ub, [4, 6]),
        "address" / c.Switch(c.this.family, {4: c.Bytes(4), 6: c.Bytes(16)}),
        "port" / c.Int16ub,
    )
)
"""A UDP endpoint as (host, port): family 4 or 6, the address bytes, the port."""
