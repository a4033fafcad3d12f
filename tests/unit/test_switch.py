"""l2mesh.switch: forwarding decisions of one network's switch, on Ethernet frames built with dpkt.

The semantics checked here (issue 5): unicast goes to the one member (or
bridge) owning the MAC; multicast only to members subscribed to the group
(MAC + ADI 0) and to bridges; ARP requests are answered locally when the
address is known, else scoped to the member that announced it, else flooded;
plain broadcast goes to every member when the network allows it, bounded by
the broadcast limit (bridges first); a storm guard caps multicast+broadcast
per source.
"""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.ids import make_network_id, member_mac, node_of_member_mac
from l2mesh.switch import MemberPort, NetworkSwitch
from l2mesh.switch.arp import ARP_AGING_S
from l2mesh.switch.mactable import DEFAULT_MAC_AGING_S, FLAP_MOVES, FLAP_WINDOW_S, MacTable
from l2mesh.switch.multicast import MulticastGroups, arp_group, group_key
from l2mesh.switch.switch import STORM_BURST_FRAMES, STORM_FRAMES_PER_S

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
SOLICITED_NODE_V6 = b"\x33\x33\xff\x00\x00\x02"
OTHER_V4_GROUP = b"\x01\x00\x5e\x01\x02\x03"
# Hosts on the LANs behind the bridges: ordinary unicast MACs that no member owns.
LAN_HOST_A = b"\x52\x54\x00\x12\x34\x56"
LAN_HOST_B = b"\x52\x54\x00\xab\xcd\xef"
T0 = 1000.0
GROUP_TTL_S = 180.0
# Managed IPv4s of the members (make_switch(ips=True)); 10.147.17.1 is the requester's (LOCAL's) own.
IP_OF = {LOCAL: "10.147.17.1", M2: "10.147.17.2", M3: "10.147.17.3", BR1: "10.147.17.11", BR2: "10.147.17.12"}


def mac(node_id: int) -> bytes:
    return member_mac(node_id, NET)


def ipv4_frame(src: bytes, dst: bytes, payload: bytes = b"hello") -> bytes:
    udp = dpkt.udp.UDP(sport=40000, dport=7, data=payload)
    ip = dpkt.ip.IP(
        src=socket.inet_aton("10.147.17.1"), dst=socket.inet_aton("10.147.17.2"), p=dpkt.ip.IP_PROTO_UDP, data=udp
    )
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=src, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def ip4(text: str) -> bytes:
    return socket.inet_aton(text)


def arp_request(
    src: bytes, dst: bytes = BROADCAST, spa: str = "10.147.17.1", tpa: str = "10.147.17.2", sha: bytes | None = None
) -> bytes:
    return arp_frame(dpkt.arp.ARP_OP_REQUEST, src, dst, spa, tpa, sha=sha)


def arp_frame(
    op: int, src: bytes, dst: bytes, spa: str, tpa: str, sha: bytes | None = None, tha: bytes = b"\x00" * 6
) -> bytes:
    arp = dpkt.arp.ARP(op=op, sha=src if sha is None else sha, spa=ip4(spa), tha=tha, tpa=ip4(tpa))
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=src, type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))


def udp_broadcast(src: bytes, dport: int = 67) -> bytes:
    """A plain (non-ARP) broadcast, e.g. a DHCPDISCOVER: UDP to 255.255.255.255 in an Ethernet broadcast."""
    udp = dpkt.udp.UDP(sport=68, dport=dport, data=b"\x01" * 32)
    ip = dpkt.ip.IP(src=b"\0\0\0\0", dst=b"\xff\xff\xff\xff", p=dpkt.ip.IP_PROTO_UDP, data=udp)
    return bytes(dpkt.ethernet.Ethernet(dst=BROADCAST, src=src, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def expected_arp_reply(owner_mac: bytes, owner_ip: str, requester_mac: bytes, requester_ip: str) -> bytes:
    """The 42-byte Ethernet ARP reply the owner would send, packed by hand (not with dpkt, which the switch uses)."""
    return struct.pack(
        "!6s6sHHHBBH6s4s6s4s",
        requester_mac, owner_mac, 0x0806,  # Ethernet: to the requester, from the owner, ARP
        1, 0x0800, 6, 4, 2,  # Ethernet/IPv4, hardware and protocol lengths, op = reply
        owner_mac, ip4(owner_ip), requester_mac, ip4(requester_ip),
    )


def make_switch(
    local_bridge: bool = False,
    others: tuple[int, ...] = (M2, M3),
    bridges: tuple[int, ...] = (BR1, BR2),
    mac_aging_s: float = DEFAULT_MAC_AGING_S,
    ips: bool = False,
) -> NetworkSwitch:
    """LOCAL plus the given members; with ips=True every member holds its managed IPv4 from IP_OF."""
    switch = NetworkSwitch(NET, LOCAL, mac(LOCAL), mac_aging_s=mac_aging_s)

    def port(node_id: int, bridge: bool) -> MemberPort:
        return MemberPort(node_id, mac(node_id), bridge, (ip4(IP_OF[node_id]),) if ips else ())

    switch.set_members([port(LOCAL, local_bridge)] + [port(n, False) for n in others] + [port(n, True) for n in bridges])
    return switch


def subscribe(switch: NetworkSwitch, node_id: int, *groups: bytes, now: float = T0) -> None:
    """node_id announces its complete group list (as MulticastSubscriptions with ttl 180 s would)."""
    switch.groups.replace(node_id, set(groups), now + GROUP_TTL_S)


def mc(mac_address: bytes) -> bytes:
    return group_key(mac_address)


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


def test_plain_broadcast_from_tap_floods_to_all_other_members_not_self() -> None:
    switch = make_switch()
    targets = switch.route_from_tap(udp_broadcast(mac(LOCAL)), T0)
    assert isinstance(targets, tuple)
    assert sorted(targets) == sorted([M2, M3, BR1, BR2])
    assert LOCAL not in targets
    assert switch.forwarded["flood"] == 1


@pytest.mark.parametrize(
    "destination", [MDNS_V4, ALL_NODES_V6, SOLICITED_NODE_V6], ids=["ipv4-mdns", "ipv6-all-nodes", "ipv6-solicited"]
)
def test_multicast_from_tap_goes_only_to_subscribers_and_bridges_not_self(destination: bytes) -> None:
    switch = make_switch()
    subscribe(switch, M2, mc(destination))
    subscribe(switch, M3, mc(OTHER_V4_GROUP))
    targets = switch.route_from_tap(ipv4_frame(mac(LOCAL), destination), T0)
    assert isinstance(targets, tuple)
    # M3 listens to another group only; bridges carry whole LANs and get every group.
    assert sorted(targets) == sorted([M2, BR1, BR2])
    assert LOCAL not in targets
    assert switch.forwarded == {"multicast": 1}


def test_multicast_never_goes_back_to_ourselves_even_if_we_appear_as_a_subscriber() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, LOCAL, mc(MDNS_V4))
    subscribe(switch, M3, mc(MDNS_V4))
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), MDNS_V4), T0) == (M3,)


@pytest.mark.parametrize("destination", [MDNS_V4, ALL_NODES_V6], ids=["ipv4-mc", "ipv6-mc"])
def test_multicast_nobody_subscribed_to_reaches_only_bridges_or_is_dropped_and_counted(destination: bytes) -> None:
    with_bridges = make_switch()
    assert sorted(with_bridges.route_from_tap(ipv4_frame(mac(LOCAL), destination), T0)) == sorted([BR1, BR2])
    without_bridges = make_switch(bridges=())
    assert without_bridges.route_from_tap(ipv4_frame(mac(LOCAL), destination), T0) is None
    assert without_bridges.drops == {"multicast_no_subscribers": 1}
    assert not without_bridges.forwarded


@pytest.mark.parametrize("frame", ["arp", "broadcast", "multicast"])
def test_flood_with_no_other_members_goes_nowhere(frame: str) -> None:
    switch = make_switch(others=(), bridges=())
    subscribe(switch, LOCAL, mc(MDNS_V4))
    built = {
        "arp": arp_request(mac(LOCAL)),
        "broadcast": udp_broadcast(mac(LOCAL)),
        "multicast": ipv4_frame(mac(LOCAL), MDNS_V4),
    }[frame]
    assert switch.route_from_tap(built, T0) is None
    assert not switch.local_replies


@pytest.mark.parametrize("frame", ["udp", "ipv4-header-only"])
def test_broadcast_disabled_floods_plain_broadcast_to_no_one_and_is_counted(frame: str) -> None:
    switch = make_switch()
    switch.broadcast_enabled = False
    built = udp_broadcast(mac(LOCAL)) if frame == "udp" else ipv4_frame(mac(LOCAL), BROADCAST)
    assert switch.route_from_tap(built, T0) is None
    assert switch.drops["broadcast_disabled"] == 1
    assert switch.forwarded["flood"] == 0
    # Unicast between members is unaffected.
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(M2)), T0) == M2


@pytest.mark.parametrize("destination", [MDNS_V4, ALL_NODES_V6])
def test_broadcast_disabled_still_delivers_multicast_to_its_subscribers(destination: bytes) -> None:
    switch = make_switch(bridges=())
    switch.broadcast_enabled = False
    subscribe(switch, M3, mc(destination))
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), destination), T0) == (M3,)
    assert switch.drops["broadcast_disabled"] == 0


def test_broadcast_disabled_still_carries_arp_answered_scoped_and_flooded() -> None:
    switch = make_switch(bridges=(), ips=True)
    switch.broadcast_enabled = False
    # Answered locally: M2's managed address.
    assert switch.route_from_tap(arp_request(mac(LOCAL), tpa=IP_OF[M2]), T0) is None
    assert switch.local_replies == [expected_arp_reply(mac(M2), IP_OF[M2], mac(LOCAL), IP_OF[LOCAL])]
    # Scoped: two members announced the address.
    subscribe(switch, M2, arp_group(ip4("10.147.17.60")))
    subscribe(switch, M3, arp_group(ip4("10.147.17.60")))
    assert sorted(switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.60"), T0)) == sorted([M2, M3])
    # Flooded: nobody claims the address.
    assert sorted(switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.70"), T0)) == sorted([M2, M3])
    assert switch.forwarded == {"arp_answered_locally": 1, "arp_scoped": 1, "arp_flooded": 1}
    assert switch.drops["broadcast_disabled"] == 0


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_broadcast_limit_bounds_the_flood(limit: int) -> None:
    switch = make_switch()
    switch.broadcast_limit = limit
    targets = switch.route_from_tap(udp_broadcast(mac(LOCAL)), T0)
    assert isinstance(targets, tuple)
    assert len(targets) == limit
    assert set(targets) <= {M2, M3, BR1, BR2}
    assert len(set(targets)) == limit


@pytest.mark.parametrize("limit, bridges_expected", [(1, 1), (2, 2), (3, 2), (4, 2)])
def test_broadcast_limit_serves_bridges_first(limit: int, bridges_expected: int) -> None:
    # Bridges carry whole LANs behind them: a bounded flood reaches them before plain members.
    switch = make_switch(others=(M2, M3, 0x1000000004, 0x1000000005))
    switch.broadcast_limit = limit
    targets = switch.route_from_tap(udp_broadcast(mac(LOCAL)), T0)
    assert len(targets) == limit
    assert len(set(targets) & {BR1, BR2}) == bridges_expected
    if limit >= 2:
        assert {BR1, BR2} <= set(targets)


@pytest.mark.parametrize("limit", [4, 5, 100, None])
def test_broadcast_limit_at_or_above_member_count_reaches_everyone(limit: int | None) -> None:
    switch = make_switch()
    switch.broadcast_limit = limit
    targets = switch.route_from_tap(udp_broadcast(mac(LOCAL)), T0)
    assert sorted(targets) == sorted([M2, M3, BR1, BR2])


def test_broadcast_limit_does_not_bound_multicast_to_subscribers() -> None:
    # The limit bounds plain broadcast only; every subscriber of a group gets it.
    switch = make_switch()
    switch.broadcast_limit = 1
    subscribe(switch, M2, mc(MDNS_V4))
    subscribe(switch, M3, mc(MDNS_V4))
    assert sorted(switch.route_from_tap(ipv4_frame(mac(LOCAL), MDNS_V4), T0)) == sorted([M2, M3, BR1, BR2])


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


def listened(switch: NetworkSwitch) -> NetworkSwitch:
    """Let a new bridge finish its listening period (no other bridge heard), as a running one has."""
    switch.listening_until_s = T0
    return switch


def test_new_bridge_listens_for_other_bridges_before_carrying_its_lan() -> None:
    switch = make_switch(local_bridge=True)
    assert switch.route_from_tap(ipv4_frame(LAN_HOST_A, mac(M2)), T0) is None
    assert switch.drops["bridge_listening"] == 1
    assert switch.route_from_tap(ipv4_frame(LAN_HOST_A, mac(M2)), T0 + 1.0) is None
    assert switch.route_from_tap(ipv4_frame(LAN_HOST_A, mac(M2)), T0 + 1.6) == M2
    # Its own frames are never held back.
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(M2)), T0) == M2


def test_bridge_member_may_send_frames_with_foreign_source_macs_from_its_tap() -> None:
    switch = listened(make_switch(local_bridge=True))
    assert switch.local_is_bridge
    assert switch.route_from_tap(ipv4_frame(LAN_HOST_A, mac(M2)), T0) == M2
    assert sorted(switch.route_from_tap(udp_broadcast(LAN_HOST_A), T0)) == sorted([M2, M3, BR1, BR2])
    # ARP from a LAN host for an address no member announced goes to the (other) bridges, which carry LANs.
    assert sorted(switch.route_from_tap(arp_request(LAN_HOST_A), T0)) == sorted([BR1, BR2])
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
    assert switch.accept_from_peer(M2, udp_broadcast(mac(M2)), T0) is False
    assert switch.drops["broadcast_disabled"] == 1
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), mac(LOCAL)), T0) is True
    # ARP (broadcast by nature) and multicast still work with broadcast off.
    assert switch.accept_from_peer(M2, arp_request(mac(M2)), T0) is True
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), MDNS_V4), T0) is True
    assert switch.drops["broadcast_disabled"] == 1


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


def test_frames_given_as_views_of_a_writable_buffer_are_handled_like_bytes() -> None:
    # The core hands the switch views into its reused decryption buffer.
    switch = make_switch(local_bridge=True)
    frame = memoryview(bytearray(ipv4_frame(LAN_HOST_A, LAN_HOST_B)))
    assert switch.accept_from_peer(BR1, frame, T0) is True
    assert switch.learned.lookup(LAN_HOST_A, T0) == BR1


def test_topology_change_from_a_bridge_flushes_macs_learned_behind_the_named_bridges() -> None:
    from l2mesh.switch.loops import build_topology_change

    switch = make_switch()
    assert switch.accept_from_peer(BR1, ipv4_frame(LAN_HOST_A, mac(LOCAL)), T0)
    assert switch.accept_from_peer(BR2, ipv4_frame(LAN_HOST_B, mac(LOCAL)), T0)
    change = build_topology_change(mac(BR2), NET, BR2, [BR1])
    assert switch.accept_from_peer(BR2, change, T0) is False  # never reaches the TAP
    assert switch.learned.lookup(LAN_HOST_A, T0) is None and switch.learned.lookup(LAN_HOST_B, T0) is None
    # Unknown again: the next frame for those hosts is flooded to the bridges.
    assert sorted(switch.route_from_tap(ipv4_frame(mac(LOCAL), LAN_HOST_A), T0)) == sorted([BR1, BR2])


def test_counters_report_drops_forwards_and_learning() -> None:
    switch = make_switch()
    # Nobody announced 10.147.17.2 and there are bridges: the request is scoped to them.
    switch.route_from_tap(arp_request(mac(LOCAL)), T0)
    switch.route_from_tap(udp_broadcast(mac(LOCAL)), T0)
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A), T0)
    switch.accept_from_peer(M2, arp_request(LAN_HOST_A), T0)
    assert switch.counters() == {
        "drops": {"spoofed_source": 1},
        "forwarded": {"arp_scoped": 1, "flood": 1},
        "learned": {"learned": 1},
    }


# -- ARP emulation: answered locally, scoped to the owner, flooded as a last resort -------------------


@pytest.mark.parametrize("target", [M2, M3, BR1], ids=["m2", "m3", "bridge-member"])
def test_arp_request_for_a_members_managed_ip_is_answered_locally_with_a_byte_exact_reply(target: int) -> None:
    switch = make_switch(ips=True)
    request = arp_request(mac(LOCAL), spa=IP_OF[LOCAL], tpa=IP_OF[target])
    # Nothing crosses the network: the switch answers on the owner's behalf.
    assert switch.route_from_tap(request, T0) is None
    expected = expected_arp_reply(mac(target), IP_OF[target], mac(LOCAL), IP_OF[LOCAL])
    assert switch.local_replies == [expected]
    assert len(expected) == 42
    # The same reply read back with dpkt, field by field.
    reply = dpkt.ethernet.Ethernet(switch.local_replies[0])
    assert (reply.dst, reply.src, reply.type) == (mac(LOCAL), mac(target), dpkt.ethernet.ETH_TYPE_ARP)
    arp = reply.data
    assert (arp.hrd, arp.pro, arp.hln, arp.pln, arp.op) == (1, 0x0800, 6, 4, dpkt.arp.ARP_OP_REPLY)
    assert (arp.sha, arp.spa, arp.tha, arp.tpa) == (mac(target), ip4(IP_OF[target]), mac(LOCAL), ip4(IP_OF[LOCAL]))
    assert switch.forwarded == {"arp_answered_locally": 1}
    assert not switch.drops


def test_arp_reply_goes_to_the_lan_host_that_asked_through_a_local_bridge() -> None:
    switch = listened(make_switch(local_bridge=True, ips=True))
    request = arp_request(LAN_HOST_A, spa="10.147.17.200", tpa=IP_OF[M2])
    assert switch.route_from_tap(request, T0) is None
    assert switch.local_replies == [expected_arp_reply(mac(M2), IP_OF[M2], LAN_HOST_A, "10.147.17.200")]


def test_arp_probe_from_an_unconfigured_host_is_answered_for_a_taken_address() -> None:
    # RFC 5227 probe (sender IP 0.0.0.0): answering tells the prober the address is in use.
    switch = make_switch(ips=True)
    assert switch.route_from_tap(arp_request(mac(LOCAL), spa="0.0.0.0", tpa=IP_OF[M3]), T0) is None
    assert switch.local_replies == [expected_arp_reply(mac(M3), IP_OF[M3], mac(LOCAL), "0.0.0.0")]


def test_unicast_arp_request_to_a_member_mac_goes_to_that_member_like_any_unicast() -> None:
    # Linux re-validates a stale neighbour entry with a unicast request: it is not intercepted.
    switch = make_switch(ips=True)
    assert switch.route_from_tap(arp_request(mac(LOCAL), dst=mac(M2), tpa=IP_OF[M2]), T0) == M2
    assert not switch.local_replies and not switch.forwarded


def test_arp_learned_from_a_bridges_lan_host_is_answered_locally_until_it_ages_out() -> None:
    switch = make_switch()
    lan_ip = "10.147.17.100"
    reply = arp_frame(dpkt.arp.ARP_OP_REPLY, LAN_HOST_A, mac(LOCAL), lan_ip, "10.147.17.1", tha=mac(LOCAL))
    assert switch.accept_from_peer(BR1, reply, T0) is True
    request = arp_request(mac(LOCAL), tpa=lan_ip)
    assert switch.route_from_tap(request, T0 + 1) is None
    assert switch.local_replies == [expected_arp_reply(LAN_HOST_A, lan_ip, mac(LOCAL), "10.147.17.1")]
    switch.local_replies.clear()
    assert switch.route_from_tap(request, T0 + ARP_AGING_S) is None
    switch.local_replies.clear()
    # Aged out: the request goes to the bridges (nobody announced the address) and is not answered here.
    assert sorted(switch.route_from_tap(request, T0 + ARP_AGING_S + 0.5)) == sorted([BR1, BR2])
    assert not switch.local_replies
    assert switch.forwarded == {"arp_answered_locally": 2, "arp_scoped": 1}


def test_arp_learned_from_a_members_gratuitous_arp_is_answered_with_its_member_mac() -> None:
    # M2 holds an address the controller does not manage (set by hand) and announces it with gratuitous ARP.
    switch = make_switch(bridges=())
    gratuitous = arp_request(mac(M2), spa="10.147.17.42", tpa="10.147.17.42")
    assert switch.accept_from_peer(M2, gratuitous, T0) is True
    assert switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.42"), T0 + 1) is None
    assert switch.local_replies == [expected_arp_reply(mac(M2), "10.147.17.42", mac(LOCAL), "10.147.17.1")]


def test_arp_is_not_learned_when_the_sender_hardware_address_is_not_the_frame_source() -> None:
    switch = make_switch()
    forged = arp_request(LAN_HOST_A, spa="10.147.17.100", sha=LAN_HOST_B)
    assert switch.accept_from_peer(BR1, forged, T0) is True  # a bridge may carry LAN_HOST_A's frames...
    assert not switch.arp.learned  # ...but the ARP inside contradicts its own header: not learned
    unspecified = arp_request(LAN_HOST_A, spa="0.0.0.0", tpa="10.147.17.100")
    assert switch.accept_from_peer(BR1, unspecified, T0) is True
    assert not switch.arp.learned  # an ARP probe says nothing about who holds 0.0.0.0


def test_a_member_claiming_another_members_managed_address_in_arp_is_dropped() -> None:
    switch = make_switch(bridges=(), ips=True)
    # M2 claims M3's managed address (ARP poisoning): the kernel behind our TAP never sees it.
    claim = arp_request(mac(M2), spa=IP_OF[M3], tpa=IP_OF[M3])
    assert switch.accept_from_peer(M2, claim, T0) is False
    assert switch.drops["arp_claims_other_members_address"] == 1
    # Its own address it may announce.
    assert switch.accept_from_peer(M2, arp_request(mac(M2), spa=IP_OF[M2], tpa=IP_OF[M2]), T0) is True
    assert switch.route_from_tap(arp_request(mac(LOCAL), tpa=IP_OF[M3]), T0 + 1) is None
    assert switch.local_replies == [expected_arp_reply(mac(M3), IP_OF[M3], mac(LOCAL), IP_OF[LOCAL])]


def test_arp_for_an_address_one_member_announced_is_answered_locally_with_its_member_mac() -> None:
    switch = make_switch()
    subscribe(switch, M3, mc(MDNS_V4), arp_group(ip4("10.147.17.50")))
    assert switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.50"), T0 + 1) is None
    assert switch.local_replies == [expected_arp_reply(mac(M3), "10.147.17.50", mac(LOCAL), "10.147.17.1")]
    assert switch.forwarded == {"arp_answered_locally": 1}


@pytest.mark.parametrize("bridges", [(BR1, BR2), ()], ids=["with-bridges", "no-bridges"])
def test_arp_for_an_address_several_members_announced_is_scoped_to_them_plus_bridges(bridges: tuple[int, ...]) -> None:
    switch = make_switch(others=(M2, M3, 0x1000000004), bridges=bridges)
    subscribe(switch, M2, arp_group(ip4("10.147.17.50")))
    subscribe(switch, M3, arp_group(ip4("10.147.17.50")))
    subscribe(switch, 0x1000000004, arp_group(ip4("10.147.17.51")))
    targets = switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.50"), T0 + 1)
    assert sorted(targets) == sorted([M2, M3, *bridges])
    assert not switch.local_replies
    assert switch.forwarded == {"arp_scoped": 1}


def test_arp_for_an_address_a_bridge_announced_is_scoped_to_bridges_not_answered() -> None:
    # Behind a bridge the address may belong to any LAN host, with its own MAC: only the bridge can answer.
    switch = make_switch()
    subscribe(switch, BR1, arp_group(ip4("10.147.17.50")))
    assert sorted(switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.50"), T0 + 1)) == sorted([BR1, BR2])
    assert not switch.local_replies


def test_arp_for_an_unclaimed_address_is_flooded_to_all_members_without_bridges() -> None:
    switch = make_switch(others=(M2, M3, 0x1000000004), bridges=())
    targets = switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.99"), T0)
    assert sorted(targets) == sorted([M2, M3, 0x1000000004])
    assert switch.forwarded == {"arp_flooded": 1}
    assert not switch.local_replies


def test_arp_for_an_unclaimed_address_goes_only_to_bridges_when_there_are_bridges() -> None:
    # Every member announces its own IPv4s, so an address nobody claimed can only live behind a bridge.
    switch = make_switch()
    assert sorted(switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.99"), T0)) == sorted([BR1, BR2])
    assert switch.forwarded == {"arp_scoped": 1}


def test_arp_flood_respects_the_broadcast_limit() -> None:
    switch = make_switch(others=(M2, M3, 0x1000000004), bridges=())
    switch.broadcast_limit = 2
    assert len(switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.99"), T0)) == 2


def test_announced_arp_address_expires_with_the_subscription() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, M3, arp_group(ip4("10.147.17.50")))
    request = arp_request(mac(LOCAL), tpa="10.147.17.50")
    assert switch.route_from_tap(request, T0 + GROUP_TTL_S - 0.01) is None
    assert len(switch.local_replies) == 1
    switch.local_replies.clear()
    # Not refreshed: at its expiry the announcement is gone and the request is flooded to everyone.
    assert sorted(switch.route_from_tap(request, T0 + GROUP_TTL_S), key=int) == sorted([M2, M3])
    assert not switch.local_replies
    assert switch.forwarded == {"arp_answered_locally": 1, "arp_flooded": 1}


@pytest.mark.parametrize("broadcast", [True, False], ids=["broadcast-on", "broadcast-off"])
@pytest.mark.parametrize("kind", ["gratuitous-request", "broadcast-reply"])
def test_gratuitous_arp_goes_to_all_members(kind: str, broadcast: bool) -> None:
    switch = make_switch(ips=True)
    switch.broadcast_enabled = broadcast
    subscribe(switch, M2, arp_group(ip4(IP_OF[LOCAL])))  # even when someone announced the address
    if kind == "gratuitous-request":
        frame = arp_request(mac(LOCAL), spa=IP_OF[LOCAL], tpa=IP_OF[LOCAL])
    else:
        frame = arp_frame(dpkt.arp.ARP_OP_REPLY, mac(LOCAL), BROADCAST, IP_OF[LOCAL], IP_OF[LOCAL])
    assert sorted(switch.route_from_tap(frame, T0)) == sorted([M2, M3, BR1, BR2])
    assert not switch.local_replies
    assert switch.forwarded == {"arp_announce": 1}


@pytest.mark.parametrize("spa", ["10.147.17.9", "0.0.0.0"], ids=["from-a-secondary-address", "duplicate-address-probe"])
def test_arp_for_our_own_address_is_not_answered_by_us(spa: str) -> None:
    # Answering would tell our own kernel (or `arping -D`) that a duplicate holds its address.
    alone = make_switch(bridges=(), ips=True)
    request = arp_request(mac(LOCAL), spa=spa, tpa=IP_OF[LOCAL])
    assert alone.route_from_tap(request, T0) is None
    assert not alone.local_replies
    assert alone.drops == {"arp_for_own_address": 1}
    # With bridges it is asked on their LANs (a LAN host might hold it too), still not answered here.
    bridged = make_switch(ips=True)
    assert sorted(bridged.route_from_tap(request, T0)) == sorted([BR1, BR2])
    assert not bridged.local_replies
    # A member that announces our address (a conflict) is asked, so it can defend it.
    conflicting = make_switch(bridges=(), ips=True)
    subscribe(conflicting, M3, arp_group(ip4(IP_OF[LOCAL])))
    assert conflicting.route_from_tap(request, T0) == (M3,)
    assert not conflicting.local_replies


@pytest.mark.parametrize("damage", ["truncated", "ipv6-protocol", "long-hardware-address"])
def test_malformed_arp_from_tap_is_dropped_and_counted(damage: str) -> None:
    switch = make_switch(ips=True)
    frame = bytearray(arp_request(mac(LOCAL), tpa=IP_OF[M2]))
    if damage == "truncated":
        frame = frame[:30]
    elif damage == "ipv6-protocol":
        frame[16:18] = b"\x86\xdd"
    else:
        frame[18] = 8
    assert switch.route_from_tap(bytes(frame), T0) is None
    assert switch.drops == {"arp_malformed": 1}
    assert not switch.local_replies and not switch.forwarded


def test_new_config_moves_managed_addresses_and_forgets_what_removed_members_taught() -> None:
    switch = make_switch(bridges=(BR1,), ips=True)
    lan_ip = "10.147.17.100"
    switch.accept_from_peer(BR1, arp_request(LAN_HOST_A, spa=lan_ip, tpa=lan_ip), T0)
    # M2's address moves to M3; BR1 leaves the network.
    switch.set_members(
        [
            MemberPort(LOCAL, mac(LOCAL), False, (ip4(IP_OF[LOCAL]),)),
            MemberPort(M2, mac(M2), False, ()),
            MemberPort(M3, mac(M3), False, (ip4(IP_OF[M2]), ip4(IP_OF[M3]))),
        ]
    )
    assert switch.route_from_tap(arp_request(mac(LOCAL), tpa=IP_OF[M2]), T0 + 1) is None
    assert switch.local_replies == [expected_arp_reply(mac(M3), IP_OF[M2], mac(LOCAL), IP_OF[LOCAL])]
    switch.local_replies.clear()
    assert not switch.arp.learned
    assert sorted(switch.route_from_tap(arp_request(mac(LOCAL), tpa=lan_ip), T0 + 1)) == sorted([M2, M3])
    assert not switch.local_replies


def test_address_that_moved_to_another_member_is_answered_for_its_new_owner() -> None:
    # M2 held 10.147.17.50 (set by hand or leased by DHCP) and answered ARP for it; we learned that.
    switch = make_switch(bridges=())
    subscribe(switch, M2, arp_group(ip4("10.147.17.50")))
    reply = arp_frame(dpkt.arp.ARP_OP_REPLY, mac(M2), mac(LOCAL), "10.147.17.50", "10.147.17.1", tha=mac(LOCAL))
    assert switch.accept_from_peer(M2, reply, T0) is True
    # The address moves to M3 (a new DHCP lease): M2's complete group list drops it, M3's gains it.
    subscribe(switch, M2, mc(MDNS_V4), now=T0 + 10)
    subscribe(switch, M3, arp_group(ip4("10.147.17.50")), now=T0 + 10)
    assert switch.route_from_tap(arp_request(mac(LOCAL), tpa="10.147.17.50"), T0 + 11) is None
    # Expected: the reply names the announcing owner, M3. Actual: M2's MAC, for ARP_AGING_S (300 s) after
    # M2's last ARP, so the address is unreachable from every peer that had learned it.
    assert switch.local_replies == [expected_arp_reply(mac(M3), "10.147.17.50", mac(LOCAL), "10.147.17.1")]


# -- multicast subscriptions: delivery, replacement, expiry ------------------------------------------


def test_each_announcement_replaces_the_members_complete_group_list() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, M2, mc(MDNS_V4), mc(ALL_NODES_V6))
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), MDNS_V4), T0) == (M2,)
    subscribe(switch, M2, mc(ALL_NODES_V6), now=T0 + 1)  # left the mDNS group
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), MDNS_V4), T0 + 1) is None
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), ALL_NODES_V6), T0 + 1) == (M2,)
    assert switch.drops == {"multicast_no_subscribers": 1}


def test_subscriptions_expire_at_their_ttl_unless_refreshed() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, M2, mc(MDNS_V4))
    subscribe(switch, M3, mc(MDNS_V4))
    subscribe(switch, M3, mc(MDNS_V4), now=T0 + 60)  # M3 refreshes (every 60 s), M2 goes silent
    frame = ipv4_frame(mac(LOCAL), MDNS_V4)
    assert sorted(switch.route_from_tap(frame, T0 + GROUP_TTL_S - 0.01)) == sorted([M2, M3])
    assert switch.route_from_tap(frame, T0 + GROUP_TTL_S) == (M3,)
    assert switch.route_from_tap(frame, T0 + 60 + GROUP_TTL_S - 0.01) == (M3,)
    assert switch.route_from_tap(frame, T0 + 60 + GROUP_TTL_S) is None
    assert switch.drops == {"multicast_no_subscribers": 1}


def test_expire_purges_lapsed_subscriptions_from_the_tables() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, M2, mc(MDNS_V4), arp_group(ip4("10.147.17.50")))
    subscribe(switch, M3, mc(MDNS_V4), now=T0 + 100)
    switch.expire(T0 + GROUP_TTL_S + 1)
    assert switch.groups.groups_of(M2) == set()
    assert switch.groups.groups_of(M3) == {mc(MDNS_V4)}
    assert switch.groups.subscribers(mc(MDNS_V4), T0 + GROUP_TTL_S + 1) == [M3]


def test_a_group_is_the_multicast_mac_together_with_its_adi() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, M2, group_key(MDNS_V4, adi=7))
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), MDNS_V4), T0) is None
    assert arp_group(ip4("10.147.17.50")) == BROADCAST + ip4("10.147.17.50") == group_key(BROADCAST, 0x0A931132)
    assert mc(MDNS_V4) == MDNS_V4 + b"\0\0\0\0"


def test_neighbour_solicitation_reaches_only_the_owner_of_the_solicited_address() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, M2, mc(ALL_NODES_V6), mc(b"\x33\x33\xff\x00\x00\x09"))
    subscribe(switch, M3, mc(ALL_NODES_V6), mc(SOLICITED_NODE_V6))
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), SOLICITED_NODE_V6), T0) == (M3,)
    assert sorted(switch.route_from_tap(ipv4_frame(mac(LOCAL), ALL_NODES_V6), T0)) == sorted([M2, M3])


def test_new_config_forgets_the_subscriptions_of_removed_members() -> None:
    switch = make_switch(bridges=())
    subscribe(switch, M2, mc(MDNS_V4))
    subscribe(switch, M3, mc(MDNS_V4))
    switch.set_members([MemberPort(LOCAL, mac(LOCAL)), MemberPort(M3, mac(M3))])
    assert switch.groups.groups_of(M2) == set()
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), MDNS_V4), T0) == (M3,)


def test_multicast_groups_replace_reports_whether_the_list_changed() -> None:
    groups = MulticastGroups()
    assert groups.replace(M2, {mc(MDNS_V4)}, T0) is True
    assert groups.replace(M2, {mc(MDNS_V4)}, T0 + 60) is False  # a refresh: only the expiry moved
    assert groups.subscribers(mc(MDNS_V4), T0 + 30) == [M2]
    assert groups.replace(M2, {mc(MDNS_V4), mc(ALL_NODES_V6)}, T0 + 60) is True
    groups.replace(M2, {mc(ALL_NODES_V6)}, T0 + 60)
    assert groups.subscribers(mc(MDNS_V4), T0) == []
    assert groups.subscribers(mc(ALL_NODES_V6), T0) == [M2]


@pytest.mark.parametrize("after", [set(), {mc(ALL_NODES_V6)}], ids=["all-left", "one-left"])
def test_multicast_groups_replace_reports_a_shrinking_list_as_a_change(after: set[bytes]) -> None:
    groups = MulticastGroups()
    groups.replace(M2, {mc(MDNS_V4), mc(ALL_NODES_V6)}, T0)
    assert groups.replace(M2, after, T0 + 60) is True


def test_multicast_from_peers_is_accepted_whether_or_not_we_subscribed() -> None:
    # The sender scoped it already; the kernel filters what it does not listen to.
    switch = make_switch()
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), OTHER_V4_GROUP), T0) is True


# -- storm guard ------------------------------------------------------------------------------------


def test_storm_guard_passes_the_burst_then_drops_counts_and_names_the_source() -> None:
    switch = make_switch(bridges=())
    assert (STORM_FRAMES_PER_S, STORM_BURST_FRAMES) == (2000.0, 5000.0)
    frame = udp_broadcast(mac(LOCAL))
    verdicts = [switch.route_from_tap(frame, T0) for _ in range(5003)]
    assert all(v is not None for v in verdicts[:5000])
    assert verdicts[5000:] == [None, None, None]
    assert switch.drops == {"broadcast_storm": 3}
    assert switch.storming == {LOCAL}
    # Unicast is not rate limited.
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), mac(M2)), T0) == M2
    # The bucket refills at 2000 frames/s: half a second later, 1000 more pass.
    later = [switch.route_from_tap(frame, T0 + 0.5) for _ in range(1001)]
    assert sum(v is not None for v in later) == 1000
    assert switch.drops == {"broadcast_storm": 4}


def test_storm_guard_counts_multicast_arp_and_broadcast_together() -> None:
    switch = make_switch(bridges=(), ips=True)
    subscribe(switch, M2, mc(MDNS_V4))
    mix = (udp_broadcast(mac(LOCAL)), ipv4_frame(mac(LOCAL), MDNS_V4), arp_request(mac(LOCAL)))
    for i in range(int(STORM_BURST_FRAMES)):
        switch.route_from_tap(mix[i % 3], T0)
    assert not switch.drops
    # Even an ARP the switch would answer itself is refused once the source storms.
    assert switch.route_from_tap(arp_request(mac(LOCAL), tpa=IP_OF[M3]), T0) is None
    assert switch.route_from_tap(ipv4_frame(mac(LOCAL), MDNS_V4), T0) is None
    assert switch.drops == {"broadcast_storm": 2}


def test_storm_guard_allows_a_steady_rate_just_under_its_limit_forever() -> None:
    switch = make_switch(bridges=())
    frame = udp_broadcast(mac(LOCAL))
    now = T0
    for _ in range(4 * int(STORM_BURST_FRAMES)):  # 10 s at 1990 frames/s, burst never touched
        now += 1 / 1990
        assert switch.route_from_tap(frame, now) is not None
    assert not switch.drops


def test_storm_guard_on_frames_from_peers_is_per_source() -> None:
    switch = make_switch()
    flood = udp_broadcast(mac(M2))
    accepted = [switch.accept_from_peer(M2, flood, T0) for _ in range(5001)]
    assert accepted.count(True) == 5000 and accepted[-1] is False
    assert switch.drops == {"broadcast_storm": 1}
    assert switch.storming == {M2}
    # Other members are not punished, and M2's unicast still flows.
    assert switch.accept_from_peer(M3, udp_broadcast(mac(M3)), T0) is True
    assert switch.accept_from_peer(M2, ipv4_frame(mac(M2), mac(LOCAL)), T0) is True
    # Our own sending is guarded separately from what peers send us.
    assert switch.route_from_tap(udp_broadcast(mac(LOCAL)), T0) is not None


# -- properties of every decision for frames from the TAP ---------------------------------------------

group_macs = st.sampled_from([MDNS_V4, ALL_NODES_V6, SOLICITED_NODE_V6, OTHER_V4_GROUP])
tap_frames = st.one_of(
    st.tuples(st.just("unicast"), st.sampled_from([M2, M3, BR1, BR2])).map(lambda t: ipv4_frame(mac(LOCAL), mac(t[1]))),
    group_macs.map(lambda g: ipv4_frame(mac(LOCAL), g)),
    st.just(udp_broadcast(mac(LOCAL))),
    st.integers(1, 60).map(lambda n: arp_request(mac(LOCAL), tpa=f"10.147.17.{n}")),
)


@SETTINGS
@given(
    st.lists(tap_frames, min_size=1, max_size=20),
    st.dictionaries(st.sampled_from([M2, M3, BR1, BR2]), st.sets(group_macs.map(mc), max_size=3)),
    st.sets(st.integers(1, 60), max_size=5),
    st.one_of(st.none(), st.integers(1, 5)),
    st.booleans(),
)
def test_frames_from_tap_go_only_to_other_members_and_multicast_only_to_subscribers_or_bridges(
    frames: list[bytes], subscriptions: dict[int, set[bytes]], announced: set[int], limit: int | None, broadcast: bool
) -> None:
    switch = make_switch(ips=True)
    switch.broadcast_limit = limit
    switch.broadcast_enabled = broadcast
    for node_id, groups in subscriptions.items():
        subscribe(switch, node_id, *groups)
    for n in announced:
        subscribe(switch, M3, *switch.groups.groups_of(M3), arp_group(ip4(f"10.147.17.{n}")))
    for frame in frames:
        replies_before = len(switch.local_replies)
        targets = switch.route_from_tap(frame, T0)
        as_set = {targets} if isinstance(targets, int) else set(targets or ())
        assert LOCAL not in as_set
        assert as_set <= {M2, M3, BR1, BR2}
        destination = frame[:6]
        if destination in (MDNS_V4, ALL_NODES_V6, SOLICITED_NODE_V6, OTHER_V4_GROUP):
            listeners = {n for n, groups in subscriptions.items() if mc(destination) in groups}
            assert as_set == listeners | {BR1, BR2}
        elif destination == BROADCAST and frame[12:14] == b"\x08\x00":
            assert len(as_set) == (min(4, limit or 4) if broadcast else 0)
        # A frame answered locally crosses to no one.
        if len(switch.local_replies) > replies_before:
            assert targets is None
