"""l2mesh.switch: forwarding decisions of one network's switch, on Ethernet frames built with dpkt."""

from __future__ import annotations

import socket

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.ids import make_network_id, member_mac, node_of_member_mac
from l2mesh.switch import MemberPort, NetworkSwitch
from l2mesh.switch.mactable import DEFAULT_MAC_AGING_S, FLAP_MOVES, FLAP_WINDOW_S, MacTable

SETTINGS = settings(max_examples=60, deadline=None)

NET = make_network_id(0x0A1B2C3D4E, 7)
LOCAL = 0x1000000001
M2 = 0x1000000002
M3 = 0x1000000003
BR1 = 0x2000000001
BR2 = 0x2000000002
STRANGER = 0x3000000003

BROADCAST = b"\xff\xff\xff\xff\xff\xff"
MDNS_V4 = b"\x01\x00\x5e\x00\x00\xfb"
ALL_NODES_V6 = b"\x33\x33\x00\x00\x00\x01"
# Hosts on the LANs behind the bridges: ordinary unicast MACs that no member owns.
LAN_HOST_A = b"\x52\x54\x00\x12\x34\x56"
LAN_HOST_B = b"\x52\x54\x00\xab\xcd\xef"
T0 = 1000.0


def mac(node_id: int) -> bytes:
    return member_mac(node_id, NET)


def ipv4_frame(src: bytes, dst: bytes, payload: bytes = b"hello") -> bytes:
    udp = dpkt.udp.UDP(sport=40000, dport=7, data=payload)
    ip = dpkt.ip.IP(
        src=socket.inet_aton("10.147.17.1"), dst=socket.inet_aton("10.147.17.2"), p=dpkt.ip.IP_PROTO_UDP, data=udp
    )
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=src, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def arp_request(src: bytes, dst: bytes = BROADCAST) -> bytes:
    arp = dpkt.arp.ARP(
        sha=src, spa=socket.inet_aton("10.147.17.1"), tha=b"\x00" * 6, tpa=socket.inet_aton("10.147.17.2")
    )
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=src, type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))


def make_switch(
    local_bridge: bool = False,
    others: tuple[int, ...] = (M2, M3),
    bridges: tuple[int, ...] = (BR1, BR2),
    mac_aging_s: float = DEFAULT_MAC_AGING_S,
) -> NetworkSwitch:
    switch = NetworkSwitch(NET, LOCAL, mac(LOCAL), mac_aging_s=mac_aging_s)
    switch.set_members(
        [MemberPort(LOCAL, mac(LOCAL), local_bridge)]
        + [MemberPort(n, mac(n)) for n in others]
        + [MemberPort(n, mac(n), bridge=True) for n in bridges]
    )
    return switch


def test_lan_hosts_used_here_are_not_member_macs() -> None:
    for host in (LAN_HOST_A, LAN_HOST_B):
        assert node_of_member_mac(host, NET) is None
    assert len({mac(n) for n in (LOCAL, M2, M3, BR1, BR2)}) == 5


# -- frames from the local TAP ------------------------------------------------------------------


@pytest.mark.parametrize("target", [M2, M3, BR1, BR2])
def test_unicast_from_tap_to_a_member_mac_goes_to_exactly_that_member(target: int) -> None:
    switch = make_switch()
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(target)), T0) == target
    assert not switch.drops and not switch.forwarded


@pytest.mark.parametrize("destination", [BROADCAST, MDNS_V4, ALL_NODES_V6], ids=["broadcast", "ipv4-mc", "ipv6-mc"])
def test_broadcast_and_multicast_from_tap_flood_to_all_other_members_not_self(destination: bytes) -> None:
    switch = make_switch()
    frame = arp_request(mac(LOCAL), destination) if destination == BROADCAST else ipv4_frame(mac(LOCAL), destination)
    targets = switch.route_from_tap(frame, T0)
    assert isinstance(targets, tuple)
    assert sorted(targets) == sorted([M2, M3, BR1, BR2])
    assert LOCAL not in targets
    assert switch.forwarded["flood"] == 1


def test_flood_with_no_other_members_goes_nowhere() -> None:
    switch = make_switch(others=(), bridges=())
    assert switch.route_from_tap(arp_request(mac(LOCAL)), T0) is None


@pytest.mark.parametrize("destination", [BROADCAST, MDNS_V4, ALL_NODES_V6])
def test_broadcast_disabled_floods_to_no_one_and_is_counted(destination: bytes) -> None:
    switch = make_switch()
    switch.broadcast_enabled = False
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), destination), T0) is None
    assert switch.drops["broadcast_disabled"] == 1
    assert switch.forwarded["flood"] == 0
    # Unicast between members is unaffected.
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(M2)), T0) == M2


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_broadcast_limit_bounds_the_flood(limit: int) -> None:
    switch = make_switch()
    switch.broadcast_limit = limit
    targets = switch.route_from_tap(arp_request(mac(LOCAL)), T0)
    assert isinstance(targets, tuple)
    assert len(targets) == limit
    assert set(targets) <= {M2, M3, BR1, BR2}
    assert len(set(targets)) == limit


@pytest.mark.parametrize("limit", [4, 5, 100, None])
def test_broadcast_limit_at_or_above_member_count_reaches_everyone(limit: int | None) -> None:
    switch = make_switch()
    switch.broadcast_limit = limit
    targets = switch.route_from_tap(arp_request(mac(LOCAL)), T0)
    assert sorted(targets) == sorted([M2, M3, BR1, BR2])


def test_unknown_unicast_from_tap_goes_only_to_bridge_members() -> None:
    switch = make_switch()
    targets = switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), T0)
    assert isinstance(targets, tuple)
    assert sorted(targets) == sorted([BR1, BR2])
    assert switch.forwarded["unknown_unicast_to_bridges"] == 1


def test_unknown_unicast_without_bridges_is_dropped_and_counted() -> None:
    switch = make_switch(bridges=())
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), T0) is None
    assert switch.drops["unknown_unicast"] == 1


def test_unicast_from_tap_to_our_own_mac_is_dropped() -> None:
    switch = make_switch()
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(LOCAL)), T0) is None
    assert switch.drops["to_self"] == 1


@pytest.mark.parametrize("source", [mac(M2), LAN_HOST_A, b"\x00" * 6])
def test_tap_frame_with_a_foreign_source_mac_is_dropped_on_a_non_bridge_member(source: bytes) -> None:
    switch = make_switch()
    assert switch.route_from_tap(ipv4_frame(source, mac(M2)), T0) is None
    assert switch.route_from_tap(arp_request(source), T0) is None
    assert switch.drops["tap_foreign_source"] == 2
    assert not switch.forwarded


def test_bridge_member_may_send_frames_with_foreign_source_macs_from_its_tap() -> None:
    switch = make_switch(local_bridge=True)
    assert switch.local_is_bridge
    assert switch.route_from_tap(ipv4_frame(LAN_HOST_A, mac(M2)), T0) == M2
    assert sorted(switch.route_from_tap(arp_request(LAN_HOST_A), T0)) == sorted([M2, M3, BR1, BR2])
    assert switch.drops["tap_foreign_source"] == 0


@pytest.mark.parametrize("length", [0, 1, 6, 12, 13])
def test_runt_frames_are_dropped_in_both_directions(length: int) -> None:
    switch = make_switch()
    runt = ipv4_frame(mac(LOCAL), mac(M2))[:length]
    assert switch.route_from_tap(runt, T0) is None
    peer_runt = ipv4_frame(mac(M2), mac(LOCAL))[:length]
    assert switch.accept_from_peer(M2, peer_runt, T0) is False
    assert switch.drops["runt"] == 2


def test_header_only_frame_is_not_a_runt() -> None:
    switch = make_switch()
    header_only = ipv4_frame(mac(M2), mac(LOCAL))[:14]
    assert switch.accept_from_peer(M2, header_only, T0) is True
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(M2))[:14], T0) == M2


# -- frames from peers --------------------------------------------------------------------------


@pytest.mark.parametrize("sender", [M2, M3, BR1])
def test_peer_frame_from_its_own_mac_to_our_mac_is_accepted(sender: int) -> None:
    switch = make_switch()
    assert switch.accept_from_peer(sender, ipv4_frame(mac(sender), mac(LOCAL)), T0) is True
    assert not switch.drops


@pytest.mark.parametrize("destination", [BROADCAST, MDNS_V4, ALL_NODES_V6])
def test_peer_broadcast_and_multicast_from_its_own_mac_are_accepted(destination: bytes) -> None:
    switch = make_switch()
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), destination), T0) is True
    assert switch.accept_from_peer(M2, arp_request(mac(M2)), T0) is True


def test_peer_broadcast_is_dropped_when_broadcast_is_disabled() -> None:
    switch = make_switch()
    switch.broadcast_enabled = False
    assert switch.accept_from_peer(M2, arp_request(mac(M2)), T0) is False
    assert switch.drops["broadcast_disabled"] == 1
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), mac(LOCAL)), T0) is True


@pytest.mark.parametrize("source", [mac(M3), mac(BR1), mac(LOCAL), LAN_HOST_A])
def test_non_bridge_member_spoofing_a_source_mac_is_dropped_and_counted(source: bytes) -> None:
    switch = make_switch()
    assert switch.accept_from_peer(M2, ipv4_frame(source, mac(LOCAL)), T0) is False
    assert switch.accept_from_peer(M2, arp_request(source), T0) is False
    assert switch.drops["spoofed_source"] == 2
    assert not switch.learned.entries


def test_bridge_peer_may_use_foreign_source_macs_which_are_then_learned() -> None:
    switch = make_switch()
    assert switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0) is True
    assert switch.accept_from_peer(BR2, ipv4_frame(LAN_HOST_B, mac(LOCAL)), T0) is True
    assert switch.learned.events["learned"] == 2
    # Unicast for a learned MAC now goes to the one bridge behind which it lives, not to every bridge.
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), T0 + 1) == BR1
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_B), T0 + 1) == BR2
    assert switch.forwarded["unknown_unicast_to_bridges"] == 0


@pytest.mark.parametrize("claimed", [mac(M2), mac(BR2), mac(LOCAL)], ids=["member", "other-bridge", "ours"])
def test_bridge_claiming_a_member_mac_is_dropped_and_counted(claimed: bytes) -> None:
    switch = make_switch()
    assert switch.accept_from_peer(BR1, arp_request(claimed), T0) is False
    assert switch.drops["bridge_claims_member_mac"] == 1
    assert claimed not in switch.learned.entries
    # The MAC still routes to the member that owns it (or nowhere, for our own).
    expected = None if claimed == mac(LOCAL) else {mac(M2): M2, mac(BR2): BR2}[claimed]
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), claimed), T0) == expected


@pytest.mark.parametrize("destination", [mac(M3), mac(BR1), LAN_HOST_A])
def test_unicast_for_another_mac_received_from_a_peer_is_dropped_as_not_for_us(destination: bytes) -> None:
    switch = make_switch()
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), destination), T0) is False
    assert switch.drops["not_for_us"] == 1


def test_local_bridge_accepts_unicast_for_hosts_on_its_lan() -> None:
    switch = make_switch(local_bridge=True)
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), LAN_HOST_A), T0) is True


def test_frame_from_a_node_that_is_not_a_member_is_dropped() -> None:
    switch = make_switch()
    assert switch.accept_from_peer(STRANGER, ipv4_frame(member_mac(STRANGER, NET), mac(LOCAL)), T0) is False
    assert switch.accept_from_peer(STRANGER, arp_request(member_mac(STRANGER, NET)), T0) is False
    assert switch.drops["not_a_member"] == 2


@pytest.mark.parametrize("sender", [M2, BR1])
@pytest.mark.parametrize("source", [BROADCAST, MDNS_V4, b"\x03\x00\x00\x00\x00\x01"])
def test_frame_with_a_multicast_source_mac_is_dropped(sender: int, source: bytes) -> None:
    switch = make_switch()
    assert switch.accept_from_peer(sender, ipv4_frame(source, mac(LOCAL)), T0) is False
    assert switch.drops["multicast_source"] == 1
    assert not switch.learned.entries


members = st.sampled_from([LOCAL, M2, M3, BR1, BR2, STRANGER])
any_mac = st.one_of(
    members.map(mac),
    st.sampled_from([BROADCAST, MDNS_V4, ALL_NODES_V6, LAN_HOST_A, LAN_HOST_B]),
    st.binary(min_size=6, max_size=6),
)


@SETTINGS
@given(
    st.lists(st.tuples(members, any_mac, any_mac, st.binary(max_size=40)), min_size=1, max_size=30),
    st.booleans(),
    st.booleans(),
)
def test_split_horizon_frames_from_peers_only_ever_reach_the_local_tap(
    frames: list[tuple[int, bytes, bytes, bytes]], local_bridge: bool, broadcast: bool
) -> None:
    switch = make_switch(local_bridge=local_bridge)
    switch.broadcast_enabled = broadcast
    for i, (sender, src, dst, payload) in enumerate(frames):
        frame = dst + src + b"\x08\x00" + payload
        accepted = switch.accept_from_peer(sender, frame, T0 + i)
        # A verdict for the local TAP only: never a node id or a set of peers to forward to.
        assert accepted is True or accepted is False
        if accepted:
            assert sender in switch.members
            assert dst[0] & 1 or dst == mac(LOCAL) or local_bridge
            assert src == mac(sender) or switch.members[sender].bridge
    assert not switch.forwarded


# -- learned MACs: aging, moves, flapping ----------------------------------------------------------


def test_learned_mac_ages_out_after_default_aging_time() -> None:
    switch = make_switch()
    assert DEFAULT_MAC_AGING_S == 300.0
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    to_host = ipv4_frame(mac(LOCAL), LAN_HOST_A)
    assert switch.route_from_tap(to_host, T0 + 299.0) == BR1
    assert switch.route_from_tap(to_host, T0 + 300.0) == BR1
    # Aged out: unknown unicast again, flooded to every bridge.
    assert sorted(switch.route_from_tap(to_host, T0 + 300.5)) == sorted([BR1, BR2])
    assert switch.learned.events["aged_out"] == 1
    assert LAN_HOST_A not in switch.learned.entries


def test_traffic_from_a_learned_mac_refreshes_its_age() -> None:
    switch = make_switch(mac_aging_s=30.0)
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    switch.accept_from_peer(BR1, ipv4_frame(LAN_HOST_A, mac(LOCAL)), T0 + 25.0)
    to_host = ipv4_frame(mac(LOCAL), LAN_HOST_A)
    assert switch.route_from_tap(to_host, T0 + 50.0) == BR1
    assert sorted(switch.route_from_tap(to_host, T0 + 55.5)) == sorted([BR1, BR2])


def test_mac_table_expire_removes_only_stale_entries() -> None:
    table = MacTable(aging_s=10.0)
    table.learn(LAN_HOST_A, BR1, 0.0)
    table.learn(LAN_HOST_B, BR2, 5.0)
    table.expire(12.0)
    assert set(table.entries) == {LAN_HOST_B}
    assert table.events["aged_out"] == 1


def test_a_mac_that_moves_once_to_another_bridge_is_followed() -> None:
    switch = make_switch()
    assert switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    assert switch.accept_from_peer(BR2, arp_request(LAN_HOST_A), T0 + 30)
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), T0 + 31) == BR2
    assert switch.learned.events["moved"] == 1
    assert switch.drops["mac_flapping"] == 0


def test_mac_moving_repeatedly_between_bridges_is_reported_as_flapping_then_learning_resumes() -> None:
    switch = make_switch()
    assert switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    now = T0 + 1.0
    first_move_s = now
    bridges = [BR2, BR1]
    verdicts = []
    for move in range(1, FLAP_MOVES + 2):
        verdicts.append(switch.accept_from_peer(bridges[move % 2 - 1], arp_request(LAN_HOST_A), now))
        now += 0.1
    # Moves below FLAP_MOVES inside the window are ordinary moves; from the FLAP_MOVES-th on, flapping.
    assert verdicts == [True] * (FLAP_MOVES - 1) + [False, False]
    assert switch.drops["mac_flapping"] == 2
    assert switch.counters()["drops"]["mac_flapping"] == 2
    # Once the window since the first move has passed, a move is learned again.
    after = first_move_s + FLAP_WINDOW_S + 0.5
    assert switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), after) is True
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), after) == BR1
    assert switch.accept_from_peer(BR2, arp_request(LAN_HOST_A), after + 0.1) is True
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), after + 0.1) == BR2
    assert switch.drops["mac_flapping"] == 2


def test_moves_spread_wider_than_the_flap_window_are_never_flapping() -> None:
    switch = make_switch()
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    now = T0
    for move in range(3 * FLAP_MOVES):
        now += FLAP_WINDOW_S / (FLAP_MOVES - 1) + 0.01
        bridge = BR2 if move % 2 == 0 else BR1
        assert switch.accept_from_peer(bridge, arp_request(LAN_HOST_A), now) is True
    assert switch.drops["mac_flapping"] == 0


def test_set_members_removing_a_bridge_forgets_the_macs_learned_behind_it() -> None:
    switch = make_switch()
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    switch.accept_from_peer(BR2, arp_request(LAN_HOST_B), T0)
    switch.set_members([MemberPort(LOCAL, mac(LOCAL)), MemberPort(M2, mac(M2)), MemberPort(BR2, mac(BR2), True)])
    assert LAN_HOST_A not in switch.learned.entries
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), T0 + 1) == (BR2,)
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_B), T0 + 1) == BR2
    # The removed bridge is no longer a member at all.
    assert switch.accept_from_peer(BR1, arp_request(mac(BR1)), T0 + 1) is False
    assert switch.drops["not_a_member"] == 1


def test_set_members_demoting_a_bridge_forgets_its_macs_and_refuses_foreign_sources() -> None:
    switch = make_switch()
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    switch.set_members([MemberPort(LOCAL, mac(LOCAL)), MemberPort(BR1, mac(BR1), bridge=False)])
    assert not switch.learned.entries
    assert switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0 + 1) is False
    assert switch.drops["spoofed_source"] == 1


def test_set_members_drops_former_members_from_unicast_and_flood() -> None:
    switch = make_switch()
    switch.set_members([MemberPort(LOCAL, mac(LOCAL)), MemberPort(M2, mac(M2))])
    assert switch.route_from_tap(arp_request(mac(LOCAL)), T0) == (M2,)
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(M3)), T0) is None
    assert switch.drops["unknown_unicast"] == 1


def test_mac_table_is_bounded_by_max_entries_evicting_the_least_recently_seen() -> None:
    table = MacTable(aging_s=1e9, max_entries=8)
    for i in range(20):
        assert table.learn(bytes([0x52, 0, 0, 0, 0, i]), BR1, float(i))
        assert len(table.entries) <= 8
    assert set(table.entries) == {bytes([0x52, 0, 0, 0, 0, i]) for i in range(12, 20)}
    assert table.events["evicted"] == 12


def test_mac_table_full_of_stale_entries_expires_them_before_evicting_live_ones() -> None:
    table = MacTable(aging_s=10.0, max_entries=3)
    table.learn(b"\x52\x00\x00\x00\x00\x01", BR1, 0.0)
    table.learn(b"\x52\x00\x00\x00\x00\x02", BR1, 0.0)
    table.learn(b"\x52\x00\x00\x00\x00\x03", BR1, 5.0)
    table.learn(b"\x52\x00\x00\x00\x00\x04", BR1, 11.0)
    assert set(table.entries) == {b"\x52\x00\x00\x00\x00\x03", b"\x52\x00\x00\x00\x00\x04"}
    assert table.events["aged_out"] == 2 and table.events["evicted"] == 0


@SETTINGS
@given(st.lists(st.tuples(st.binary(min_size=6, max_size=6), st.sampled_from([BR1, BR2])), max_size=60))
def test_mac_table_never_exceeds_max_entries(learns: list[tuple[bytes, int]]) -> None:
    table = MacTable(aging_s=100.0, max_entries=5)
    for i, (address, node_id) in enumerate(learns):
        table.learn(address, node_id, float(i))
        assert len(table.entries) <= 5
        assert address in table.entries


def test_counters_report_drops_forwards_and_learning() -> None:
    switch = make_switch()
    switch.route_from_tap(arp_request(mac(LOCAL)), T0)
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    switch.accept_from_peer(M2, arp_request(LAN_HOST_A), T0)
    assert switch.counters() == {
        "drops": {"spoofed_source": 1},
        "forwarded": {"flood": 1},
        "learned": {"learned": 1},
    }
