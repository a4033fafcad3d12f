"""The few rtnetlink requests every node makes: list and set interface addresses, list policy rules.

Hand-packed with struct instead of pyroute2, which costs a daemon over 20 MiB
of memory (it imports asyncio and all its families at once) for requests of a
few dozen bytes. pyroute2 stays for managed routes and policy rules
(kernel_routes.py), imported only when a network has any to change.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_GETRULE = 34
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_DUMP = 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFLA_GSO_MAX_SIZE = 41
FRA_PRIORITY = 6

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_IFINFOMSG = struct.Struct("=BxHiII")  # family, device type, interface index, flags, change mask
_RTMSG = struct.Struct("=BBBBBBBBI")  # fib_rule_hdr has rtmsg's layout: family first
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type
_ERROR_CODE = struct.Struct("=i")
_RECEIVE_BYTES = 65536


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attribute(kind: int, value: bytes) -> bytes:
    body = _ATTRIBUTE.pack(_ATTRIBUTE.size + len(value), kind) + value
    return body + bytes(_align(len(body)) - len(body))


def attributes(data: bytes) -> dict[int, bytes]:
    """A message's attributes after its fixed header, by type (the last of a type wins)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _ATTRIBUTE.size <= len(data):
        length, kind = _ATTRIBUTE.unpack_from(data, offset)
        if length < _ATTRIBUTE.size:
            break
        found[kind & 0x3FFF] = data[offset + _ATTRIBUTE.size:offset + length]  # without the nested/byte-order flags
        offset += _align(length)
    return found


class RtNetlink:
    """One NETLINK_ROUTE socket: requests answered by an acknowledgement or a dump."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._sequence = 0

    def __enter__(self) -> RtNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _send(self, kind: int, flags: int, payload: bytes) -> int:
        self._sequence += 1
        self._sock.send(_HEADER.pack(_HEADER.size + len(payload), kind, flags | NLM_F_REQUEST, self._sequence, 0) + payload)
        return self._sequence

    def _replies(self, sequence: int) -> Iterator[tuple[int, bytes]]:
        """(type, body) of each answer to the request, up to its end; OSError if the kernel refused it."""
        while True:
            data = self._sock.recv(_RECEIVE_BYTES)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    return
                body = data[offset + _HEADER.size:offset + length]
                offset += _align(length)
                if seq != sequence:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -_ERROR_CODE.unpack_from(body)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return  # the acknowledgement
                yield kind, body

    def dump(self, kind: int, header: bytes) -> list[tuple[int, bytes]]:
        return list(self._replies(self._send(kind, NLM_F_DUMP, header)))

    def change(self, kind: int, flags: int, payload: bytes) -> None:
        for _ in self._replies(self._send(kind, flags | NLM_F_ACK, payload)):
            pass

    # -- links ------------------------------------------------------------------------------------------------
    def set_gso_max_size(self, index: int, size_bytes: int) -> None:
        """The largest offloaded (TSO) packet the kernel hands this interface (`ip link set ... gso_max_size`)."""
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + _attribute(IFLA_GSO_MAX_SIZE, struct.pack("=I", size_bytes))
        self.change(RTM_NEWLINK, 0, payload)

    # -- addresses --------------------------------------------------------------------------------------
    def ipv4_addresses(self, index: int | None = None) -> list[tuple[int, str]]:
        """(interface index, address) of every IPv4 address, or of one interface's."""
        out = []
        for _, body in self.dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, _, _, _, ifindex = _IFADDRMSG.unpack_from(body)
            address = attributes(body[_IFADDRMSG.size:]).get(IFA_ADDRESS)
            if family == socket.AF_INET and address is not None and len(address) == 4 and index in (None, ifindex):
                out.append((ifindex, socket.inet_ntoa(address)))
        return out

    def add_address(self, index: int, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        """OSError(EEXIST) when it is there already."""
        self.change(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, _address_request(index, interface))

    def delete_address(self, index: int, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        self.change(RTM_DELADDR, 0, _address_request(index, interface))

    # -- policy rules ---------------------------------------------------------------------------------------
    def rule_priorities(self, family: int) -> list[int]:
        """The priority of each policy rule of the family (0 for the rule that has none)."""
        out = []
        for _, body in self.dump(RTM_GETRULE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            priority = attributes(body[_RTMSG.size:]).get(FRA_PRIORITY)
            out.append(struct.unpack("=I", priority)[0] if priority is not None and len(priority) == 4 else 0)
        return out


def _address_request(index: int, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> bytes:
    """As `ip addr add/del` sends it: IPv4 with the address as both local and peer address, IPv6 with one."""
    family = socket.AF_INET if interface.version == 4 else socket.AF_INET6
    packed = interface.ip.packed
    request = _IFADDRMSG.pack(family, interface.network.prefixlen, 0, 0, index) + _attribute(IFA_ADDRESS, packed)
    return request + (_attribute(IFA_LOCAL, packed) if family == socket.AF_INET else b"")


def link_index(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def link_names() -> dict[int, str]:
    return dict(socket.if_nameindex())
