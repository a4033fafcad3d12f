"""l2mesh.rules.fields and compile: what each condition matches, on frames built with dpkt (issue 13, items 2, 4, 6)."""

from __future__ import annotations

import ipaddress
import socket
import time

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.rules import fields as F
from l2mesh.rules.compile import MAX_CACHED_ANSWERS, NO_MATCH, compile_rules, first_match_reference
from l2mesh.rules.fields import frame_fields
from l2mesh.rules.syntax import MAX_RULES, Rule, parse_rules
from tests.unit.rules_strategies import SMALL_MACS, small_rules, small_tag_sets

SETTINGS = settings(max_examples=150, deadline=None)
LOCAL, PEER = 0x1000000001, 0x1000000002
MAC_A = bytes.fromhex("525400000001")
MAC_B = bytes.fromhex("525400000002")
BROADCAST = b"\xff" * 6
MDNS_MAC = bytes.fromhex("01005e0000fb")
SYN, ACK = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK


# -- frames ----------------------------------------------------------------------------------------------
def eth(data: bytes | dpkt.Packet, ethertype: int, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=src, dst=dst, type=ethertype, data=bytes(data)))


def ip4(l4: dpkt.Packet, proto: int, src: str = "10.147.17.20", dst: str = "10.147.17.3", offset: int = 0) -> dpkt.ip.IP:
    return dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, offset=offset, data=l4)


def ip6(l4: bytes | dpkt.Packet, nxt: int, src: str = "fd00::20", dst: str = "fd00::3") -> dpkt.ip6.IP6:
    payload = bytes(l4)
    return dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst), nxt=nxt, hlim=64,
        plen=len(payload), data=payload,
    )


def tcp4(dport: int = 22, sport: int = 40000, flags: int = SYN, **addresses: str) -> bytes:
    return eth(ip4(dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags), dpkt.ip.IP_PROTO_TCP, **addresses), 0x0800)


def udp4(dport: int = 53, sport: int = 40000, **addresses: str) -> bytes:
    return eth(ip4(dpkt.udp.UDP(sport=sport, dport=dport), dpkt.ip.IP_PROTO_UDP, **addresses), 0x0800)


def icmp4(**addresses: str) -> bytes:
    echo = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=1))
    return eth(ip4(echo, dpkt.ip.IP_PROTO_ICMP, **addresses), 0x0800)


def tcp6(dport: int = 22, flags: int = SYN, **addresses: str) -> bytes:
    return eth(ip6(dpkt.tcp.TCP(sport=40000, dport=dport, flags=flags), 6, **addresses), 0x86DD)


def udp6_behind_hop_by_hop(dport: int = 53) -> bytes:
    udp = bytes(dpkt.udp.UDP(sport=40000, dport=dport))
    hop_by_hop = bytes([17, 0]) + b"\x01\x04\x00\x00\x00\x00"  # next header UDP, 8 bytes, PadN
    return eth(ip6(hop_by_hop + udp, 0), 0x86DD)


def icmp6(icmp_type: int, **addresses: str) -> bytes:
    return eth(ip6(bytes([icmp_type, 0, 0, 0]) + b"\0" * 20, 58, **addresses), 0x86DD, dst=bytes.fromhex("3333ff000003"))


def arp(tpa: str = "10.147.17.3") -> bytes:
    body = dpkt.arp.ARP(op=1, sha=MAC_A, spa=socket.inet_aton("10.147.17.20"), tha=b"\0" * 6, tpa=socket.inet_aton(tpa))
    return eth(body, 0x0806, dst=BROADCAST)


def raw(ethertype: int = 0x88B5, dst: bytes = MAC_B) -> bytes:
    return eth(b"plc says hello" + b"\0" * 32, ethertype, dst=dst)


def vlan(frame: bytes, vid: int = 7) -> bytes:
    return frame[:12] + b"\x81\x00" + vid.to_bytes(2, "big") + frame[12:]


def matches(rule_text: str, frame: bytes, src_tags: set[str] = set(), dst_tags: set[str] = set()) -> bool:
    """Whether the one rule matches the frame, asked as the sender (we are the source) and as the receiver; both must agree."""
    rules = parse_rules(rule_text).rules
    as_sender = compile_rules(rules, LOCAL, {LOCAL: frozenset(src_tags), PEER: frozenset(dst_tags)})
    as_receiver = compile_rules(rules, LOCAL, {LOCAL: frozenset(dst_tags), PEER: frozenset(src_tags)})
    fields = frame_fields(frame)
    sent = as_sender.outbound.first_match(fields, PEER)
    received = as_receiver.inbound.first_match(fields, PEER)
    assert sent == received
    return sent == 0


CASES = [
    # ethertype
    ("drop ethertype arp", arp(), True),
    ("drop ethertype arp", tcp4(), False),
    ("drop ethertype ipv4", tcp4(), True),
    ("drop ethertype ipv6", tcp6(), True),
    ("drop ethertype 0x88b5", raw(), True),
    ("drop not ethertype 0x88b5", raw(), False),
    ("drop ethertype ipv4", vlan(tcp4()), True),  # the type behind a VLAN tag
    # protocols
    ("drop tcp", tcp4(), True),
    ("drop tcp", tcp6(), True),
    ("drop tcp", udp4(), False),
    ("drop udp", udp4(), True),
    ("drop udp", udp6_behind_hop_by_hop(), True),
    ("drop icmp", icmp4(), True),
    ("drop icmp", tcp4(), False),
    ("drop icmpv6", icmp6(128), True),  # echo request
    ("drop not tcp", raw(), True),  # a raw frame is not TCP
    ("drop not tcp", tcp4(), False),
    # ports
    ("drop dport 22", tcp4(22), True),
    ("drop dport 22", udp4(22), True),
    ("drop dport 22", tcp4(2222), False),
    ("drop dport 20-25", tcp6(23), True),
    ("drop sport 40000", udp4(), True),
    ("drop sport 1-1023", udp4(), False),
    ("drop dport 53", udp6_behind_hop_by_hop(53), True),
    ("drop dport 22", icmp4(), False),
    ("drop not dport 22", icmp4(), True),  # no ports at all: "not dport 22" holds
    ("drop tcp dport 22", vlan(tcp4(22)), True),
    # addresses
    ("drop src 10.147.17.16/28", tcp4(), True),
    ("drop src 10.147.17.0/28", tcp4(), False),
    ("drop dst 10.147.17.0/28", tcp4(dst="10.147.17.3"), True),
    ("drop dst 10.147.17.0/28", tcp4(dst="10.147.17.30"), False),
    ("drop dst 10.147.17.3", udp4(dst="10.147.17.3"), True),
    ("drop dst fd00::/64", tcp6(), True),
    ("drop dst fd00::/64", tcp4(), False),
    ("drop dst 0.0.0.0/0", tcp6(), False),  # an IPv4 network never holds an IPv6 address
    ("drop dst ::/0", tcp4(), False),
    ("drop not src 10.0.0.0/8", raw(), True),
    # MACs, broadcast, multicast
    ("drop src-mac 52:54:00:00:00:01", raw(), True),
    ("drop src-mac 52:54:00:00:00:02", raw(), False),
    ("drop dst-mac 52:54:00:00:00:02", raw(), True),
    ("drop broadcast", raw(dst=BROADCAST), True),
    ("drop broadcast", raw(dst=MDNS_MAC), False),
    ("drop multicast", raw(dst=MDNS_MAC), True),
    ("drop multicast", raw(dst=BROADCAST), False),  # broadcast is its own condition
    ("drop multicast", raw(), False),
    ("drop not broadcast", raw(), True),
    # fragments: only the first carries ports
    ("drop tcp dport 22", eth(ip4(dpkt.tcp.TCP(dport=22, flags=SYN), 6, offset=800), 0x0800), False),
]


@pytest.mark.parametrize(("rule", "frame", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_condition_matches_what_it_names(rule: str, frame: bytes, expected: bool) -> None:
    assert matches(rule, frame) is expected


@pytest.mark.parametrize(
    ("rule", "src_tags", "dst_tags", "expected"),
    [
        ("drop src-tag guest", {"guest"}, set(), True),
        ("drop src-tag guest", set(), {"guest"}, False),
        ("drop dst-tag guest", set(), {"guest"}, True),
        ("drop not src-tag plc", {"guest"}, set(), True),
        ("drop not src-tag plc", {"plc", "guest"}, set(), False),
        ("drop src-tag guest dst-tag server", {"guest"}, {"server"}, True),
        ("drop src-tag guest dst-tag server", {"guest"}, {"guest"}, False),
        ("drop src-tag a src-tag b", {"a"}, set(), False),  # all conditions must hold
        ("drop src-tag a src-tag b", {"a", "b"}, set(), True),
    ],
)
def test_tags_of_source_and_destination(rule: str, src_tags: set[str], dst_tags: set[str], expected: bool) -> None:
    assert matches(rule, raw(), src_tags, dst_tags) is expected


# -- requirement 4: replies within connections the other side opened ----------------------------------------
@pytest.mark.parametrize("rule", ["drop tcp src-tag guest", "drop tcp dport 22 src-tag guest", "drop dport 22 src-tag guest"])
def test_a_tcp_drop_rule_stops_only_segments_that_open_a_connection(rule: str) -> None:
    guest = {"guest"}
    assert matches(rule, tcp4(22, flags=SYN), guest)
    assert matches(rule, tcp6(22, flags=SYN), guest)
    for flags in (SYN | ACK, ACK, ACK | dpkt.tcp.TH_PUSH, dpkt.tcp.TH_FIN | ACK, dpkt.tcp.TH_RST):
        assert not matches(rule, tcp4(22, flags=flags), guest)


def test_accept_and_log_rules_match_every_segment() -> None:
    assert matches("accept tcp dport 22", tcp4(22, flags=ACK))
    assert matches("log tcp", tcp4(22, flags=ACK))


def test_a_drop_rule_without_tcp_or_ports_drops_every_segment() -> None:
    assert matches("drop dst 10.147.17.0/28 src-tag guest", tcp4(flags=ACK), {"guest"})


# -- ARP and neighbour discovery are never dropped by an IP rule ------------------------------------------------
@pytest.mark.parametrize("nd_type", [133, 134, 135, 136, 137])
@pytest.mark.parametrize("rule", ["drop icmpv6", "drop dst fd00::/64", "drop src fd00::/64", "drop not dst 10.0.0.0/8", "drop not tcp"])
def test_ip_rules_never_match_neighbour_discovery(rule: str, nd_type: int) -> None:
    assert not matches(rule, icmp6(nd_type))


@pytest.mark.parametrize("rule", ["drop not dst 10.0.0.0/8", "drop not tcp", "drop not dport 22", "drop not src 10.147.17.20"])
def test_ip_rules_never_match_arp(rule: str) -> None:
    assert not matches(rule, arp())


def test_layer_2_rules_still_match_arp_and_nd() -> None:
    assert matches("drop src-tag guest", arp(), {"guest"})
    assert matches("drop ethertype arp", arp())
    assert matches("drop ethertype ipv6", icmp6(135))


# -- first match wins, unmatched means accepted ----------------------------------------------------------------------
def test_first_match_wins_and_nothing_matching_is_no_match() -> None:
    rules = parse_rules("accept tcp dport 22\ndrop tcp\nlog udp\n").rules
    compiled = compile_rules(rules, LOCAL, {})
    assert compiled.outbound.first_match(frame_fields(tcp4(22)), PEER) == 0
    assert compiled.outbound.first_match(frame_fields(tcp4(80)), PEER) == 1
    assert compiled.drops(1) and not compiled.drops(0) and not compiled.drops(2)
    assert compiled.outbound.first_match(frame_fields(udp4()), PEER) == 2
    assert compiled.outbound.first_match(frame_fields(icmp4()), PEER) == NO_MATCH


def test_rules_that_test_only_tags_need_no_frame_fields() -> None:
    compiled = compile_rules(parse_rules("drop src-tag guest\n").rules, LOCAL, {PEER: frozenset({"guest"})})
    assert not compiled.needs_fields
    assert compiled.inbound.first_match(None, PEER) == 0
    assert compiled.inbound.first_match(None, LOCAL) == NO_MATCH


# -- the hand-sliced reader agrees with dpkt -------------------------------------------------------------------------
addresses4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
addresses6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


@SETTINGS
@given(
    st.sampled_from(["tcp4", "udp4", "tcp6", "icmp4"]),
    addresses4, addresses4, addresses6, addresses6,
    st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 255), st.booleans(),
    st.sampled_from([MAC_B, BROADCAST, MDNS_MAC]),
)
def test_frame_fields_read_what_dpkt_reads(kind, s4, d4, s6, d6, sport, dport, flags, tagged, dst_mac) -> None:
    if kind == "tcp4":
        frame = eth(ip4(dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags), 6, src=s4, dst=d4), 0x0800, dst=dst_mac)
    elif kind == "udp4":
        frame = eth(ip4(dpkt.udp.UDP(sport=sport, dport=dport), 17, src=s4, dst=d4), 0x0800, dst=dst_mac)
    elif kind == "icmp4":
        frame = eth(ip4(dpkt.icmp.ICMP(type=8, data=b"\0" * 4), 1, src=s4, dst=d4), 0x0800, dst=dst_mac)
    else:
        frame = eth(ip6(dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags), 6, src=s6, dst=d6), 0x86DD, dst=dst_mac)
    if tagged:
        frame = vlan(frame)
    parsed = dpkt.ethernet.Ethernet(frame)
    ip = parsed.data
    fields = frame_fields(frame)
    assert fields[F.ETHERTYPE] == (0x0800 if kind != "tcp6" else 0x86DD)
    assert fields[F.SRC_MAC] == int.from_bytes(parsed.src, "big")
    assert fields[F.DST_MAC] == int.from_bytes(parsed.dst, "big")
    assert fields[F.CAST] == (F.UNICAST if dst_mac == MAC_B else F.BROADCAST if dst_mac == BROADCAST else F.MULTICAST)
    if kind == "tcp6":
        assert fields[F.PROTOCOL] == ip.nxt
        assert fields[F.SRC_IP] == F.IPV6_FLAG | int(ipaddress.IPv6Address(ip.src))
        assert fields[F.DST_IP] == F.IPV6_FLAG | int(ipaddress.IPv6Address(ip.dst))
    else:
        assert fields[F.PROTOCOL] == ip.p
        assert fields[F.SRC_IP] == int(ipaddress.IPv4Address(ip.src))
        assert fields[F.DST_IP] == int(ipaddress.IPv4Address(ip.dst))
    if kind == "icmp4":
        assert (fields[F.SPORT], fields[F.DPORT], fields[F.TCP_ONGOING]) == (F.ABSENT, F.ABSENT, 0)
    else:
        assert (fields[F.SPORT], fields[F.DPORT]) == (ip.data.sport, ip.data.dport)
    if kind in ("tcp4", "tcp6"):
        assert fields[F.TCP_ONGOING] == int(not (ip.data.flags & SYN and not ip.data.flags & ACK))
    assert fields[F.RESOLUTION] == 0


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=14, max_size=120), st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x08\x06", None]))
def test_frame_fields_never_fail_on_malformed_frames(data: bytes, ethertype: bytes | None) -> None:
    frame = data if ethertype is None else data[:12] + ethertype + data[14:]
    fields = frame_fields(frame)
    assert len(fields) == F.FIELD_COUNT and all(isinstance(v, int) for v in fields)


# -- the compiled tables give the reference answer -------------------------------------------------------------------
ports = st.sampled_from([F.ABSENT, 0, 21, 22, 23, 53, 80, 81, 1023, 1024, 65535])
ips = st.sampled_from(
    [F.ABSENT, int(ipaddress.IPv4Address("10.147.17.3")), int(ipaddress.IPv4Address("10.147.17.5")),
     int(ipaddress.IPv4Address("10.147.200.1")), int(ipaddress.IPv4Address("192.0.2.1")),
     F.IPV6_FLAG | int(ipaddress.IPv6Address("fd00::3")), F.IPV6_FLAG | int(ipaddress.IPv6Address("2001:db8::1"))]
)
field_tuples = st.tuples(
    st.sampled_from([0x0800, 0x0806, 0x86DD, 0x88B5, 0x1234]),
    st.sampled_from([F.UNICAST, F.MULTICAST, F.BROADCAST]),
    st.sampled_from([int.from_bytes(m, "big") for m in SMALL_MACS] + [7]),
    st.sampled_from([int.from_bytes(m, "big") for m in SMALL_MACS] + [7]),
    st.sampled_from([F.ABSENT, 1, 6, 17, 58, 132]),
    ips, ips, ports, ports,
    st.integers(0, 1), st.integers(0, 1),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(small_rules, max_size=12), st.lists(field_tuples, min_size=1, max_size=8), small_tag_sets, small_tag_sets)
def test_compiled_rules_give_the_first_match_rule_by_rule(
    rules: list[Rule], frames: list[tuple[int, ...]], local_tags: frozenset[str], peer_tags: frozenset[str]
) -> None:
    compiled = compile_rules(tuple(rules), LOCAL, {LOCAL: local_tags, PEER: peer_tags})
    for fields in frames * 2:  # the second time from remembered answers
        assert compiled.outbound.first_match(fields, PEER) == first_match_reference(tuple(rules), fields, local_tags, peer_tags)
        assert compiled.inbound.first_match(fields, PEER) == first_match_reference(tuple(rules), fields, peer_tags, local_tags)
        assert compiled.outbound.evaluate(fields, PEER) == compiled.outbound.first_match(fields, PEER)


def test_remembered_answers_are_bounded() -> None:
    compiled = compile_rules(parse_rules("drop tcp dport 22\n").rules, LOCAL, {})
    for port in range(MAX_CACHED_ANSWERS + 10):
        assert compiled.outbound.first_match(frame_fields(tcp4(port)), PEER) == (0 if port == 22 else NO_MATCH)
    assert len(compiled.outbound.answers) <= MAX_CACHED_ANSWERS


def test_a_thousand_rules_compile_quickly() -> None:
    text = "".join(f"drop tcp dport {1000 + i} src 10.147.{i // 250}.{i % 250}/32 src-tag t{i % 7}\n" for i in range(MAX_RULES))
    rules = parse_rules(text).rules
    tags = {LOCAL: frozenset({"t1"})} | {n: frozenset({f"t{n % 7}"}) for n in range(2, 2000)}
    started = time.perf_counter()
    compiled = compile_rules(rules, LOCAL, tags)
    assert time.perf_counter() - started < 2.0
    assert compiled.outbound.first_match(frame_fields(tcp4(1001, src="10.147.0.1")), PEER) == 1
