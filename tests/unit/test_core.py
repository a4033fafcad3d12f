"""l2mesh.node.core: NodeCore driven sans-IO through an in-memory network (tests/unit/harness.py), no sockets and no real clock."""

from __future__ import annotations

import socket
from collections import Counter

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.fragments import DEFAULT_MAX_DATAGRAM_BYTES
from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.node.core import NetworkConfigured, NetworkRemoved, NetworkStatus
from l2mesh.wire.messages import FRAME_HEADER, MessageKind
from l2mesh.wire.packets import RELAY_HEADER, PacketType
from tests.unit.harness import Endpoint, Member, Sent, World, drop_first

SETTINGS = settings(max_examples=40, deadline=None)
CONTROLLER = Identity.generate()
NET = make_network_id(CONTROLLER.node_id, 1)
OTHER_NET = make_network_id(CONTROLLER.node_id, 2)
BROADCAST = b"\xff\xff\xff\xff\xff\xff"


class Mesh(World):
    """Members on one network, configured locally (the static seam); deliver() moves datagrams between their
    cores until the network is quiet."""

    def __init__(self, count: int = 3, identities: list[Identity] | None = None) -> None:
        super().__init__()
        for n, identity in enumerate(identities or [Identity.generate() for _ in range(count)], start=1):
            self.add_member(n, identity=identity, network_id=NET)
        for member in self.members:
            assert member.core.apply_netconf(self.config_for(member))

    @property
    def log(self) -> list[Sent]:
        return self.network.log

    @property
    def lost(self) -> list[Sent]:
        return self.network.lost

    def config_for(
        self, member: Member, revision: int = 1, others: list[Member] | None = None, network_id: int = NET, **changes
    ) -> NetworkConfig:
        listed = self.members if others is None else [member, *others]
        return NetworkConfig(
            network_id=network_id,
            revision=revision,
            issued_to=member.node_id,
            members=tuple(
                MemberConfig(m.node_id, m.identity.public, endpoints=(m.endpoint,), name=f"m{m.number}") for m in listed
            ),
            **changes,
        )

    def restart(self, member: Member) -> Member:
        """The same identity and config, with every bit of session state lost."""
        fresh = self.restart_member(member)
        assert fresh.core.apply_netconf(member.core.networks[NET].config)
        return fresh


def with_endpoints_for(mesh: Mesh, member: Member, target: Member, endpoints: tuple[Endpoint, ...]) -> Member:
    """A fresh core for member whose config lists these endpoints, in this order, for target."""
    config = mesh.config_for(member)
    members = tuple(
        MemberConfig(m.node_id, m.identity, endpoints=endpoints) if m.node_id == target.node_id else m
        for m in config.members
    )
    fresh = mesh.restart_member(member)
    assert fresh.core.apply_netconf(config.with_changes(members=members))
    return fresh


def with_two_endpoints_for(mesh: Mesh, member: Member, target: Member, first: Endpoint) -> Member:
    """A fresh core for member whose config lists first, then target's real endpoint, for target."""
    return with_endpoints_for(mesh, member, target, (first, target.endpoint))


def udp_frame(src: Member, dst_mac: bytes, payload_bytes: int = 32, network_id: int = NET) -> bytes:
    payload = bytes(range(256)) * (payload_bytes // 256) + bytes(range(payload_bytes % 256))
    udp = dpkt.udp.UDP(sport=40000, dport=9, data=payload)
    ip = dpkt.ip.IP(
        src=socket.inet_aton(f"10.147.17.{src.number}"),
        dst=socket.inet_aton("10.147.17.200"),
        p=dpkt.ip.IP_PROTO_UDP,
        data=udp,
    )
    eth = dpkt.ethernet.Ethernet(dst=dst_mac, src=src.mac(network_id), type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    return bytes(eth)


def arp_broadcast(src: Member) -> bytes:
    arp = dpkt.arp.ARP(
        sha=src.mac(),
        spa=socket.inet_aton(f"10.147.17.{src.number}"),
        tha=b"\x00" * 6,
        tpa=socket.inet_aton("10.147.17.99"),
    )
    return bytes(dpkt.ethernet.Ethernet(dst=BROADCAST, src=src.mac(), type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))


def established(mesh: Mesh, a: Member, b: Member, now: float = 0.0) -> None:
    """a sends b one frame, so both ends hold confirmed keys."""
    a.core.frame_from_tap(NET, udp_frame(a, b.mac()), now)
    mesh.deliver(now)
    assert a.core.peers[b.node_id].session.established
    assert b.core.peers[a.node_id].session.established
    b.transmit.frames.clear()


# -- unicast, fragments, broadcast ---------------------------------------------------------------


def test_unicast_frame_triggers_a_handshake_is_queued_then_delivered_exactly_once() -> None:
    mesh = Mesh()
    m1, m2, m3 = mesh.members
    frame = udp_frame(m1, m2.mac())
    m1.core.frame_from_tap(NET, frame, 0.0)
    # Nothing to encrypt with yet: only a handshake initiation leaves, and the frame waits.
    assert [(d[0], address) for d, address in m1.transmit.datagrams] == [(PacketType.HANDSHAKE_INIT, m2.endpoint)]
    assert m1.core.peers[m2.node_id].queued == 1
    delivered = mesh.deliver(0.0)
    assert [s.kind for s in delivered] == [PacketType.HANDSHAKE_INIT, PacketType.HANDSHAKE_RESPONSE, PacketType.TRANSPORT]
    assert m2.transmit.frames == [(NET, frame)]
    assert not m1.core.peers[m2.node_id].queue
    assert not m3.transmit.frames and not m1.transmit.frames
    # Keys are up: the next frame goes straight out as one transport packet.
    second = udp_frame(m1, m2.mac(), payload_bytes=100)
    m1.core.frame_from_tap(NET, second, 0.1)
    assert [s.kind for s in mesh.deliver(0.1)] == [PacketType.TRANSPORT]
    assert m2.frames() == [frame, second]


def test_reply_flows_back_over_the_session_the_initiator_opened() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    established(mesh, m1, m2)
    reply = udp_frame(m2, m1.mac())
    m2.core.frame_from_tap(NET, reply, 0.2)
    assert [s.kind for s in mesh.deliver(0.2)] == [PacketType.TRANSPORT]
    assert m1.frames() == [reply]


@pytest.mark.parametrize("direction", ["initiator-to-responder", "responder-to-initiator"])
def test_full_mtu_frames_arrive_intact_through_fragments(direction: str) -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    established(mesh, m1, m2)
    sender, receiver = (m1, m2) if direction == "initiator-to-responder" else (m2, m1)
    frame = udp_frame(sender, receiver.mac(), payload_bytes=2800 - 28)
    assert len(frame) == 2814
    sender.core.frame_from_tap(NET, frame, 1.0)
    delivered = mesh.deliver(1.0)
    assert [s.kind for s in delivered] == [PacketType.FRAGMENT, PacketType.FRAGMENT]
    assert all(len(s.data) <= DEFAULT_MAX_DATAGRAM_BYTES for s in delivered)
    assert receiver.frames() == [frame]
    assert receiver.core.reassembler.pending_count == 0


def test_a_gro_run_holding_a_whole_fragment_set_or_part_of_one_delivers_the_frames_as_sent() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    established(mesh, m1, m2)
    frames = [udp_frame(m1, m2.mac(), payload_bytes=2772 - n) for n in range(2)]
    m1.transmit.segmented.clear()
    for n, frame in enumerate(frames):
        m1.core.frame_from_tap(NET, frame, 1.0 + n)
    [(first, segment_bytes, _), (second, _, _)] = m1.transmit.segmented
    # A run as UDP_GRO hands it over: the whole set, taken at once.
    assert m2.core.segments_received(memoryview(first), segment_bytes, m1.endpoint, 2.0)
    assert m2.frames() == [frames[0]] and m2.core.reassembler.pending_count == 0
    # A run holding only the set's first fragment: it waits for the rest, which comes alone.
    assert m2.core.segments_received(memoryview(second[:segment_bytes]), segment_bytes, m1.endpoint, 2.1)
    assert m2.core.reassembler.pending_count == 1
    m2.core.datagram_received(memoryview(second[segment_bytes:]), m1.endpoint, 2.2)
    assert m2.frames() == frames


def test_full_mtu_frame_queued_behind_a_handshake_arrives_intact() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    frame = udp_frame(m1, m2.mac(), payload_bytes=2772)
    m1.core.frame_from_tap(NET, frame, 0.0)
    mesh.deliver(0.0)
    assert m2.frames() == [frame]


def test_broadcast_reaches_both_other_members_once_and_not_the_sender() -> None:
    mesh = Mesh()
    m1, m2, m3 = mesh.members
    frame = arp_broadcast(m1)
    m1.core.frame_from_tap(NET, frame, 0.0)
    assert sorted(address for _, address in m1.transmit.datagrams) == sorted([m2.endpoint, m3.endpoint])
    mesh.deliver(0.0)
    assert m2.transmit.frames == [(NET, frame)]
    assert m3.transmit.frames == [(NET, frame)]
    assert m1.transmit.frames == []


def test_unicast_to_one_member_is_not_seen_by_the_others() -> None:
    mesh = Mesh()
    m1, m2, m3 = mesh.members
    m1.core.frame_from_tap(NET, udp_frame(m1, m3.mac()), 0.0)
    delivered = mesh.deliver(0.0)
    assert {s.address for s in delivered if s.sender is m1} == {m3.endpoint}
    assert not m2.transmit.frames and len(m3.transmit.frames) == 1


def test_tap_frame_with_a_foreign_source_sends_nothing() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    spoofed = udp_frame(m1, m2.mac())
    spoofed = spoofed[:6] + b"\x52\x54\x00\x00\x00\x01" + spoofed[12:]
    m1.core.frame_from_tap(NET, spoofed, 0.0)
    assert not m1.transmit.datagrams
    assert m1.core.counters()["networks"][f"{NET:016x}"]["drops"] == {"tap_foreign_source": 1}


# -- networks and membership ------------------------------------------------------------------------


@pytest.mark.parametrize("known_to_receiver", [True, False], ids=["receiver-has-network", "unknown-network"])
def test_frame_for_a_network_the_sender_does_not_share_is_dropped_and_counted(known_to_receiver: bool) -> None:
    mesh = Mesh()
    m1, m2, m3 = mesh.members
    if known_to_receiver:
        # m2 and m3 share another network that m1 is not a member of.
        assert m2.core.apply_netconf(mesh.config_for(m2, others=[m3], network_id=OTHER_NET))
    established(mesh, m1, m2)
    frame = udp_frame(m1, m2.mac(OTHER_NET), network_id=OTHER_NET)
    m1.core.send_message(m2.node_id, FRAME_HEADER.pack(MessageKind.FRAME, OTHER_NET) + frame, 1.0)
    mesh.deliver(1.0)
    assert m2.transmit.frames == []
    assert m2.core.drops["frame_for_unshared_network"] == 1


def test_frame_from_tap_of_a_network_not_joined_sends_nothing() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    m1.core.frame_from_tap(OTHER_NET, udp_frame(m1, m2.mac(OTHER_NET), network_id=OTHER_NET), 0.0)
    assert not m1.transmit.datagrams


def test_peer_removed_from_the_config_is_cut_off() -> None:
    mesh = Mesh()
    m1, m2, m3 = mesh.members
    established(mesh, m1, m2)
    m1_static = m1.identity.x25519_public
    assert m1_static in m2.core.table.sessions
    assert m2.core.apply_netconf(mesh.config_for(m2, revision=2, others=[m3]))
    assert m1.node_id not in m2.peer_ids()
    assert m1_static not in m2.core.table.sessions
    # m1 still holds the old config and keys: its frames no longer open.
    m1.core.frame_from_tap(NET, udp_frame(m1, m2.mac()), 1.0)
    m1.core.frame_from_tap(NET, arp_broadcast(m1), 1.0)
    log_start = len(mesh.log)
    mesh.deliver(1.0)
    assert m2.transmit.frames == []
    assert m2.core.drops["transport_rejected"] == 2
    # Not even a handshake hint goes back: m1's address no longer names a peer.
    assert not [s for s in mesh.log[log_start:] if s.sender is m2]
    # A fresh handshake from m1 is refused too.
    m1 = mesh.restart(m1)
    m1.core.frame_from_tap(NET, udp_frame(m1, m2.mac()), 2.0)
    mesh.deliver(2.0)
    assert m2.core.drops["initiation_rejected"] == 1
    assert m2.transmit.frames == []
    # And m2 no longer sends to m1's MAC, while m3 is still reachable.
    m3.transmit.frames.clear()
    m2.core.frame_from_tap(NET, udp_frame(m2, m1.mac()), 3.0)
    assert m2.core.counters()["networks"][f"{NET:016x}"]["drops"] == {"unknown_unicast": 1}
    to_m3 = udp_frame(m2, m3.mac())
    m2.core.frame_from_tap(NET, to_m3, 3.0)
    mesh.deliver(3.0)
    assert m3.frames() == [to_m3] and m1.transmit.frames == []


def test_stale_netconf_revision_is_refused() -> None:
    mesh = Mesh()
    m1, _, m3 = mesh.members
    newer = mesh.config_for(m1, revision=5, others=[m3])
    assert m1.core.apply_netconf(newer)
    m1.core.events.clear()
    assert m1.core.apply_netconf(mesh.config_for(m1, revision=4)) is False
    assert m1.core.drops["stale_netconf"] == 1
    assert m1.core.networks[NET].config is newer
    assert not m1.core.events
    assert m1.peer_ids() == {m3.node_id}
    # The same revision again is not stale.
    assert m1.core.apply_netconf(newer)


def test_events_report_configured_and_removed_networks() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    first = m1.core.events.popleft()
    assert first == NetworkConfigured(NET, m1.core.networks[NET].config)
    assert not m1.core.events
    other = mesh.config_for(m1, others=[m2], network_id=OTHER_NET)
    m1.core.apply_netconf(other)
    assert list(m1.core.events) == [NetworkConfigured(OTHER_NET, other)]
    assert m1.core.networks[OTHER_NET].status is NetworkStatus.OK
    m1.core.remove_network(OTHER_NET)
    assert m1.core.events[-1] == NetworkRemoved(OTHER_NET)
    assert OTHER_NET not in m1.core.networks
    m1.core.remove_network(OTHER_NET)  # already gone: no second event
    assert len(m1.core.events) == 2


def test_removing_the_only_shared_network_forgets_the_peers() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    established(mesh, m1, m2)
    m1.core.remove_network(NET)
    assert not m1.peer_ids()
    assert not m1.core.table.sessions


# -- hostile input ------------------------------------------------------------------------------------

STRANGER: Endpoint = ("198.18.250.66", 4444)
# Fixed identities for the hostile-input test, so its strategies can aim envelopes at the member.
TARGET, ITS_PEER = Identity.generate(), Identity.generate()
datagrams = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from(list(PacketType)), st.binary(max_size=200)).map(lambda t: bytes([t[0]]) + t[1]),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.binary(min_size=12, max_size=120)).map(
        lambda t: bytes([PacketType.FRAGMENT, t[0], t[1], 0]) + t[2]
    ),
    # Relay envelopes: to anyone, or to the member from its peer, a stranger or itself, wrapping anything.
    st.tuples(
        st.integers(0, 255),
        st.sampled_from([TARGET.node_id, ITS_PEER.node_id, 0x1234567890]),
        st.sampled_from([TARGET.node_id, ITS_PEER.node_id, 0x1234567890]),
        st.one_of(st.binary(max_size=150), st.sampled_from(list(PacketType)).map(lambda k: bytes([k]) + bytes(40))),
    ).map(lambda t: RELAY_HEADER.pack(PacketType.RELAY, t[0], t[1].to_bytes(5, "big"), t[2].to_bytes(5, "big")) + t[3]),
)


@SETTINGS
@given(st.lists(datagrams, min_size=1, max_size=20))
def test_hostile_datagrams_never_raise_each_is_counted_under_one_reason_and_real_traffic_still_flows(
    packets: list[bytes],
) -> None:
    mesh = Mesh(identities=[TARGET, ITS_PEER])
    member, peer = mesh.members
    for i, packet in enumerate(packets):
        drops_before, held_before = Counter(member.drops), member.held_fragment_bytes
        member.receive(packet, STRANGER, float(i))
        moved = Counter(member.drops) - drops_before
        if packet[:1] == bytes([PacketType.FRAGMENT]) and member.held_fragment_bytes > held_before:
            assert not moved, f"a fragment kept for reassembly was also counted as dropped: {dict(moved)}"
        else:
            # Rejected: counted once, under exactly one reason (never silently, never twice).
            assert list(moved.values()) == [1], f"datagram {i} ({packet[:8].hex()}...) moved {dict(moved)}"
    assert member.transmit.datagrams == [] and member.transmit.frames == []
    assert member.endpoint_of(peer) == peer.endpoint  # a stranger cannot move a peer's address
    # The peer's real traffic still gets through, both ways, as if nothing had happened.
    now = float(len(packets) + 1)
    to_member, to_peer = udp_frame(peer, member.mac()), udp_frame(member, peer.mac())
    peer.core.frame_from_tap(NET, to_member, now)
    mesh.deliver(now)
    member.core.frame_from_tap(NET, to_peer, now)
    mesh.deliver(now)
    assert member.frames() == [to_member] and peer.frames() == [to_peer]


def test_empty_and_unknown_datagrams_are_counted() -> None:
    mesh = Mesh(2)
    m1 = mesh.members[0]
    m1.core.datagram_received(memoryview(b""), STRANGER, 0.0)
    m1.core.datagram_received(memoryview(b"\x63junk"), STRANGER, 0.0)
    assert m1.core.drops["empty_datagram"] == 1
    assert m1.core.drops["unknown_packet_type"] == 1


# -- restarts and retransmission ------------------------------------------------------------------------


def test_restarted_peer_is_reached_again_after_it_answers_undecryptable_traffic_with_a_handshake() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    established(mesh, m1, m2)
    m2 = mesh.restart(m2)
    lost = udp_frame(m1, m2.mac(), payload_bytes=10)
    m1.core.frame_from_tap(NET, lost, 5.0)
    delivered = mesh.deliver(5.0)
    # m1 used its old keys; the new m2 cannot open them and starts a handshake itself.
    assert m2.core.drops["transport_rejected"] == 1
    initiations = [s for s in delivered if s.kind == PacketType.HANDSHAKE_INIT]
    assert [(s.sender, s.address) for s in initiations] == [(m2, m1.endpoint)]
    assert m2.core.peers[m1.node_id].session.established
    assert m2.transmit.frames == []
    after = udp_frame(m1, m2.mac(), payload_bytes=20)
    m1.core.frame_from_tap(NET, after, 5.1)
    mesh.deliver(5.1)
    assert m2.frames() == [after]
    reply = udp_frame(m2, m1.mac())
    m2.core.frame_from_tap(NET, reply, 5.2)
    mesh.deliver(5.2)
    assert m1.frames() == [reply]


def test_handshakes_started_on_undecryptable_traffic_are_rate_limited() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    established(mesh, m1, m2)
    m2 = mesh.restart(m2)
    for i in range(5):
        m1.core.frame_from_tap(NET, udp_frame(m1, m2.mac(), payload_bytes=i), 5.0)
    mesh.deliver(5.0)
    assert m2.core.drops["transport_rejected"] == 5
    assert len([s for s in mesh.log if s.sender is m2 and s.kind == PacketType.HANDSHAKE_INIT]) == 1
    # The handshake completed; more junk from m1's address within the same instant starts no new one...
    junk = bytes([PacketType.TRANSPORT, 0, 0, 0]) + b"\xee" * 40
    m2.core.datagram_received(memoryview(junk), m1.endpoint, 5.2)
    assert not m2.transmit.datagrams
    # ...but once the bucket refilled, one more is allowed.
    m2.core.datagram_received(memoryview(junk), m1.endpoint, 6.0)
    assert [d[0] for d, _ in m2.transmit.datagrams] == [PacketType.HANDSHAKE_INIT]


def test_undecryptable_traffic_from_a_stranger_starts_no_handshake() -> None:
    mesh = Mesh(2)
    m1 = mesh.members[0]
    junk = bytes([PacketType.TRANSPORT, 0, 0, 0]) + b"\xee" * 40
    m1.core.datagram_received(memoryview(junk), STRANGER, 0.0)
    assert m1.core.drops["transport_rejected"] == 1
    assert not m1.transmit.datagrams


def test_tick_retransmits_a_lost_initiation_then_delivers_the_queued_frame() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    frame = udp_frame(m1, m2.mac())
    m1.core.frame_from_tap(NET, frame, 0.0)
    mesh.deliver(0.0, drop=drop_first(1, PacketType.HANDSHAKE_INIT))
    assert m2.transmit.frames == [] and m1.core.peers[m2.node_id].queued == 1
    m1.core.tick(0.49)
    assert not m1.transmit.datagrams
    m1.core.tick(0.5)
    assert [(d[0], address) for d, address in m1.transmit.datagrams] == [(PacketType.HANDSHAKE_INIT, m2.endpoint)]
    mesh.deliver(0.5)
    assert m2.transmit.frames == [(NET, frame)]
    assert not m1.core.peers[m2.node_id].queue


def test_initiation_retries_back_off_exponentially() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    frame = udp_frame(m1, m2.mac())
    lose_three = drop_first(3, PacketType.HANDSHAKE_INIT)
    m1.core.frame_from_tap(NET, frame, 0.0)
    mesh.deliver(0.0, drop=lose_three)
    sent_at = [0.0]
    for step in range(1, 801):
        now = step / 100
        m1.core.tick(now)
        if m1.transmit.datagrams:
            sent_at.append(now)
        mesh.deliver(now, drop=lose_three)
        if m2.transmit.frames:
            break
    # Retries 0.5 s after the first, then 1 s, then 2 s later: each wait doubles.
    assert sent_at == pytest.approx([0.0, 0.5, 1.5, 3.5])
    assert m2.transmit.frames == [(NET, frame)]


def test_handshake_that_never_completes_gives_up_and_drops_the_queue() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    m1.core.frame_from_tap(NET, udp_frame(m1, m2.mac()), 0.0)
    m1.core.frame_from_tap(NET, udp_frame(m1, m2.mac(), payload_bytes=3), 0.0)
    for second in range(0, 95):
        m1.core.tick(float(second))
        mesh.deliver(float(second), drop=lambda sent: True)
    assert m1.core.drops["handshake_failed_queue_dropped"] == 2
    assert not m1.core.peers[m2.node_id].queue
    assert m2.transmit.frames == []


def test_retries_to_an_unanswering_peer_reach_its_other_endpoint() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    dead = ("198.18.222.2", 9993)
    m1 = with_two_endpoints_for(mesh, m1, m2, dead)
    assert m1.endpoint_of(m2) == dead
    frame = udp_frame(m1, m2.mac())
    m1.core.frame_from_tap(NET, frame, 0.0)
    for step in range(1, 1001):
        now = step / 100
        m1.core.tick(now)
        mesh.deliver(now)
        if m2.transmit.frames:
            break
    assert m2.transmit.frames == [(NET, frame)]
    assert m1.core.peers[m2.node_id].endpoint == m2.endpoint


def test_initiation_to_a_peer_never_reached_goes_to_every_known_endpoint_at_once() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    dead = ("198.18.222.2", 9993)
    m1 = with_two_endpoints_for(mesh, m1, m2, dead)
    m1.core.frame_from_tap(NET, udp_frame(m1, m2.mac()), 0.0)
    first = [address for _, address in m1.transmit.datagrams]
    assert sorted(first) == sorted([dead, m2.endpoint])
    # One initiation, the same bytes to both: whichever answers completes the handshake.
    assert len({data for data, _ in m1.transmit.datagrams}) == 1
    m1.transmit.datagrams.clear()
    m1.core.tick(0.5)
    assert sorted(address for _, address in m1.transmit.datagrams) == sorted([dead, m2.endpoint])


def test_a_bridge_that_stands_down_and_recovers_tells_every_member_to_flush_what_it_learned() -> None:
    mesh = Mesh()
    m1, br_a, br_b = mesh.members

    def with_bridges(member: Member, revision: int) -> NetworkConfig:
        return NetworkConfig(
            network_id=NET,
            revision=revision,
            issued_to=member.node_id,
            members=tuple(
                MemberConfig(x.node_id, x.identity.public, endpoints=(x.endpoint,), bridge=x in (br_a, br_b))
                for x in mesh.members
            ),
        )

    for member in mesh.members:
        assert member.core.apply_netconf(with_bridges(member, 2))
    lower, higher = sorted([br_a, br_b], key=lambda x: x.node_id)
    switch = higher.core.networks[NET].switch
    switch.loop_guard.heard(lower.node_id, 1.0)  # the lower-id bridge's hello, heard on our LAN
    higher.core.tick(1.0)
    mesh.deliver(1.0)
    assert switch.blocked
    higher.core.tick(6.0)  # its hellos stopped: the segment is ours again
    mesh.deliver(6.0)
    assert not switch.blocked
    assert m1.core.networks[NET].switch.forwarded["topology_change"] == 2


def test_offloaded_tap_frames_cross_as_frame_offload_and_reach_the_peer_with_their_virtio_header() -> None:
    mesh = Mesh()
    m1, m2, _ = mesh.members
    frame = udp_frame(m1, m2.mac())
    # NEEDS_CSUM + TCPv4 GSO, as a TAP with offloads hands over a TCP super-frame.
    vnet = bytes([1, 1]) + (54).to_bytes(2, "little") + (2748).to_bytes(2, "little") + bytes(4)
    offloaded: list[bytes] = []
    m2.transmit.write_offload_frame = lambda network_id, data: offloaded.append(bytes(data))  # type: ignore[method-assign]
    m1.core.vnet_frame_from_tap(NET, vnet + frame, 0.0)
    mesh.deliver(0.0)
    assert offloaded == [vnet + frame]
    # A plain read (all-zero header) travels as an ordinary frame.
    m1.core.vnet_frame_from_tap(NET, bytes(10) + frame, 0.1)
    mesh.deliver(0.1)
    assert m2.frames()[-1] == frame


FAST: Endpoint = ("198.18.99.2", 9993)


def two_way_endpoints(mesh: Mesh, slow_rtt_ms: float, fast_rtt_ms: float) -> tuple[Member, Member]:
    """m2 is reachable at its own endpoint (slow) and at FAST, listed in that order in m1's config;
    m1 first reaches m2 on the slow one, because FAST drops everything until the caller opens it."""
    m1, m2, _ = mesh.members
    mesh.network.attach(m2, FAST)
    one_way_s = {m2.endpoint: slow_rtt_ms / 2000, FAST: fast_rtt_ms / 2000}
    mesh.network.latency = lambda sent: one_way_s.get(sent.address, one_way_s.get(sent.source, 0.0))
    m1 = with_endpoints_for(mesh, m1, m2, (m2.endpoint, FAST))
    mesh.network.rules.append(FAST_IS_DOWN)
    for _ in range(3):
        m1.send(udp_frame(m1, m2.mac()))
        mesh.run(1.0)
    assert m1.endpoint_of(m2) == m2.endpoint and m1.path_to(m2) == "direct"
    mesh.network.rules.remove(FAST_IS_DOWN)
    return m1, m2


def FAST_IS_DOWN(sent: Sent) -> bool:
    return FAST in (sent.address, sent.source)


def endpoints_used_while_busy(mesh: Mesh, m1: Member, m2: Member, seconds: int) -> list[Endpoint | None]:
    """m1 sends m2 a frame every second (so it keeps probing); where it sends to m2, sampled each second."""
    used = []
    for _ in range(seconds):
        m1.send(udp_frame(m1, m2.mac()))
        mesh.run(1.0)
        used.append(m1.endpoint_of(m2))
    return used


def test_of_two_working_direct_endpoints_the_clearly_faster_one_is_used() -> None:
    mesh = Mesh()
    m1, m2 = two_way_endpoints(mesh, slow_rtt_ms=5.0, fast_rtt_ms=1.0)
    # Candidate endpoints are probed every 30 s while a peer is in use: 1 ms < 0.8 x 5 ms, so FAST takes over.
    used = endpoints_used_while_busy(mesh, m1, m2, 35)
    assert FAST in used
    switched = used.index(FAST)
    assert used[switched:] == [FAST] * (35 - switched)
    assert endpoints_used_while_busy(mesh, m1, m2, 65) == [FAST] * 65


def test_an_endpoint_only_a_little_faster_does_not_take_over() -> None:
    mesh = Mesh()
    m1, m2 = two_way_endpoints(mesh, slow_rtt_ms=5.0, fast_rtt_ms=4.5)
    log_start = len(mesh.log)
    assert endpoints_used_while_busy(mesh, m1, m2, 65) == [m2.endpoint] * 65
    # Not for want of trying: the other endpoint was probed, and answered.
    assert [s for s in mesh.log[log_start:] if s.sender is m1 and s.address == FAST]
    assert [s for s in mesh.log[log_start:] if s.sender is m2 and s.source == FAST]


def test_arp_answered_locally_is_written_back_to_the_tap_also_from_an_offload_read() -> None:
    """A TAP opened with IFF_VNET_HDR may hand over an ARP request with a non-zero virtio header
    (e.g. checksum flags): the switch's local ARP answer must reach the TAP all the same."""
    mesh = Mesh()
    m1, m2, _ = mesh.members
    with_addresses = NetworkConfig(
        network_id=NET,
        revision=2,
        issued_to=m1.node_id,
        members=tuple(
            MemberConfig(m.node_id, m.identity.public, ips=(f"10.147.17.{m.number}/24",), endpoints=(m.endpoint,))
            for m in mesh.members
        ),
    )
    assert m1.core.apply_netconf(with_addresses)
    arp = dpkt.arp.ARP(
        sha=m1.mac(), spa=socket.inet_aton("10.147.17.1"), tha=b"\x00" * 6, tpa=socket.inet_aton("10.147.17.2")
    )
    request = bytes(dpkt.ethernet.Ethernet(dst=BROADCAST, src=m1.mac(), type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))
    needs_checksum = bytes([1]) + bytes(9)
    for at_s, read in enumerate((bytes(10) + request, needs_checksum + request)):
        m1.transmit.frames.clear()
        m1.core.vnet_frame_from_tap(NET, read, float(at_s))
        assert len(m1.transmit.frames) == 1, "the ARP answer is written to our own TAP"
        reply = dpkt.ethernet.Ethernet(m1.transmit.frames[0][1])
        assert reply.dst == m1.mac() and reply.data.sha == m2.mac() and reply.data.spa == socket.inet_aton("10.147.17.2")
        assert not m1.transmit.datagrams, "nothing crosses the overlay for a known address"
