"""Multicast subscriptions the controller gathers and serves (ZeroTier's MULTICAST_LIKE / MULTICAST_GATHER), sans-IO.

Members like their groups here instead of announcing them to every other
member; a member about to send to a group gathers its subscribers, in
pages, however many there are (no fixed cap). Who gathered a group recently
is told at once when the group gains or loses a subscriber, so a new
listener hears the group's traffic within a round trip. Everything is
bounded per member, so a hostile member grows these tables by a fixed
amount at most; what is refused is counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from l2mesh.ratelimit import KeyedLimit
from l2mesh.switch.multicast import GATHERED_TTL_S, MulticastGroups, group_fields
from l2mesh.wire.messages import MulticastSubscribersChanged, pack_gather_reply_page

MAX_LIKE_TTL_S = 600  # a member cannot make us keep its groups longer than this without a refresh
MAX_GROUPS_PER_MEMBER = 1024  # per network; a kernel joins a few dozen
MAX_WATCHED_GROUPS_PER_MEMBER = 256  # groups a member is told about when they change; past it, it gathers again
# A member is told of changes for as long as it may still use its answer.
WATCH_S = GATHERED_TTL_S
GATHER_PAGE_SUBSCRIBERS = 200  # 1 KiB of node ids: one page fits one datagram
GATHERS_PER_MEMBER_PER_S = 20.0
GATHER_BURST = 100.0
# A member likes on each change of its kernel's groups (polled every 0.25 s) and every minute, in
# pages of 100 groups: legitimate bursts stay far below; each LIKE costs a set update and pushes.
LIKES_PER_MEMBER_PER_S = 10.0
LIKE_BURST = 40.0
MAX_LIMITED_MEMBERS = 65536
PUSH_IDS_PER_MESSAGE = 200


@dataclass
class NetworkSubscriptions:
    """One network's groups: who listens (liked, with expiry) and who asked recently (watching, with expiry)."""

    groups: MulticastGroups = field(default_factory=MulticastGroups)
    # group -> its subscribers' node ids, sorted and packed five bytes each: built once per change,
    # not per GATHER (a big group is gathered by many members).
    packed: dict[bytes, bytes] = field(default_factory=dict)
    watchers: dict[bytes, dict[int, float]] = field(default_factory=dict)  # group -> node -> until_s
    watched_by: dict[int, set[bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class Push:
    """A message for some online members (the core seals one copy per member)."""

    node_ids: tuple[int, ...]
    message: bytes


class MulticastRegistry:
    def __init__(self, drops: Counter[str]) -> None:
        self.drops = drops
        self.networks: dict[int, NetworkSubscriptions] = {}
        self._gathers = KeyedLimit("multicast_gather_rate_limited", GATHERS_PER_MEMBER_PER_S, GATHER_BURST, drops, MAX_LIMITED_MEMBERS)
        self._likes = KeyedLimit("multicast_like_rate_limited", LIKES_PER_MEMBER_PER_S, LIKE_BURST, drops, MAX_LIMITED_MEMBERS)

    def like(self, network_id: int, node_id: int, groups: list[bytes], complete: bool, ttl_s: int, now: float) -> list[Push]:
        """A member's groups (its complete set, or more of it); returns the pushes to members watching what changed."""
        if not self._likes.take((network_id, node_id), now):
            return []
        network = self.networks.setdefault(network_id, NetworkSubscriptions())
        old = network.groups.groups_of(node_id)
        new = set(groups) if complete else old | set(groups)
        if len(new) > MAX_GROUPS_PER_MEMBER:
            self.drops["multicast_like_too_many_groups"] += 1
            new = set(sorted(new)[:MAX_GROUPS_PER_MEMBER])
        network.groups.replace(node_id, new, now + min(ttl_s, MAX_LIKE_TTL_S))
        changes = [(g, node_id, True) for g in new - old] + [(g, node_id, False) for g in old - new]
        for group in new ^ old:
            network.packed.pop(group, None)
        return self._pushes(network_id, network, changes, now)

    def gather(self, network_id: int, asker: int, group: bytes, gather_id: int, limit: int, now: float) -> list[bytes]:
        """The reply pages for a member's GATHER (the asker included if subscribed; it
        skips itself); the asker is told of changes to the group for WATCH_S."""
        if not self._gathers.take(asker, now):
            return []
        network = self.networks.setdefault(network_id, NetworkSubscriptions())
        packed = network.packed.get(group)
        if packed is None:
            ids = sorted(network.groups.subscribers(group, now))
            packed = b"".join(n.to_bytes(5, "big") for n in ids)
            if ids:  # only groups that exist are cached: gathering random groups grows nothing
                network.packed[group] = packed
        if limit:
            packed = packed[: limit * 5]
        self._watch(network, asker, group, now)
        page_bytes = GATHER_PAGE_SUBSCRIBERS * 5
        pages = [packed[i : i + page_bytes] for i in range(0, len(packed), page_bytes)] or [b""]
        return [
            pack_gather_reply_page(network_id, group, gather_id, index, len(pages), page)
            for index, page in enumerate(pages)
        ]

    def forget_network(self, network_id: int) -> None:
        self.networks.pop(network_id, None)

    def expire(self, now: float) -> list[Push]:
        """Drop subscriptions and watches past their expiry; returns the pushes for subscriptions that lapsed."""
        pushes = []
        for network_id, network in list(self.networks.items()):
            for group, watchers in list(network.watchers.items()):
                for node_id in [n for n, until_s in watchers.items() if until_s <= now]:
                    self._unwatch(network, node_id, group)
            lapsed = [(group, node_id, False) for group, node_id in network.groups.expire(now)]
            for group, _, _ in lapsed:
                network.packed.pop(group, None)
            pushes += self._pushes(network_id, network, lapsed, now)
            if not network.groups.group_count() and not network.watchers:
                del self.networks[network_id]
        return pushes

    def counts(self) -> dict[str, Any]:
        return {
            "groups": sum(n.groups.group_count() for n in self.networks.values()),
            "watched_groups": sum(len(n.watchers) for n in self.networks.values()),
        }

    def _watch(self, network: NetworkSubscriptions, node_id: int, group: bytes, now: float) -> None:
        watched = network.watched_by.setdefault(node_id, set())
        if group not in watched and len(watched) >= MAX_WATCHED_GROUPS_PER_MEMBER:
            self.drops["multicast_watch_limit"] += 1
            return
        watched.add(group)
        network.watchers.setdefault(group, {})[node_id] = now + WATCH_S

    def _unwatch(self, network: NetworkSubscriptions, node_id: int, group: bytes) -> None:
        watchers = network.watchers.get(group)
        if watchers is not None:
            watchers.pop(node_id, None)
            if not watchers:
                del network.watchers[group]
        watched = network.watched_by.get(node_id)
        if watched is not None:
            watched.discard(group)
            if not watched:
                del network.watched_by[node_id]

    def _pushes(self, network_id: int, network: NetworkSubscriptions, changes: list[tuple[bytes, int, bool]], now: float) -> list[Push]:
        """One SubscribersChanged per changed group, for the members watching it (not the member that changed)."""
        by_group: dict[bytes, tuple[list[int], list[int]]] = {}
        for group, node_id, subscribed in changes:
            if group in network.watchers:
                by_group.setdefault(group, ([], []))[0 if subscribed else 1].append(node_id)
        pushes = []
        for group, (added, removed) in by_group.items():
            changed = set(added) | set(removed)
            watchers = tuple(n for n, until_s in network.watchers[group].items() if until_s > now and n not in changed)
            if not watchers:
                continue
            for start in range(0, max(len(added), len(removed)), PUSH_IDS_PER_MESSAGE):
                message = MulticastSubscribersChanged.build(
                    {
                        "network_id": network_id,
                        "group": group_fields(group),
                        "added": added[start : start + PUSH_IDS_PER_MESSAGE],
                        "removed": removed[start : start + PUSH_IDS_PER_MESSAGE],
                    }
                )
                pushes.append(Push(watchers, message))
        return pushes

