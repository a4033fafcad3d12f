"""ARP emulation: who holds an IPv4 address, and replies built locally so requests need not cross the network.

Addresses come from the network config (managed IPs: authoritative), from
members' announcements of the addresses on their TAPs (ARP groups), and from
ARP traffic seen from peers (learned, with aging; for hosts behind bridges).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Sliced with struct, not dpkt: importing dpkt costs a daemon 5 MiB of memory for these 28 bytes.
ETHERTYPE_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2
ARP_AGING_S = 300.0
MAX_LEARNED_ADDRESSES = 16384
_UNSPECIFIED = b"\0\0\0\0"
_HARDWARE_ETHERNET = 1
_PROTOCOL_IPV4 = 0x0800
_ARP_ETHERNET_IPV4 = struct.Struct("!HHBBH6s4s6s4s")  # hrd, pro, hln, pln, op, sha, spa, tha, tpa: 28 bytes
_ETHERNET_HEADER = struct.Struct("!6s6sH")


@dataclass
class ArpRequest:
    sender_mac: bytes
    sender_ip: bytes
    target_ip: bytes


@dataclass(frozen=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet's fields that matter here (names as in RFC 826)."""

    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


def parse_arp(frame: bytes | memoryview) -> ArpPacket | None:
    """The ARP packet in an Ethernet/IPv4 ARP frame, or None if it is not a well-formed one."""
    body = bytes(frame[14:42])
    if len(body) < _ARP_ETHERNET_IPV4.size:
        return None
    hrd, pro, hln, pln, op, sha, spa, tha, tpa = _ARP_ETHERNET_IPV4.unpack(body)
    if hrd != _HARDWARE_ETHERNET or pro != _PROTOCOL_IPV4 or hln != 6 or pln != 4:
        return None
    return ArpPacket(op, sha, spa, tha, tpa)


def build_reply(request: ArpRequest, owner_mac: bytes) -> bytes:
    """The reply the owner of request.target_ip would send to the requester."""
    return _ETHERNET_HEADER.pack(request.sender_mac, owner_mac, ETHERTYPE_ARP) + _ARP_ETHERNET_IPV4.pack(
        _HARDWARE_ETHERNET, _PROTOCOL_IPV4, 6, 4, ARP_REPLY,
        owner_mac, request.target_ip, request.sender_mac, request.sender_ip,
    )


class ArpTable:
    def __init__(self, aging_s: float = ARP_AGING_S) -> None:
        self.aging_s = aging_s
        self.managed: dict[bytes, tuple[bytes, int]] = {}  # ip -> (mac, node id), from the config
        self.learned: dict[bytes, tuple[bytes, int, float]] = {}  # ip -> (mac, node id, seen at)

    def set_managed(self, entries: dict[bytes, tuple[bytes, int]]) -> None:
        self.managed = entries
        for ip in [ip for ip in self.learned if ip in entries]:
            del self.learned[ip]

    def learn(self, ip: bytes, mac: bytes, node_id: int, now: float) -> None:
        if ip == _UNSPECIFIED or ip in self.managed:
            return
        if len(self.learned) >= MAX_LEARNED_ADDRESSES and ip not in self.learned:
            self.expire(now)
            if len(self.learned) >= MAX_LEARNED_ADDRESSES:
                del self.learned[next(iter(self.learned))]
        self.learned[ip] = (mac, node_id, now)

    def lookup(self, ip: bytes, now: float) -> tuple[bytes, int] | None:
        entry = self.managed.get(ip)
        if entry is not None:
            return entry
        learned = self.learned.get(ip)
        if learned is None:
            return None
        if now - learned[2] > self.aging_s:
            del self.learned[ip]
            return None
        return learned[0], learned[1]

    def forget_node(self, node_id: int) -> None:
        for ip in [ip for ip, e in self.learned.items() if e[1] == node_id]:
            del self.learned[ip]

    def expire(self, now: float) -> None:
        for ip in [ip for ip, e in self.learned.items() if now - e[2] > self.aging_s]:
            del self.learned[ip]
