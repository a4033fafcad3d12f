"""Hypothesis strategies for flow rules, shared by the parser, matcher and switch tests."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from l2mesh.rules.syntax import ACCEPT, DROP, LOG, Condition, Rule

# Every condition kind, with and without `not`.
tags = st.one_of(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,20}", fullmatch=True), st.sampled_from(["no", "note", "NOTE"])).filter(
    lambda t: t.lower() != "not"
)
ports = st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(lambda p: (min(p), max(p)))
ipv4_networks = st.builds(
    lambda address, prefix: ipaddress.ip_network(f"{ipaddress.IPv4Address(address)}/{prefix}", strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
ipv6_networks = st.builds(
    lambda address, prefix: ipaddress.ip_network(f"{ipaddress.IPv6Address(address)}/{prefix}", strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
values = st.one_of(
    st.tuples(st.just("ethertype"), st.integers(0, 0xFFFF)),
    st.tuples(st.just("protocol"), st.sampled_from(["tcp", "udp", "icmp", "icmpv6"])),
    st.tuples(st.sampled_from(["sport", "dport"]), ports),
    st.tuples(st.sampled_from(["src", "dst"]), st.one_of(ipv4_networks, ipv6_networks)),
    st.tuples(st.sampled_from(["src-tag", "dst-tag"]), tags),
    st.tuples(st.sampled_from(["src-mac", "dst-mac"]), st.binary(min_size=6, max_size=6)),
    st.tuples(st.sampled_from(["broadcast", "multicast"]), st.none()),
)
conditions = st.builds(lambda kv, negated: Condition(kv[0], kv[1], negated), values, st.booleans())
rules = st.builds(Rule, st.sampled_from([ACCEPT, DROP, LOG]), st.lists(conditions, max_size=6).map(tuple))

# A small world of values, so that random rules and random frames meet often.
SMALL_TAGS = ("guest", "plc", "server")
SMALL_MACS = (bytes.fromhex("525400000001"), bytes.fromhex("525400000002"), b"\xff" * 6)
SMALL_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.147.17.0/28", "10.147.17.5/32", "10.147.0.0/16", "fd00::/64", "::/0", "0.0.0.0/0")
)
small_values = st.one_of(
    st.tuples(st.just("ethertype"), st.sampled_from([0x0800, 0x0806, 0x86DD, 0x88B5])),
    st.tuples(st.just("protocol"), st.sampled_from(["tcp", "udp", "icmp", "icmpv6"])),
    st.tuples(st.sampled_from(["sport", "dport"]), st.sampled_from([(22, 22), (80, 80), (0, 1023), (1024, 65535), (53, 80)])),
    st.tuples(st.sampled_from(["src", "dst"]), st.sampled_from(SMALL_NETWORKS)),
    st.tuples(st.sampled_from(["src-tag", "dst-tag"]), st.sampled_from(SMALL_TAGS)),
    st.tuples(st.sampled_from(["src-mac", "dst-mac"]), st.sampled_from(SMALL_MACS)),
    st.tuples(st.sampled_from(["broadcast", "multicast"]), st.none()),
)
small_conditions = st.builds(lambda kv, negated: Condition(kv[0], kv[1], negated), small_values, st.booleans())
small_rules = st.builds(Rule, st.sampled_from([ACCEPT, DROP, LOG]), st.lists(small_conditions, max_size=4).map(tuple))
small_tag_sets = st.frozensets(st.sampled_from(SMALL_TAGS))
