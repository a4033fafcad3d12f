"""l2mesh.edge.node.netlink: the rtnetlink requests every node makes, against this host's kernel (reading only:
no root needed), and the attribute walk against hand-made input."""

from __future__ import annotations

import ipaddress
import socket
import struct

from l2mesh.edge.node.netlink import IFA_ADDRESS, IFA_LOCAL, RtNetlink, _address_request, attributes, link_index, link_names


def test_the_loopback_address_is_listed_on_its_interface() -> None:
    lo = link_index("lo")
    assert lo is not None and link_names()[lo] == "lo"
    with RtNetlink() as netlink:
        assert (lo, "127.0.0.1") in netlink.ipv4_addresses()
        assert netlink.ipv4_addresses(lo) == [(lo, a) for i, a in netlink.ipv4_addresses() if i == lo]


def test_a_missing_interface_has_no_index() -> None:
    assert link_index("l2mt-nosuch0") is None


def test_policy_rules_are_listed_with_their_priorities() -> None:
    with RtNetlink() as netlink:
        priorities = netlink.rule_priorities(socket.AF_INET)
    assert 0 in priorities and 32766 in priorities  # every kernel's local and main rules


def test_attributes_are_walked_by_their_aligned_lengths_and_a_truncated_one_ends_the_walk() -> None:
    data = struct.pack("=HH", 5, 7) + b"x" + b"\0\0\0" + struct.pack("=HH", 8, 2) + b"abcd" + struct.pack("=HH", 2, 9)
    assert attributes(data) == {7: b"x", 2: b"abcd"}


def test_an_ipv4_address_request_carries_it_as_local_and_peer_address_ipv6_once() -> None:
    v4 = _address_request(3, ipaddress.ip_interface("10.147.17.2/24"))
    assert struct.unpack_from("=BBBBI", v4) == (socket.AF_INET, 24, 0, 0, 3)
    assert attributes(v4[8:]) == {IFA_ADDRESS: bytes([10, 147, 17, 2]), IFA_LOCAL: bytes([10, 147, 17, 2])}
    v6 = _address_request(3, ipaddress.ip_interface("fd00::2/64"))
    assert attributes(v6[8:]) == {IFA_ADDRESS: ipaddress.ip_address("fd00::2").packed}
