"""What a rule can test in a frame, read once per frame into a tuple of integers.

Every field is an integer so that a compiled rule set only ever compares
integers with precomputed bounds (compile.py). A field a frame does not have
(ports of an ARP frame, addresses of a raw 0x88b5 frame) is ABSENT, below
every real value, so `dport 22` is false for it and `not dport 22` true.

Hand-sliced with struct, not dpkt: this runs for every frame of a network
that has rules; tests check it against dpkt's reading of the same frames.
"""

from __future__ import annotations

import struct

ABSENT = -1
# Field indices into the tuple frame_fields() returns.
ETHERTYPE = 0
CAST = 1  # UNICAST, MULTICAST or BROADCAST destination
SRC_MAC = 2
DST_MAC = 3
PROTOCOL = 4  # IPv4 protocol, or IPv6's last next-header
SRC_IP = 5  # IPv4 as its 32-bit integer, IPv6 as IPV6_FLAG | its 128-bit integer: the two never overlap
DST_IP = 6
SPORT = 7  # TCP and UDP only
DPORT = 8
TCP_ONGOING = 9  # 1: a TCP segment that cannot open a connection (anything but SYN without ACK)
RESOLUTION = 10  # 1: ARP, or IPv6 neighbour discovery (ICMPv6 133-137)
FIELD_COUNT = 11

UNICAST, MULTICAST, BROADCAST = 0, 1, 2
IPV6_FLAG = 1 << 128

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
# 802.1Q and 802.1ad: rules see the frame's real type behind up to two VLAN tags,
# so tagging a frame is no way around an IP rule.
_VLAN_TYPES = (0x8100, 0x88A8)
_TCP_PROTOCOL, _UDP_PROTOCOL, _ICMPV6_PROTOCOL = 6, 17, 58
_SYN, _ACK = 0x02, 0x10
_ND_FIRST, _ND_LAST = 133, 137  # router solicitation .. redirect
# IPv6 extension headers walked to find the transport header (hop-by-hop,
# routing, destination options; fragment and AH have their own layout).
_IPV6_OPTION_HEADERS = (0, 43, 60)
_IPV6_FRAGMENT, _IPV6_AH = 44, 51
_MAX_IPV6_HEADERS = 8

_ETHERNET = struct.Struct("!HIHIH")  # destination and source MACs as 16 + 32 bits each, type
_IPV4 = struct.Struct("!B5xHxB2xII")  # version/IHL, flags/fragment offset, protocol, source, destination
_TCP = struct.Struct("!HH9xB")  # ports, flags
_PORTS = struct.Struct("!HH")
_IPV6_ADDRESSES = struct.Struct("!QQQQ")
_BROADCAST_MAC_INT = 0xFFFFFFFFFFFF


def frame_fields(frame: bytes | memoryview) -> tuple[int, ...]:
    """The fields of an Ethernet frame (at least 14 bytes); a truncated header leaves its fields ABSENT."""
    dst_high, dst_low, src_high, src_low, ethertype = _ETHERNET.unpack_from(frame)
    dst_mac = dst_high << 32 | dst_low
    if not dst_high & 0x0100:  # the group bit of the first octet
        cast = UNICAST
    else:
        cast = BROADCAST if dst_mac == _BROADCAST_MAC_INT else MULTICAST
    at = 14
    if ethertype in _VLAN_TYPES:
        ethertype, at = _behind_vlan_tags(frame, ethertype)
    size = len(frame)
    protocol = src_ip = dst_ip = sport = dport = ABSENT
    ongoing = resolution = 0
    transport = ABSENT  # where the transport header starts, if the frame has one we can read
    if ethertype == ETHERTYPE_IPV4:
        if size >= at + 20:
            version_ihl, fragment, protocol, src_ip, dst_ip = _IPV4.unpack_from(frame, at)
            # Later fragments carry no transport header; an IHL below 5 is no header at all.
            if not fragment & 0x1FFF and version_ihl & 15 >= 5:
                transport = at + (version_ihl & 15) * 4
    elif ethertype == ETHERTYPE_IPV6:
        if size >= at + 40:
            s1, s2, d1, d2 = _IPV6_ADDRESSES.unpack_from(frame, at + 8)
            src_ip = IPV6_FLAG | s1 << 64 | s2
            dst_ip = IPV6_FLAG | d1 << 64 | d2
            protocol, transport = _ipv6_transport(frame, frame[at + 6], at + 40)
    elif ethertype == ETHERTYPE_ARP:
        resolution = 1
    if protocol == _TCP_PROTOCOL:
        if transport != ABSENT and size >= transport + 14:
            sport, dport, flags = _TCP.unpack_from(frame, transport)
            ongoing = 0 if flags & (_SYN | _ACK) == _SYN else 1
        else:
            ongoing = 1  # no flags to read: nothing that could open a connection
    elif protocol == _UDP_PROTOCOL:
        if transport != ABSENT and size >= transport + 4:
            sport, dport = _PORTS.unpack_from(frame, transport)
    elif protocol == _ICMPV6_PROTOCOL and transport != ABSENT and size > transport:
        resolution = 1 if _ND_FIRST <= frame[transport] <= _ND_LAST else 0
    return (
        ethertype, cast, src_high << 32 | src_low, dst_mac, protocol, src_ip, dst_ip, sport, dport, ongoing, resolution
    )


def _behind_vlan_tags(frame: bytes | memoryview, ethertype: int) -> tuple[int, int]:
    """(the type behind up to two VLAN tags, where its header starts)."""
    at = 14
    for _ in range(2):
        if ethertype not in _VLAN_TYPES or len(frame) < at + 4:
            break
        ethertype = frame[at + 2] << 8 | frame[at + 3]
        at += 4
    return ethertype, at


def _ipv6_transport(frame: bytes | memoryview, next_header: int, at: int) -> tuple[int, int]:
    """(protocol, offset of its header) past IPv6 extension headers; offset ABSENT if unreadable or a later fragment."""
    size = len(frame)
    for _ in range(_MAX_IPV6_HEADERS):
        if next_header in _IPV6_OPTION_HEADERS:
            if size < at + 8:
                return next_header, ABSENT
            next_header, at = frame[at], at + (frame[at + 1] + 1) * 8
        elif next_header == _IPV6_FRAGMENT:
            if size < at + 8:
                return next_header, ABSENT
            if (frame[at + 2] << 8 | frame[at + 3]) & 0xFFF8:
                return frame[at], ABSENT
            next_header, at = frame[at], at + 8
        elif next_header == _IPV6_AH:
            if size < at + 8:
                return next_header, ABSENT
            next_header, at = frame[at], at + (frame[at + 1] + 2) * 4
        else:
            return next_header, at
    return next_header, ABSENT
