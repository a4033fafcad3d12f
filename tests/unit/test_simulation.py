"""A sans-IO simulation of one 50-member network: how far ARP, mDNS and broadcast frames really travel.

Fifty NodeCore instances (members of tests/unit/harness.py) exchange their
datagrams through the harness's in-memory network, all under one
NetworkConfig (issued to each member) in which
member N holds the managed address 10.147.50.N/24. Members announce their
multicast groups with set_local_groups, exactly as the daemon does after
reading /proc/net/dev_mcast, and the announcements travel as real encrypted
MulticastSubscriptions messages.

For every case the simulation records how many copies of the frame left the
sender (distinct peers it sent a datagram to for it), which members had it
written to their TAP, the ARP replies the sender's switch wrote back to its
own TAP, and the counters that moved; each test asserts its figures.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any

import dpkt
import pytest

from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.node.core import GROUP_REFRESH_S, GROUP_TTL_S, BroadcastStorm
from l2mesh.switch.multicast import arp_group, group_key
from l2mesh.wire.packets import PacketType
from tests.unit.harness import CONTROLLER_ENDPOINT, Member, Rule, Sent, World

MEMBERS = 50
CONTROLLER = Identity.generate()
NET = make_network_id(CONTROLLER.node_id, 0x50)
BROADCAST = b"\xff\xff\xff\xff\xff\xff"
MDNS_MAC = b"\x01\x00\x5e\x00\x00\xfb"
ALL_HOSTS_MAC = b"\x01\x00\x5e\x00\x00\x01"
UNUSED_GROUP_MAC = b"\x01\x00\x5e\x7f\x00\x01"  # 239.255.0.1: nobody listens
# 20 of the 49 members other than member 1 listen to mDNS (a fixed, seeded choice).
MDNS_LISTENERS = frozenset(random.Random(0x2050).sample(range(2, MEMBERS + 1), 20))
ANNOUNCED_ONLY_IP = "10.147.50.137"  # on member 37's TAP (DHCP, say), not managed by the controller
SHARED_IP = "10.147.50.200"  # announced by members 37 and 38 (an address conflict, or a VRRP pair)
UNCLAIMED_IP = "10.147.50.250"
# The simulation's tests share one 50-member network (built once, ~1-10 s): one xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("simulation")


def managed_ip(number: int) -> str:
    return f"10.147.50.{number}"


@dataclass
class Crossing:
    """What one frame from a TAP did."""

    copies: int  # distinct peers the sender sent it to (each one encrypted copy)
    receivers: set[int]  # member numbers that had it written to their TAP
    local_replies: list[bytes]  # frames the sender's own switch wrote back to the sender's TAP
    drops: Counter[str]  # the sender's switch drop counters that moved
    forwarded: Counter[str]  # the sender's switch forwarding counters that moved


class Simulation(World):
    def __init__(self, count: int = MEMBERS) -> None:
        super().__init__()
        for n in range(1, count + 1):
            self.add_member(n, network_id=NET)
        self.revision = 0
        self.handshakes = 0  # handshake initiations delivered
        self.datagrams = 0  # datagrams delivered
        self.reissue()

    def member(self, number: int) -> Member:
        return next(m for m in self.members if m.number == number)

    def reissue(self, **changes: Any) -> None:
        """The controller issues a new revision to every member (defaults: broadcast on, no limit)."""
        self.revision += 1
        listed = tuple(
            MemberConfig(m.node_id, m.identity.public, ips=(f"{managed_ip(m.number)}/24",), endpoints=(m.endpoint,))
            for m in self.members
        )
        for m in self.members:
            config = NetworkConfig(NET, self.revision, m.node_id, name="sim", members=listed, **changes)
            assert m.core.apply_netconf(config)
            m.core.events.clear()

    def deliver(self, now: float | None = None, drop: Rule | None = None, max_rounds: int = 20) -> list[Sent]:
        delivered = super().deliver(now, drop, max_rounds)
        self.datagrams += len(delivered)
        self.handshakes += sum(1 for sent in delivered if sent.kind == PacketType.HANDSHAKE_INIT)
        return delivered

    def announce(self, number: int, groups: set[bytes]) -> None:
        self.member(number).core.set_local_groups(NET, frozenset(groups), self.now)

    def tap_frames(self, member: Member) -> list[bytes]:
        """What was written to member's TAP: everything here happens on one network."""
        assert {network_id for network_id, _ in member.transmit.frames} <= {NET}
        return member.frames()

    def send_from_tap(self, number: int, frame: bytes) -> Crossing:
        self.deliver()
        for m in self.members:
            m.transmit.frames.clear()
        sender = self.member(number)
        switch = sender.core.networks[NET].switch
        drops_before, forwarded_before = Counter(switch.drops), Counter(switch.forwarded)
        sender.core.frame_from_tap(NET, frame, self.now)
        # One datagram per peer: a transport packet, or a handshake initiation the frame waits behind.
        addresses = [address for _, address in sender.transmit.datagrams]
        assert len(addresses) == len(set(addresses)), "a peer was sent the same frame twice"
        local_replies = self.tap_frames(sender)
        sender.transmit.frames.clear()
        self.deliver()
        receivers = set()
        for m in self.members:
            got = self.tap_frames(m)
            assert len(got) <= 1, f"member {m.number} got the frame {len(got)} times"
            if got:
                assert got == [frame]
                receivers.add(m.number)
        return Crossing(
            copies=len(addresses),
            receivers=receivers,
            local_replies=local_replies,
            drops=Counter(switch.drops) - drops_before,
            forwarded=Counter(switch.forwarded) - forwarded_before,
        )


# -- frames the members' kernels would send ----------------------------------------------------------


def arp_request(sender: Member, target_ip: str) -> bytes:
    arp = dpkt.arp.ARP(
        op=dpkt.arp.ARP_OP_REQUEST,
        sha=sender.mac(),
        spa=socket.inet_aton(managed_ip(sender.number)),
        tha=b"\x00" * 6,
        tpa=socket.inet_aton(target_ip),
    )
    return bytes(dpkt.ethernet.Ethernet(dst=BROADCAST, src=sender.mac(), type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))


def udp_frame(sender: Member, dst_mac: bytes, dst_ip: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(
        src=socket.inet_aton(managed_ip(sender.number)),
        dst=socket.inet_aton(dst_ip),
        p=dpkt.ip.IP_PROTO_UDP,
        ttl=255 if dport == 5353 else 64,
        data=udp,
    )
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(dst=dst_mac, src=sender.mac(), type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def mdns_query(sender: Member) -> bytes:
    """A DNS-SD PTR query for _http._tcp.local to 224.0.0.251:5353."""
    query = dpkt.dns.DNS(id=0, qd=[dpkt.dns.DNS.Q(name="_http._tcp.local", type=dpkt.dns.DNS_PTR)])
    return udp_frame(sender, MDNS_MAC, "224.0.0.251", 5353, 5353, bytes(query))


def netbios_broadcast(sender: Member) -> bytes:
    """A plain broadcast (NetBIOS name query style): UDP to the subnet broadcast in an Ethernet broadcast."""
    return udp_frame(sender, BROADCAST, "10.147.50.255", 137, 137, b"\x00" * 50)


def expected_reply(owner: Member, owner_ip: str, requester: Member) -> bytes:
    arp = dpkt.arp.ARP(
        op=dpkt.arp.ARP_OP_REPLY,
        sha=owner.mac(),
        spa=socket.inet_aton(owner_ip),
        tha=requester.mac(),
        tpa=socket.inet_aton(managed_ip(requester.number)),
    )
    return bytes(dpkt.ethernet.Ethernet(dst=requester.mac(), src=owner.mac(), type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))


def kernel_groups(number: int) -> set[bytes]:
    """What member `number`'s TAP listens to: all-hosts, its ARP group, mDNS if it runs a responder, extras."""
    groups = {group_key(ALL_HOSTS_MAC), arp_group(socket.inet_aton(managed_ip(number)))}
    if number in MDNS_LISTENERS:
        groups.add(group_key(MDNS_MAC))
    if number == 37:
        groups |= {arp_group(socket.inet_aton(ANNOUNCED_ONLY_IP)), arp_group(socket.inet_aton(SHARED_IP))}
    if number == 38:
        groups.add(arp_group(socket.inet_aton(SHARED_IP)))
    return groups


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """The 50-member network after the members' kernels' groups were announced (shared: tests that change
    its config restore it; send_from_tap starts from a quiet network)."""
    simulation = Simulation()
    announcers = sorted(MDNS_LISTENERS | {37, 38})
    for number in announcers:
        simulation.announce(number, kernel_groups(number))
    simulation.deliver()
    simulation.setup_figures = {"handshakes": simulation.handshakes, "datagrams": simulation.datagrams}
    return simulation


def test_announcing_groups_costs_one_handshake_and_one_announcement_per_announcer_and_peer(sim: Simulation) -> None:
    announcers = len(MDNS_LISTENERS | {37, 38})
    assert announcers == 21
    # Each of the 21 opens a session to each of the other 49 and sends its announcement on it (two
    # announcers open one each way): initiation, response, announcement, and nothing else.
    assert sim.setup_figures == {"handshakes": announcers * (MEMBERS - 1), "datagrams": 3 * announcers * (MEMBERS - 1)}
    # Member 1 now knows every announcement: the mDNS listeners, and who holds the extra addresses.
    table = sim.member(1).core.networks[NET].switch.groups
    by_node = {m.node_id: m.number for m in sim.members}
    assert {by_node[n] for n in table.subscribers(group_key(MDNS_MAC), 0.0)} == MDNS_LISTENERS


# -- (a) ARP ---------------------------------------------------------------------------------------


def test_arp_for_a_managed_ip_crosses_to_no_peer_and_is_answered_on_the_requesters_tap(sim: Simulation) -> None:
    m1, m37 = sim.member(1), sim.member(37)
    crossing = sim.send_from_tap(1, arp_request(m1, managed_ip(37)))
    assert crossing.copies == 0
    assert crossing.receivers == set()
    assert crossing.local_replies == [expected_reply(m37, managed_ip(37), m1)]
    assert crossing.forwarded == Counter({"arp_answered_locally": 1})
    assert crossing.drops == Counter()


def test_arp_for_an_ip_only_member_37_announced_is_answered_locally_with_member_37s_mac(sim: Simulation) -> None:
    # One non-bridge member announced the address: its member MAC is the answer, and nothing crosses.
    m1, m37 = sim.member(1), sim.member(37)
    crossing = sim.send_from_tap(1, arp_request(m1, ANNOUNCED_ONLY_IP))
    assert crossing.local_replies == [expected_reply(m37, ANNOUNCED_ONLY_IP, m1)]
    assert crossing.copies == 0 and crossing.receivers == set()
    assert crossing.forwarded == Counter({"arp_answered_locally": 1})
    assert crossing.drops == Counter()


def test_arp_for_an_ip_two_members_announced_crosses_to_exactly_those_two(sim: Simulation) -> None:
    crossing = sim.send_from_tap(1, arp_request(sim.member(1), SHARED_IP))
    assert crossing.copies == 2
    assert crossing.receivers == {37, 38}
    assert crossing.local_replies == []
    assert crossing.forwarded == Counter({"arp_scoped": 1})
    assert crossing.drops == Counter()


def test_arp_for_an_address_nobody_claims_is_flooded_to_all_49(sim: Simulation) -> None:
    crossing = sim.send_from_tap(1, arp_request(sim.member(1), UNCLAIMED_IP))
    assert crossing.copies == MEMBERS - 1
    assert crossing.receivers == set(range(2, MEMBERS + 1))
    assert crossing.forwarded == Counter({"arp_flooded": 1})
    assert crossing.local_replies == [] and crossing.drops == Counter()


# -- (b) mDNS -------------------------------------------------------------------------------------


def test_mdns_query_reaches_exactly_the_20_subscribers(sim: Simulation) -> None:
    crossing = sim.send_from_tap(1, mdns_query(sim.member(1)))
    assert len(MDNS_LISTENERS) == 20
    assert crossing.copies == 20
    assert crossing.receivers == MDNS_LISTENERS
    assert crossing.forwarded == Counter({"multicast": 1})
    assert crossing.drops == Counter()


def test_mdns_answer_from_a_subscriber_reaches_the_other_subscribers_but_not_member_1(sim: Simulation) -> None:
    # Member 1 sent the query but never joined 224.0.0.251: an mDNS answer (to the group) skips it.
    responder = min(MDNS_LISTENERS)
    crossing = sim.send_from_tap(responder, mdns_query(sim.member(responder)))
    assert crossing.receivers == MDNS_LISTENERS - {responder}
    assert crossing.copies == 19


def test_multicast_to_a_group_nobody_joined_crosses_to_no_one(sim: Simulation) -> None:
    frame = udp_frame(sim.member(1), UNUSED_GROUP_MAC, "239.255.0.1", 4000, 4000, b"x")
    crossing = sim.send_from_tap(1, frame)
    assert crossing.copies == 0 and crossing.receivers == set()
    assert crossing.drops == Counter({"multicast_no_subscribers": 1})


# -- (c) broadcast limit -------------------------------------------------------------------------------


def test_plain_broadcast_reaches_all_49_when_no_limit_is_set(sim: Simulation) -> None:
    crossing = sim.send_from_tap(1, netbios_broadcast(sim.member(1)))
    assert crossing.copies == MEMBERS - 1
    assert crossing.receivers == set(range(2, MEMBERS + 1))
    assert crossing.forwarded == Counter({"flood": 1})
    assert crossing.drops == Counter()


def test_plain_broadcast_fan_out_respects_multicast_limit_10(sim: Simulation) -> None:
    sim.reissue(multicast_limit=10)
    try:
        crossing = sim.send_from_tap(1, netbios_broadcast(sim.member(1)))
        mdns = sim.send_from_tap(1, mdns_query(sim.member(1)))
    finally:
        sim.reissue()
    assert crossing.copies == 10
    assert len(crossing.receivers) == 10 and crossing.receivers <= set(range(2, MEMBERS + 1))
    # The limit bounds plain broadcast only: every mDNS subscriber still hears the query.
    assert mdns.receivers == MDNS_LISTENERS


# -- (d) broadcast off --------------------------------------------------------------------------------


def test_broadcast_disabled_reaches_no_one_while_arp_and_mdns_still_work(sim: Simulation) -> None:
    sim.reissue(broadcast=False)
    try:
        crossing = sim.send_from_tap(1, netbios_broadcast(sim.member(1)))
        arp = sim.send_from_tap(1, arp_request(sim.member(1), managed_ip(37)))
        scoped_arp = sim.send_from_tap(1, arp_request(sim.member(1), SHARED_IP))
        mdns = sim.send_from_tap(1, mdns_query(sim.member(1)))
        # A broadcast some peer still sends (say it holds an old config) is refused on arrival.
        sim.member(2).core.networks[NET].switch.broadcast_enabled = True
        inbound = sim.send_from_tap(2, netbios_broadcast(sim.member(2)))
        sim.member(2).core.networks[NET].switch.broadcast_enabled = False
    finally:
        sim.reissue()
    assert crossing.copies == 0 and crossing.receivers == set()
    assert crossing.drops == Counter({"broadcast_disabled": 1})
    assert len(arp.local_replies) == 1 and arp.copies == 0
    assert scoped_arp.receivers == {37, 38}
    assert mdns.receivers == MDNS_LISTENERS
    assert inbound.copies == MEMBERS - 1 and inbound.receivers == set()
    assert all(m.switch_counters()["drops"].get("broadcast_disabled", 0) >= 1 for m in sim.members if m.number != 2)


# -- subscriptions over time, and the storm guard, on a smaller network --------------------------------------


def test_subscriptions_live_while_refreshed_and_expire_within_ttl_once_the_member_goes_silent() -> None:
    small = Simulation(count=6)
    assert (GROUP_TTL_S, GROUP_REFRESH_S) == (180, 60.0)
    small.announce(4, {group_key(MDNS_MAC)})
    small.deliver()
    m1 = small.member(1)
    # Five minutes of ticks (refreshes, keepalives, re-keys): a 180 s subscription that was not refreshed
    # would have lapsed long before the end.
    for now in range(10, 301, 10):
        small.tick(float(now))
        assert small.send_from_tap(1, mdns_query(m1)).receivers == {4}, f"lapsed at {now} s"
    # Member 4 crashes at 300 s. Its last refresh was at most 60 s earlier, so the subscription lives at
    # least 120 s more and at most 180 s more.
    small.down.add(small.member(4))
    for now in range(310, 420, 10):
        small.tick(float(now))
    small.now = 300 + GROUP_TTL_S - GROUP_REFRESH_S - 1
    assert small.send_from_tap(1, mdns_query(m1)).copies == 1
    for now in range(420, 481, 10):
        small.tick(float(now))
    small.now = 300 + GROUP_TTL_S
    gone = small.send_from_tap(1, mdns_query(m1))
    assert gone.copies == 0 and gone.drops == Counter({"multicast_no_subscribers": 1})


def test_a_member_that_leaves_a_group_stops_receiving_it_after_one_announcement() -> None:
    small = Simulation(count=4)
    small.announce(3, {group_key(MDNS_MAC), group_key(ALL_HOSTS_MAC)})
    small.announce(4, {group_key(MDNS_MAC)})
    small.deliver()
    assert small.send_from_tap(1, mdns_query(small.member(1))).receivers == {3, 4}
    small.announce(3, {group_key(ALL_HOSTS_MAC)})
    small.deliver()
    assert small.send_from_tap(1, mdns_query(small.member(1))).receivers == {4}


def test_newcomer_learns_existing_subscriptions_from_the_config_change() -> None:
    small = Simulation(count=4)
    late = small.member(4)
    small.unplug(late)  # member 4 is not in the next config
    small.reissue()
    small.announce(2, {group_key(MDNS_MAC)})
    small.deliver()
    small.plug_in(late)
    small.reissue()  # member 4 joins: member 2 re-announces to the newcomer
    small.deliver()
    assert small.send_from_tap(4, mdns_query(late)).receivers == {2}


def test_groups_set_while_the_network_is_still_requesting_are_announced_once_the_config_arrives() -> None:
    # A member joined through the controller: its TAP (and kernel groups) exist before its config does.
    small = Simulation(count=3)
    joiner = Member(4, clock=small.clock, network_id=NET)
    joiner.join(NET, CONTROLLER_ENDPOINT)  # its controller does not answer yet: REQUESTING, no config
    assert joiner.status() == "REQUESTING" and joiner.config() is None
    joiner.core.set_local_groups(NET, frozenset({group_key(MDNS_MAC)}), 0.0)
    assert {address for _, address in joiner.transmit.datagrams} <= {CONTROLLER_ENDPOINT}  # nobody to tell yet
    small.plug_in(joiner)
    small.reissue()
    small.deliver()
    assert small.send_from_tap(1, mdns_query(small.member(1))).receivers == {4}


def test_a_restarted_member_relearns_everyones_subscriptions_within_a_tick() -> None:
    small = Simulation(count=4)
    for number in (2, 3, 4):
        small.announce(number, {group_key(ALL_HOSTS_MAC)} if number == 2 else {group_key(MDNS_MAC)})
    small.announce(1, {group_key(ALL_HOSTS_MAC)})
    small.deliver()
    assert small.send_from_tap(1, mdns_query(small.member(1))).receivers == {3, 4}
    # Member 1 restarts: same identity and config, every table empty.
    old = small.member(1)
    fresh = small.restart_member(old)
    small.now = 5.0
    assert fresh.core.apply_netconf(old.core.networks[NET].config)
    assert small.send_from_tap(1, mdns_query(fresh)).receivers == set()  # forgotten
    # Its daemon reads its kernel groups and announces them; the new sessions make the others re-announce.
    small.announce(1, {group_key(ALL_HOSTS_MAC)})
    small.deliver()
    small.tick(5.1)
    assert small.send_from_tap(1, mdns_query(fresh)).receivers == {3, 4}


def test_storm_guard_drops_a_flood_and_reports_one_broadcast_storm_event_per_source() -> None:
    small = Simulation(count=4)
    m1 = small.member(1)
    frame = udp_frame(m1, UNUSED_GROUP_MAC, "239.255.0.1", 4000, 4000, b"storm")
    for _ in range(6000):
        m1.core.frame_from_tap(NET, frame, small.now)
    drops = m1.switch_counters()["drops"]
    assert drops == {"multicast_no_subscribers": 5000, "broadcast_storm": 1000}
    m1.core.tick(small.now)
    assert list(m1.core.events) == [BroadcastStorm(NET, m1.node_id)]
    for _ in range(100):
        m1.core.frame_from_tap(NET, frame, small.now + 0.001)
    m1.core.tick(small.now + 0.002)
    assert list(m1.core.events) == [BroadcastStorm(NET, m1.node_id)]  # reported once
    # Unicast from the storming member is untouched.
    unicast = udp_frame(m1, small.member(2).mac(), managed_ip(2), 4000, 4000, b"still here")
    assert small.send_from_tap(1, unicast).receivers == {2}
