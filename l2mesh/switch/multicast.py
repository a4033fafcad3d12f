"""Who listens to which multicast group: subscriptions members announced, with expiry.

A group is ZeroTier's (MAC, ADI) pair: the multicast MAC, plus 32 bits of
"additional distinguishing information" that is an IPv4 address for ARP
(group ff:ff:ff:ff:ff:ff/<ip> = "I own this IPv4 address") and 0 otherwise.
Delivery goes to every subscriber: there is no fixed fan-out cap.
"""

from __future__ import annotations

from collections import defaultdict

BROADCAST_MAC = b"\xff\xff\xff\xff\xff\xff"


def group_key(mac: bytes, adi: int = 0) -> bytes:
    return bytes(mac) + adi.to_bytes(4, "big")


def arp_group(ipv4: bytes) -> bytes:
    """The group a member joins for each IPv4 address it holds, so ARP for it reaches only it."""
    return BROADCAST_MAC + bytes(ipv4)


class MulticastGroups:
    def __init__(self) -> None:
        self._subscribers: dict[bytes, dict[int, float]] = defaultdict(dict)  # group -> node -> expires_s
        self._groups_of: dict[int, set[bytes]] = {}

    def replace(self, node_id: int, groups: set[bytes], expires_s: float) -> bool:
        """Set a node's complete group list; True if it changed."""
        old = set(self._groups_of.get(node_id, ()))
        for group in old - groups:
            self._remove(group, node_id)
        for group in groups:
            self._subscribers[group][node_id] = expires_s
        self._groups_of[node_id] = set(groups)
        return old != groups

    def subscribers(self, group: bytes, now: float) -> list[int]:
        members = self._subscribers.get(group)
        if not members:
            return []
        live = [node for node, expires_s in members.items() if expires_s > now]
        if len(live) != len(members):
            for node in [n for n, e in members.items() if e <= now]:
                self._remove(group, node)
        return live

    def groups_of(self, node_id: int) -> set[bytes]:
        return set(self._groups_of.get(node_id, ()))

    def forget_node(self, node_id: int) -> None:
        for group in self._groups_of.pop(node_id, set()):
            self._remove(group, node_id)

    def keep_only(self, node_ids: set[int]) -> None:
        for node_id in [n for n in self._groups_of if n not in node_ids]:
            self.forget_node(node_id)

    def expire(self, now: float) -> None:
        for group in list(self._subscribers):
            self.subscribers(group, now)

    def _remove(self, group: bytes, node_id: int) -> None:
        members = self._subscribers.get(group)
        if members is not None:
            members.pop(node_id, None)
            if not members:
                del self._subscribers[group]
        groups = self._groups_of.get(node_id)
        if groups is not None:
            groups.discard(group)
