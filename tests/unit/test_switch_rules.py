"""Flow rules in the switch: enforced by the sending member and again by the receiving one (issue 13, items 1, 3, 4, 5).

Two switches stand for two members' ends of one network: what the guest's
switch lets out, and what the server's switch lets reach its TAP.
"""

from __future__ import annotations

import socket

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.ids import make_network_id, member_mac
from l2mesh.rules.syntax import NO_RULES, parse_rules
from l2mesh.switch import MemberPort, NetworkSwitch
from l2mesh.switch.flow_rules import INBOUND, OUTBOUND

NET = make_network_id(0x0A1B2C3D4E, 13)
GUEST = 0x1000000001
SERVER = 0x1000000002
PLC = 0x1000000003
PLAIN = 0x1000000004  # a member without tags
BRIDGE = 0x2000000001
LAN_HOST = bytes.fromhex("525400123456")  # behind BRIDGE
BROADCAST = b"\xff" * 6
T0 = 1000.0
SYN, ACK = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK
ISSUE_RULES = parse_rules(
    """\
# guests may not reach ssh anywhere, nor the 10.147.17.0/28 servers at all
drop tcp dport 22 src-tag guest
drop dst 10.147.17.0/28 src-tag guest
drop ethertype 0x88b5 not src-tag plc
accept
"""
)
IP_OF = {GUEST: "10.147.17.100", SERVER: "10.147.17.200", PLC: "10.147.17.3", PLAIN: "10.147.17.40", BRIDGE: "10.147.17.50"}
TAGS = {GUEST: {"guest"}, SERVER: {"server"}, PLC: {"plc"}, PLAIN: set(), BRIDGE: {"plc"}}


def mac(node_id: int) -> bytes:
    return member_mac(node_id, NET)


def switch_of(local: int, rules=ISSUE_RULES) -> NetworkSwitch:
    switch = NetworkSwitch(NET, local, mac(local))
    switch.set_members(
        [MemberPort(n, mac(n), n == BRIDGE, (socket.inet_aton(IP_OF[n]),), frozenset(TAGS[n])) for n in TAGS]
    )
    switch.set_rules(rules)
    return switch


def tcp(src: int, dst: int, dport: int, flags: int = SYN, sport: int = 40000, dst_ip: str | None = None) -> bytes:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags)
    ip = dpkt.ip.IP(
        src=socket.inet_aton(IP_OF[src]), dst=socket.inet_aton(dst_ip or IP_OF[dst]), p=dpkt.ip.IP_PROTO_TCP, data=segment
    )
    return bytes(dpkt.ethernet.Ethernet(src=mac(src), dst=mac(dst), type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def ping(src: int, dst: int) -> bytes:
    echo = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b"x" * 56))
    ip = dpkt.ip.IP(src=socket.inet_aton(IP_OF[src]), dst=socket.inet_aton(IP_OF[dst]), p=dpkt.ip.IP_PROTO_ICMP, data=echo)
    return bytes(dpkt.ethernet.Ethernet(src=mac(src), dst=mac(dst), type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def raw_88b5(src_mac: bytes, dst_mac: bytes) -> bytes:
    return dst_mac + src_mac + b"\x88\xb5" + b"plc cyclic data".ljust(46, b"\0")


def arp_request(src: int, target_ip: str) -> bytes:
    body = dpkt.arp.ARP(op=1, sha=mac(src), spa=socket.inet_aton(IP_OF[src]), tha=b"\0" * 6, tpa=socket.inet_aton(target_ip))
    return bytes(dpkt.ethernet.Ethernet(src=mac(src), dst=BROADCAST, type=dpkt.ethernet.ETH_TYPE_ARP, data=body))


def send_and_receive(sender: NetworkSwitch, receiver: NetworkSwitch, frame: bytes) -> tuple[bool, bool]:
    """(the sender let it out towards the receiver, the receiver let it reach its TAP)."""
    routed = sender.route_from_tap(frame, T0)
    target = receiver.local_node_id
    left = routed == target or (isinstance(routed, tuple) and target in routed)
    return left, receiver.accept_from_peer(sender.local_node_id, frame, T0)


# -- both ends ------------------------------------------------------------------------------------------
def test_the_sending_member_drops_what_its_rules_drop_and_counts_it() -> None:
    guest = switch_of(GUEST)
    assert guest.route_from_tap(tcp(GUEST, SERVER, 22), T0) is None
    assert guest.drops["rules"] == 1
    assert guest.rules is not None
    assert guest.rules.outbound_matches == [1, 0, 0, 0]
    assert guest.rules.new_causes == [(0, OUTBOUND, SERVER)]
    assert guest.route_from_tap(tcp(GUEST, SERVER, 80), T0) == SERVER
    assert guest.rules.outbound_matches == [1, 0, 0, 1]


def test_the_receiving_member_drops_again_what_the_rules_drop() -> None:
    server = switch_of(SERVER)
    assert not server.accept_from_peer(GUEST, tcp(GUEST, SERVER, 22), T0)
    assert server.accept_from_peer(GUEST, tcp(GUEST, SERVER, 80), T0)
    assert server.rules is not None
    assert server.rules.inbound_matches == [1, 0, 0, 1]
    assert server.rules.new_causes == [(0, INBOUND, GUEST)]
    assert server.drops["rules"] == 1


def test_a_sender_that_skips_its_own_rules_is_still_stopped_by_the_receiver() -> None:
    modified_guest = switch_of(GUEST, rules=NO_RULES)
    server = switch_of(SERVER)
    left, arrived = send_and_receive(modified_guest, server, tcp(GUEST, SERVER, 22))
    assert left and not arrived
    assert server.drops["rules"] == 1


@pytest.mark.parametrize("dport", [80, 443, 8080])
def test_a_guest_can_ping_and_reach_other_ports(dport: int) -> None:
    guest, server = switch_of(GUEST), switch_of(SERVER)
    assert send_and_receive(guest, server, tcp(GUEST, SERVER, dport)) == (True, True)
    assert send_and_receive(guest, server, ping(GUEST, SERVER)) == (True, True)


def test_a_guest_reaches_nothing_in_the_server_range_and_untagged_members_reach_ssh() -> None:
    guest, plain, plc = switch_of(GUEST), switch_of(PLAIN), switch_of(PLC)
    assert send_and_receive(guest, plc, ping(GUEST, PLC)) == (False, False)  # PLC's 10.147.17.3 is a server address
    assert send_and_receive(plain, switch_of(SERVER), tcp(PLAIN, SERVER, 22)) == (True, True)
    assert send_and_receive(guest, plain, tcp(GUEST, PLAIN, 80, dst_ip="10.147.17.5")) == (False, False)
    assert send_and_receive(guest, plain, tcp(GUEST, PLAIN, 80)) == (True, True)


# -- requirement 4: connections the other side opened --------------------------------------------------------
@pytest.mark.parametrize("rules", ["drop tcp src-tag guest\n", "drop tcp dport 22 src-tag guest\n", ISSUE_RULES.text])
def test_replies_to_a_connection_the_server_opened_pass_both_ends(rules: str) -> None:
    ruleset = parse_rules(rules)
    guest, server = switch_of(GUEST, ruleset), switch_of(SERVER, ruleset)
    # The server connects to the guest's port 22; the guest answers from port 22.
    assert send_and_receive(server, guest, tcp(SERVER, GUEST, 22, SYN, sport=50000)) == (True, True)
    assert send_and_receive(guest, server, tcp(GUEST, SERVER, 50000, SYN | ACK, sport=22)) == (True, True)
    assert send_and_receive(server, guest, tcp(SERVER, GUEST, 22, ACK, sport=50000)) == (True, True)
    assert send_and_receive(guest, server, tcp(GUEST, SERVER, 50000, ACK, sport=22)) == (True, True)
    # The guest opening the same kind of connection itself is stopped on both ends.
    assert send_and_receive(guest, switch_of(SERVER, ruleset), tcp(GUEST, SERVER, 22, SYN)) == (False, False)


# -- ARP and raw frames --------------------------------------------------------------------------------------------
def test_arp_is_never_dropped_by_an_ip_rule() -> None:
    ruleset = parse_rules("drop not dst 10.147.17.200 src-tag guest\ndrop icmp\n")
    guest, server = switch_of(GUEST, ruleset), switch_of(SERVER, ruleset)
    request = arp_request(GUEST, "10.147.17.99")  # an address nobody announced: asked of the bridge
    assert guest.route_from_tap(request, T0) == (BRIDGE,)
    assert server.accept_from_peer(GUEST, request, T0)
    assert guest.rules is not None and not guest.rules.drops


def test_a_raw_88b5_frame_from_an_untagged_member_is_dropped_and_counted_while_a_plc_ones_arrives() -> None:
    server = switch_of(SERVER)
    assert not server.accept_from_peer(PLAIN, raw_88b5(mac(PLAIN), mac(SERVER)), T0)
    assert server.accept_from_peer(PLC, raw_88b5(mac(PLC), mac(SERVER)), T0)
    assert server.rules is not None
    assert server.rules.inbound_matches[2] == 1 and server.rules.drops == 1
    assert server.rules.new_causes == [(2, INBOUND, PLAIN)]


def test_a_broadcast_goes_only_to_the_members_the_rules_let_it_reach() -> None:
    ruleset = parse_rules("drop dst-tag plc not src-tag plc\n")
    plain = switch_of(PLAIN, ruleset)
    targets = plain.route_from_tap(raw_88b5(mac(PLAIN), BROADCAST), T0)
    assert isinstance(targets, tuple) and sorted(targets) == sorted([GUEST, SERVER])  # not PLC, not the plc-tagged BRIDGE
    assert plain.rules is not None and plain.rules.outbound_matches == [2]
    plc = switch_of(PLC, ruleset)
    assert sorted(plc.route_from_tap(raw_88b5(mac(PLC), BROADCAST), T0)) == sorted([GUEST, SERVER, PLAIN, BRIDGE])


def test_a_broadcast_no_member_may_receive_is_dropped_and_counted() -> None:
    guest = switch_of(GUEST, parse_rules("drop broadcast src-tag guest\n"))
    assert guest.route_from_tap(raw_88b5(mac(GUEST), BROADCAST), T0) is None
    assert guest.drops["rules"] == 1


# -- bridges: MACs behind a bridge carry the bridge member's tags --------------------------------------------------
def test_frames_from_a_lan_behind_a_bridge_carry_the_bridge_members_tags() -> None:
    server = switch_of(SERVER)
    # BRIDGE is tagged plc: its LAN's PLC frames arrive, a guest's would not.
    assert server.accept_from_peer(BRIDGE, raw_88b5(LAN_HOST, mac(SERVER)), T0)
    assert server.learned.lookup(LAN_HOST, T0) == BRIDGE
    untagged_bridge = switch_of(SERVER)
    untagged_bridge.set_members(
        [MemberPort(n, mac(n), n == BRIDGE, (), frozenset() if n == BRIDGE else frozenset(TAGS[n])) for n in TAGS]
    )
    assert not untagged_bridge.accept_from_peer(BRIDGE, raw_88b5(LAN_HOST, mac(SERVER)), T0)


def test_frames_to_a_mac_behind_a_bridge_are_judged_by_the_bridge_members_tags() -> None:
    ruleset = parse_rules("drop dst-tag plc src-tag guest\n")
    guest = switch_of(GUEST, ruleset)
    guest.learned.learn(LAN_HOST, BRIDGE, T0)
    assert guest.route_from_tap(raw_88b5(mac(GUEST), LAN_HOST), T0) is None
    server = switch_of(SERVER, ruleset)
    server.learned.learn(LAN_HOST, BRIDGE, T0)
    assert server.route_from_tap(raw_88b5(mac(SERVER), LAN_HOST), T0) == BRIDGE


# -- configuration ----------------------------------------------------------------------------------------------------
def test_no_rules_means_no_rule_state_at_all() -> None:
    switch = switch_of(GUEST, NO_RULES)
    assert switch.rules is None
    assert switch.route_from_tap(tcp(GUEST, SERVER, 22), T0) == SERVER
    assert "rules" not in switch.counters()
    assert switch_of(GUEST, parse_rules("# nothing but a comment\n")).rules is None


def test_new_tags_apply_at_once_and_counters_survive_while_the_rules_stay() -> None:
    server = switch_of(SERVER)
    assert not server.accept_from_peer(GUEST, tcp(GUEST, SERVER, 22), T0)
    # The guest is re-tagged (a new config with the same rules): it may now reach ssh.
    server.set_members([MemberPort(n, mac(n), n == BRIDGE, (), frozenset() if n == GUEST else frozenset(TAGS[n])) for n in TAGS])
    server.set_rules(parse_rules(ISSUE_RULES.text))
    assert server.accept_from_peer(GUEST, tcp(GUEST, SERVER, 22), T0)
    assert server.rules is not None and server.rules.inbound_matches == [1, 0, 0, 1]
    server.set_rules(parse_rules("drop tcp\n"))
    assert server.rules.inbound_matches == [0]
    server.set_rules(NO_RULES)
    assert server.rules is None


def test_report_names_each_rule_by_its_line_in_the_operators_text() -> None:
    server = switch_of(SERVER)
    server.accept_from_peer(GUEST, tcp(GUEST, SERVER, 22), T0)
    assert server.rules is not None
    report = server.rules.report()
    assert [r["line"] for r in report] == [2, 3, 4, 5]
    assert report[0] == {
        "line": 2, "rule": "drop tcp dport 22 src-tag guest", "action": "drop", "matches": 1, "outbound": 0, "inbound": 1
    }


def test_each_cause_is_noted_once() -> None:
    server = switch_of(SERVER)
    for _ in range(5):
        server.accept_from_peer(GUEST, tcp(GUEST, SERVER, 22), T0)
        server.accept_from_peer(PLAIN, raw_88b5(mac(PLAIN), mac(SERVER)), T0)
    assert server.rules is not None
    assert server.rules.new_causes == [(0, INBOUND, GUEST), (2, INBOUND, PLAIN)]
    assert server.rules.drops == 10


def test_log_rules_accept_count_and_are_noted() -> None:
    server = switch_of(SERVER, parse_rules("log tcp dport 22\n"))
    assert server.accept_from_peer(GUEST, tcp(GUEST, SERVER, 22), T0)
    assert server.rules is not None
    assert server.rules.inbound_matches == [1] and server.rules.drops == 0
    assert server.rules.new_causes == [(0, INBOUND, GUEST)]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=96), st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00", b"\x88\xb5"]))
def test_malformed_frames_through_a_ruled_switch_are_dropped_or_passed_never_raised(data: bytes, ethertype: bytes) -> None:
    guest, server = switch_of(GUEST), switch_of(SERVER)
    frame = (mac(SERVER) + mac(GUEST) + ethertype + data) if len(data) % 2 else data
    guest.route_from_tap(frame, T0)
    server.accept_from_peer(GUEST, frame, T0)
