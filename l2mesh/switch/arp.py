"""ARP emulation: who holds an IPv4 address, and replies built locally so requests need not cross the network.

Addresses come from the network config (managed IPs: authoritative), from
members' announcements of the addresses on their TAPs (ARP groups), and from
ARP traffic seen from peers (learned, with aging; for hosts behind bridges).
"""

from __future__ import annotations

from dataclasses import dataclass

import dpkt

ETHERTYPE_ARP = 0x0806
ARP_REQUEST = dpkt.arp.ARP_OP_REQUEST
ARP_REPLY = dpkt.arp.ARP_OP_REPLY
ARP_AGING_S = 300.0
MAX_LEARNED_ADDRESSES = 16384
_UNSPECIFIED = b"\0\0\0\0"


@dataclass
class ArpRequest:
    sender_mac: bytes
    sender_ip: bytes
    target_ip: bytes


def parse_arp(frame: bytes | memoryview) -> dpkt.arp.ARP | None:
    """The ARP packet in an Ethernet/IPv4 ARP frame, or None if it is not a well-formed one."""
    try:
        arp = dpkt.arp.ARP(bytes(frame[14:42]))
    except (dpkt.UnpackError, dpkt.NeedData):
        return None
    if arp.hrd != dpkt.arp.ARP_HRD_ETH or arp.pro != 0x0800 or arp.hln != 6 or arp.pln != 4:
        return None
    return arp


def build_reply(request: ArpRequest, owner_mac: bytes) -> bytes:
    """The reply the owner of request.target_ip would send to the requester."""
    arp = dpkt.arp.ARP(
        op=ARP_REPLY, sha=owner_mac, spa=request.target_ip, tha=request.sender_mac, tpa=request.sender_ip
    )
    return bytes(dpkt.ethernet.Ethernet(dst=request.sender_mac, src=owner_mac, type=ETHERTYPE_ARP, data=arp))


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
