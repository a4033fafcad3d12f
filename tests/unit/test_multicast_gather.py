"""Multicast subscriptions through the controller (ZeroTier's LIKE / GATHER), sans-IO.

The registry alone (controller/multicast.py), then members and a controller
on the harness's fake network: members like their groups to the controller,
a sender gathers a group's subscribers before sending to it, the controller
pushes changes to recent gatherers, and hostile input is dropped and counted.
"""

from __future__ import annotations

import socket
from collections import Counter

import dpkt
import pytest

from l2mesh.controller import multicast as controller_multicast
from l2mesh.controller.multicast import (
    GATHER_BURST,
    GATHER_PAGE_SUBSCRIBERS,
    MAX_GROUPS_PER_MEMBER,
    MAX_WATCHED_GROUPS_PER_MEMBER,
    MulticastRegistry,
)
from l2mesh.node.core import GROUP_TTL_S
from l2mesh.switch.multicast import GATHER_REFRESH_S, GATHERED_TTL_S, GatheredGroups, arp_group, group_fields, group_key
from l2mesh.wire.messages import (
    MulticastGather,
    MulticastGatherReply,
    MulticastLike,
    MulticastSubscribersChanged,
    MulticastSubscriptions,
)
from hypothesis import given
from hypothesis import strategies as st

from l2mesh.wire.messages import pack_gather_reply_page
from tests.unit.harness import Member, World, controller_of
from tests.unit.test_control_plane import authorized_members

NET = 0x1234
MDNS_MAC = b"\x01\x00\x5e\x00\x00\xfb"
MDNS = group_key(MDNS_MAC)
OTHER = group_key(b"\x01\x00\x5e\x01\x02\x03")
BROADCAST = b"\xff" * 6


def parse_pages(pages: list[bytes]) -> list[list[int]]:
    parsed = [MulticastGatherReply.parse(page) for page in pages]
    assert [p.page_index for p in parsed] == list(range(len(pages)))
    assert {p.page_count for p in parsed} == {len(pages)}
    return [list(p.subscribers) for p in parsed]


# -- the controller's registry ------------------------------------------------------------------------------


def test_a_gather_returns_every_subscriber() -> None:
    registry = MulticastRegistry(Counter())
    for node_id in (2, 3, 4):
        registry.like(NET, node_id, [MDNS], True, 180, 0.0)
    registry.like(NET, 5, [OTHER], True, 180, 0.0)
    assert parse_pages(registry.gather(NET, 3, MDNS, 1, 0, 1.0)) == [[2, 3, 4]]  # the asker skips itself
    registry.like(NET, 4, [], True, 180, 1.0)
    assert parse_pages(registry.gather(NET, 3, MDNS, 1, 0, 1.0)) == [[2, 3]]  # the cached answer follows changes
    assert parse_pages(registry.gather(NET, 3, OTHER, 2, 0, 1.0)) == [[5]]
    assert parse_pages(registry.gather(NET, 3, group_key(b"\x01\x00\x5e\x7f\x00\x01"), 3, 0, 1.0)) == [[]]
    registry.expire(181.0)
    assert parse_pages(registry.gather(NET, 3, MDNS, 1, 0, 181.0)) == [[]]  # ...and lapses


def test_a_group_with_more_subscribers_than_one_page_is_gathered_in_pages_with_no_cap() -> None:
    registry = MulticastRegistry(Counter())
    subscribers = list(range(100, 100 + 10_000))
    for node_id in subscribers:
        registry.like(NET, node_id, [MDNS], True, 180, 0.0)
    pages = registry.gather(NET, 1, MDNS, 7, 0, 1.0)
    assert len(pages) == 10_000 // GATHER_PAGE_SUBSCRIBERS
    assert all(len(page) <= 1100 for page in pages)  # each page fits one datagram
    assert sorted(n for page in parse_pages(pages) for n in page) == subscribers
    assert {MulticastGatherReply.parse(p).gather_id for p in pages} == {7}
    # A limit, when asked for, is honoured.
    assert sum(len(p) for p in parse_pages(registry.gather(NET, 1, MDNS, 8, 250, 1.0))) == 250


def test_a_complete_like_replaces_the_members_groups_and_an_incomplete_one_adds() -> None:
    registry = MulticastRegistry(Counter())
    registry.like(NET, 2, [MDNS, OTHER], True, 180, 0.0)
    registry.like(NET, 2, [OTHER], True, 180, 1.0)
    assert parse_pages(registry.gather(NET, 9, MDNS, 1, 0, 2.0)) == [[]]
    registry.like(NET, 2, [MDNS], False, 180, 3.0)
    assert parse_pages(registry.gather(NET, 9, MDNS, 2, 0, 4.0)) == [[2]]
    assert parse_pages(registry.gather(NET, 9, OTHER, 3, 0, 4.0)) == [[2]]


def test_watchers_are_pushed_changes_and_lapsed_subscriptions() -> None:
    registry = MulticastRegistry(Counter())
    registry.like(NET, 2, [MDNS], True, 180, 0.0)
    registry.gather(NET, 1, MDNS, 1, 0, 0.0)  # member 1 now watches MDNS
    pushes = registry.like(NET, 3, [MDNS], True, 60, 1.0)
    assert [p.node_ids for p in pushes] == [(1,)]
    change = MulticastSubscribersChanged.parse(pushes[0].message)
    assert (list(change.added), list(change.removed)) == ([3], [])
    assert registry.like(NET, 4, [OTHER], True, 180, 1.0) == []  # nobody watches OTHER
    # Member 3 stops refreshing: its subscription lapses, and the watcher is told.
    lapsed = registry.expire(61.0)
    assert [MulticastSubscribersChanged.parse(p.message).removed for p in lapsed] == [[3]]
    # The watch itself lapses: no more pushes.
    registry.expire(200.0)
    assert registry.like(NET, 5, [MDNS], True, 180, 200.0) == []


def test_a_hostile_member_cannot_grow_the_tables_without_bound() -> None:
    drops: Counter[str] = Counter()
    registry = MulticastRegistry(drops)
    many = [group_key(b"\x01\x00\x5e" + n.to_bytes(3, "big")) for n in range(MAX_GROUPS_PER_MEMBER * 3)]
    registry.like(NET, 2, many, True, 65535, 0.0)
    assert registry.counts()["groups"] == MAX_GROUPS_PER_MEMBER
    assert drops["multicast_like_too_many_groups"] == 1
    for second, group in enumerate(many[: MAX_WATCHED_GROUPS_PER_MEMBER + 10]):
        registry.gather(NET, 3, group, 1, 0, float(second))  # slow enough for the rate limit
    assert registry.counts()["watched_groups"] == MAX_WATCHED_GROUPS_PER_MEMBER
    assert drops["multicast_watch_limit"] == 10
    for _ in range(int(GATHER_BURST)):
        registry.gather(NET, 4, MDNS, 1, 0, 1.0)
    assert registry.gather(NET, 4, MDNS, 1, 0, 1.0) == []
    assert drops["multicast_gather_rate_limited"] >= 1
    # The TTL is capped: the subscriptions lapse within ten minutes whatever the member asked.
    registry.expire(601.0)
    assert registry.counts()["groups"] == 0


@given(
    network_id=st.integers(0, 2**64 - 1),
    group=st.binary(min_size=10, max_size=10),
    gather_id=st.integers(0, 2**32 - 1),
    page=st.integers(1, 4096).flatmap(lambda count: st.tuples(st.integers(0, count - 1), st.just(count))),
    ids=st.lists(st.integers(0, 2**40 - 1), max_size=GATHER_PAGE_SUBSCRIBERS),
)
def test_the_packed_gather_reply_is_byte_identical_to_the_construct(network_id, group, gather_id, page, ids) -> None:
    packed = pack_gather_reply_page(network_id, group, gather_id, page[0], page[1], b"".join(n.to_bytes(5, "big") for n in ids))
    built = MulticastGatherReply.build(
        {"network_id": network_id, "group": group_fields(group), "gather_id": gather_id,
         "page_index": page[0], "page_count": page[1], "subscribers": ids}
    )
    assert packed == built


# -- the member's cache ---------------------------------------------------------------------------------------


def test_gathered_pages_are_used_only_once_all_have_arrived_in_any_order() -> None:
    drops: Counter[str] = Counter()
    gathered = GatheredGroups(drops)
    assert gathered.subscribers(MDNS, 0.0) == set()
    [(group, gather_id)] = gathered.due(0.0)
    assert gathered.page(group, gather_id, 2, 3, [5], 0.1) is False
    assert gathered.page(group, gather_id + 1, 0, 3, [6], 0.1) is False  # another question's page
    assert drops["gather_reply_unexpected"] == 1
    assert gathered.page(group, gather_id, 0, 3, [3], 0.1) is False
    assert gathered.subscribers(MDNS, 0.1) == set()
    assert gathered.page(group, gather_id, 1, 3, [4], 0.2) is True
    assert gathered.subscribers(MDNS, 0.2) == {3, 4, 5}
    assert gathered.due(0.3) == []  # fresh: nothing to ask
    gathered.subscribers(MDNS, 0.2 + GATHER_REFRESH_S)  # in use and older than the refresh: asked again...
    assert [g for g, _ in gathered.due(0.2 + GATHER_REFRESH_S)] == [MDNS]
    assert gathered.subscribers(MDNS, 0.2 + GATHER_REFRESH_S) == {3, 4, 5}  # ...and still used meanwhile
    assert gathered.subscribers(MDNS, 0.2 + GATHERED_TTL_S) == set()  # until its TTL


# -- members and a controller ----------------------------------------------------------------------------------


def multicast_frame(sender: Member, mac: bytes = MDNS_MAC, payload: bytes = b"mdns") -> bytes:
    return mac + sender.mac() + b"\x08\x00" + payload


def receivers(world: World, sender: Member, frame: bytes) -> set[int]:
    """Members that had the frame written to their TAP after the sender's TAP handed it over."""
    for m in world.members:
        m.transmit.frames.clear()
    sender.send(frame)
    world.run(0.1)
    return {m.number for m in world.members if frame in m.frames()}


def subscribe(world: World, member: Member, *groups: bytes) -> None:
    member.core.set_local_groups(member._net(None), frozenset(groups), world.now)


def gathered_world(world: World, count: int = 5) -> tuple[int, list[Member]]:
    """Members 2 and 3 listen to mDNS; member 1 has sent to the group once, so it has gathered it."""
    network_id, members = authorized_members(world, count)
    subscribe(world, members[1], MDNS)
    subscribe(world, members[2], MDNS)
    world.run(0.5)
    receivers(world, members[0], multicast_frame(members[0]))
    world.run(0.5)
    return network_id, members


def test_a_frame_to_a_group_reaches_its_subscribers_only_once_gathered(world: World) -> None:
    network_id, members = authorized_members(world, 5)
    first = members[0]
    subscribe(world, members[1], MDNS)
    subscribe(world, members[2], MDNS)
    world.run(0.5)
    # No member-to-member announcements: nobody learned the groups from the members themselves.
    assert first.core.networks[network_id].switch.groups.groups_of(members[1].node_id) == set()
    # The first frame finds no answer yet: dropped and counted, and the group gathered.
    assert receivers(world, first, multicast_frame(first, payload=b"one")) == set()
    assert first.switch_counters()["drops"]["multicast_no_subscribers"] == 1
    world.run(0.3)
    assert receivers(world, first, multicast_frame(first, payload=b"two")) == {2, 3}
    assert controller_of(world).core.status()["multicast"]["groups"] == 1


def test_a_new_subscriber_is_pushed_to_the_sender_within_a_round_trip(world: World) -> None:
    _, members = gathered_world(world)
    subscribe(world, members[3], MDNS)
    world.run(0.2)
    assert receivers(world, members[0], multicast_frame(members[0])) == {2, 3, 4}


def test_an_unsubscribed_member_stops_receiving(world: World) -> None:
    _, members = gathered_world(world)
    subscribe(world, members[2])  # its TAP left the group: the LIKE says so at once
    world.run(0.2)
    assert receivers(world, members[0], multicast_frame(members[0])) == {2}


def test_a_member_gone_silent_is_dropped_after_its_ttl_and_the_sender_told(world: World) -> None:
    _, members = gathered_world(world)
    world.down.add(members[2])  # crashed: no more refreshes
    heard = []
    for _ in range(int(GROUP_TTL_S + 20) // 10):  # member 1 keeps sending to the group
        world.run(10.0)
        heard.append(receivers(world, members[0], multicast_frame(members[0])))
    assert heard[0] == {2}  # sent to 3 as well (it is still subscribed), which no longer hears it
    assert members[0].switch_counters()["forwarded"]["multicast"] >= len(heard)
    switch = members[0].core.networks[members[0]._net(None)].switch
    assert switch.route_from_tap(multicast_frame(members[0]), world.now) == (members[1].node_id,)
    assert heard[-1] == {2}


def test_subscriptions_survive_past_the_ttl_while_refreshed(world: World) -> None:
    _, members = gathered_world(world)
    world.run(GROUP_TTL_S * 2)
    assert receivers(world, members[0], multicast_frame(members[0])) == {2, 3}


def test_with_the_controller_down_gathered_groups_work_until_their_ttl_and_broadcast_always(world: World) -> None:
    _, members = gathered_world(world)
    world.down.add(controller_of(world))
    world.run(GATHERED_TTL_S - 10)
    assert receivers(world, members[0], multicast_frame(members[0])) == {2, 3}
    world.run(20)
    assert receivers(world, members[0], multicast_frame(members[0])) == set()
    assert receivers(world, members[0], multicast_frame(members[0], BROADCAST)) == {2, 3, 4, 5}


def test_a_big_group_is_gathered_in_several_pages_end_to_end(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller_multicast, "GATHER_PAGE_SUBSCRIBERS", 2)
    network_id, members = authorized_members(world, 8)
    for member in members[1:]:
        subscribe(world, member, MDNS)
    world.run(0.5)
    receivers(world, members[0], multicast_frame(members[0]))
    world.run(0.3)
    assert receivers(world, members[0], multicast_frame(members[0])) == set(range(2, 9))
    assert controller_of(world).sent.get("multicast_push", 0) == 0


def test_a_restarted_controller_learns_the_groups_again(world: World) -> None:
    _, members = gathered_world(world)
    world.restart_controller()
    world.run(5.0)
    assert controller_of(world).core.status()["multicast"]["groups"] == 1
    subscribe(world, members[3], MDNS)  # the new process pushes it: member 1 gathered again
    world.run(0.3)
    assert receivers(world, members[0], multicast_frame(members[0])) == {2, 3, 4}


def arp_request(sender: Member, target_ip: str) -> bytes:
    arp = dpkt.arp.ARP(
        op=dpkt.arp.ARP_OP_REQUEST, sha=sender.mac(), spa=socket.inet_aton("10.147.99.1"),
        tha=b"\x00" * 6, tpa=socket.inet_aton(target_ip),
    )
    return bytes(dpkt.ethernet.Ethernet(dst=BROADCAST, src=sender.mac(), type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))


def test_arp_for_an_address_a_member_holds_outside_the_config_is_gathered_then_answered_locally(world: World) -> None:
    _, members = authorized_members(world, 4)
    leased = "10.147.17.200"  # on member 3's TAP (a DHCP lease, say), not in the config
    subscribe(world, members[2], arp_group(socket.inet_aton(leased)))
    world.run(0.5)
    request = arp_request(members[0], leased)
    # Nobody known to hold it yet: asked of everyone, as on a plain LAN; and the owner gathered.
    assert receivers(world, members[0], request) == {2, 3, 4}
    world.run(0.3)
    assert receivers(world, members[0], request) == set()
    [reply] = members[0].frames()
    assert dpkt.arp.ARP(reply[14:]).sha == members[2].mac()
    assert members[0].switch_counters()["forwarded"]["arp_answered_locally"] == 1


# -- hostile input ------------------------------------------------------------------------------------------


def test_likes_and_gathers_from_non_members_are_dropped_and_counted(world: World) -> None:
    network_id, members = authorized_members(world, 2)
    controller = controller_of(world)
    stranger = world.add_member()
    stranger.join(network_id, controller)  # asks, is never authorized
    world.run(1.0)
    like = MulticastLike.build({"network_id": network_id, "ttl_s": 600, "complete": True, "groups": [group_fields(MDNS)]})
    gather = MulticastGather.build({"network_id": network_id, "group": group_fields(MDNS), "gather_id": 1, "limit": 0})
    stranger.core.send_message(controller.node_id, like, world.now)
    stranger.core.send_message(controller.node_id, gather, world.now)
    world.run(0.2)
    assert controller.drops["multicast_from_non_member"] == 2
    assert controller.core.status()["multicast"]["groups"] == 0
    assert stranger.drops.get("unhandled_message", 0) == 0  # no answer came back


def test_gather_answers_from_anyone_but_the_controller_are_dropped(world: World) -> None:
    network_id, members = gathered_world(world)
    liar, victim = members[3], members[0]
    forged = MulticastSubscribersChanged.build(
        {"network_id": network_id, "group": group_fields(MDNS), "added": [liar.node_id], "removed": [members[1].node_id]}
    )
    liar.core.send_message(victim.node_id, forged, world.now)
    world.run(0.1)
    assert victim.drops["unhandled_message"] == 1
    assert receivers(world, victim, multicast_frame(victim)) == {2, 3}


def test_an_old_peers_member_to_member_announcement_is_still_understood(world: World) -> None:
    network_id, members = authorized_members(world, 3)
    old = MulticastSubscriptions.build(
        {"network_id": network_id, "ttl_s": 180, "complete": True, "groups": [group_fields(OTHER)]}
    )
    members[2].core.send_message(members[0].node_id, old, world.now)
    world.run(0.1)
    frame = multicast_frame(members[0], OTHER[:6])
    assert receivers(world, members[0], frame) == {3}
