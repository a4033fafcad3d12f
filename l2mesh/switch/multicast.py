"""Who listens to which multicast group: subscriptions members announced, with expiry.

A group is ZeroTier's (MAC, ADI) pair: the multicast MAC, plus 32 bits of
"additional distinguishing information" that is an IPv4 address for ARP
(group ff:ff:ff:ff:ff:ff/<ip> = "I own this IPv4 address") and 0 otherwise.
Delivery goes to every subscriber: there is no fixed fan-out cap.
"""

from __future__ import annotations

from collections import Counter, defaultdict

BROADCAST_MAC = b"\xff\xff\xff\xff\xff\xff"


def group_key(mac: bytes, adi: int = 0) -> bytes:
    return bytes(mac) + adi.to_bytes(4, "big")


def group_fields(group: bytes) -> dict[str, bytes | int]:
    """A group as the wire's MulticastGroup fields (the inverse of group_key)."""
    return {"mac": group[:6], "adi": int.from_bytes(group[6:], "big")}


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

    def expire(self, now: float) -> list[tuple[bytes, int]]:
        """Forget subscriptions past their expiry; returns the (group, node) pairs forgotten."""
        gone = []
        for group, members in list(self._subscribers.items()):
            for node_id in [n for n, expires_s in members.items() if expires_s <= now]:
                self._remove(group, node_id)
                gone.append((group, node_id))
        return gone

    def group_count(self) -> int:
        return len(self._subscribers)

    def _remove(self, group: bytes, node_id: int) -> None:
        members = self._subscribers.get(group)
        if members is not None:
            members.pop(node_id, None)
            if not members:
                del self._subscribers[group]
        groups = self._groups_of.get(node_id)
        if groups is not None:
            groups.discard(group)


# A gathered answer is used this long (controller offline: multicast to the
# groups already gathered keeps working this long), asked again once older
# than GATHER_REFRESH_S while in use, and asked again after GATHER_RETRY_S
# when unanswered. The controller also pushes changes meanwhile.
GATHERED_TTL_S = 120.0
GATHER_REFRESH_S = 30.0
GATHER_RETRY_S = 1.0
MAX_GATHERED_GROUPS = 4096  # per network: groups our TAP sends to, not the groups that exist
MAX_GATHERS_PER_TICK = 64  # a TAP spraying random groups asks a few at a time (the rest stays wanted)


class Gathered:
    """One group's subscribers as the controller last told them, and the question in flight."""

    __slots__ = ("subscribers", "answered_s", "asked_s", "gather_id", "pages", "pending")

    def __init__(self) -> None:
        self.subscribers: set[int] = set()
        self.answered_s: float | None = None
        self.asked_s: float | None = None
        self.gather_id = 0
        self.pages: set[int] = set()  # pages of gather_id received so far
        self.pending: set[int] = set()  # their subscribers, used once every page is in


class GatheredGroups:
    """Subscribers gathered from the controller, per group, for the groups this member sends to."""

    def __init__(self, drops: Counter[str]) -> None:
        self.drops = drops
        self.entries: dict[bytes, Gathered] = {}
        self.wanted: set[bytes] = set()  # groups to gather (again) at the next tick
        self._renew: set[bytes] = set()  # to gather again even if fresh (the controller restarted)
        self._next_gather_id = 1

    def subscribers(self, group: bytes, now: float) -> set[int]:
        """The group's subscribers to send to now (maybe none yet); asks for an answer when there is none or it is old."""
        entry = self.entries.get(group)
        if entry is None or entry.answered_s is None or now - entry.answered_s >= GATHER_REFRESH_S:
            self.wanted.add(group)
            if entry is None or entry.answered_s is None or now - entry.answered_s >= GATHERED_TTL_S:
                return set()
        return entry.subscribers

    def due(self, now: float) -> list[tuple[bytes, int]]:
        """The (group, gather id) questions to send now (at most MAX_GATHERS_PER_TICK), taken off the wanted set."""
        questions: list[tuple[bytes, int]] = []
        for group in list(self.wanted | self._renew):
            if len(questions) >= MAX_GATHERS_PER_TICK:
                break
            self.wanted.discard(group)
            renew = group in self._renew
            self._renew.discard(group)
            entry = self.entries.get(group)
            if entry is None:
                if len(self.entries) >= MAX_GATHERED_GROUPS:
                    self.drops["gathered_groups_full"] += 1
                    continue
                entry = self.entries[group] = Gathered()
            if entry.asked_s is not None and now - entry.asked_s < GATHER_RETRY_S:
                continue  # in flight
            if entry.answered_s is not None and now - entry.answered_s < GATHER_REFRESH_S and not renew:
                continue  # answered since it was wanted
            entry.asked_s = now
            entry.gather_id = self._next_gather_id
            self._next_gather_id = self._next_gather_id % 0xFFFFFFFF + 1
            entry.pages.clear()
            entry.pending.clear()
            questions.append((group, entry.gather_id))
        return questions

    def ask_all_again(self) -> None:
        """Gather every group again at the next tick: a restarted controller forgot who to push changes to."""
        self._renew.update(self.entries)

    def page(self, group: bytes, gather_id: int, index: int, count: int, subscribers: list[int], now: float) -> bool:
        """One page of an answer; True when it completed the answer (the subscribers were replaced)."""
        entry = self.entries.get(group)
        if entry is None or entry.asked_s is None or gather_id != entry.gather_id:
            self.drops["gather_reply_unexpected"] += 1
            return False
        entry.pages.add(index)
        entry.pending.update(subscribers)
        if len(entry.pages) < count:
            return False
        entry.subscribers, entry.pending = entry.pending, set()
        entry.pages.clear()
        entry.answered_s = now
        entry.asked_s = None
        return True

    def changed(self, group: bytes, added: list[int], removed: list[int]) -> bool:
        """The controller says a group we gathered changed; False (ignored) for a group we never asked about."""
        entry = self.entries.get(group)
        if entry is None or entry.answered_s is None:
            self.drops["subscribers_change_unexpected"] += 1
            return False
        entry.subscribers.difference_update(removed)
        entry.subscribers.update(added)
        return True

    def keep_only(self, node_ids: set[int]) -> None:
        for entry in self.entries.values():
            entry.subscribers &= node_ids

    def expire(self, now: float) -> None:
        for group in [g for g, e in self.entries.items() if _stale(e, now)]:
            del self.entries[group]


def _stale(entry: Gathered, now: float) -> bool:
    """An answer past its TTL with no question in flight: the group is no longer sent to."""
    if entry.asked_s is not None and now - entry.asked_s < GATHERED_TTL_S:
        return False
    return entry.answered_s is None or now - entry.answered_s >= GATHERED_TTL_S
