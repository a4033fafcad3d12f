"""Lazy sessions (l2mesh.node.peer_table): members known from the config cost a compact record, a full peer
(session, queue, path state) exists only while traffic flows, and goes back to the record when idle."""

from __future__ import annotations

from l2mesh.crypto.timers import DEFAULT_LIMITS, SessionLimits
from l2mesh.edge.node.daemon import peer_listing
from l2mesh.identity import Identity
from l2mesh.ids import format_node_id
from l2mesh.netconf import MemberConfig
from l2mesh.node.peer_table import IDLE_SWEEP_INTERVAL_S, PeerTable
from l2mesh.node.peers import Peer
from l2mesh.wire.packets import PacketType
from tests.unit.harness import TICK_S, Member
from tests.unit.test_core import NET, Mesh, udp_frame

IDLE_S = DEFAULT_LIMITS.idle_peer_forget_s
# Keys made at a peer's last activity expire reject_after_time_s later: it is folded back by then, give or take
# the sweep interval and a tick.
FOLDED_WITHIN_S = max(IDLE_S, DEFAULT_LIMITS.reject_after_time_s) + IDLE_SWEEP_INTERVAL_S + TICK_S


def exchange(mesh: Mesh, sender: Member, receiver: Member) -> None:
    """sender's TAP hands it a frame for receiver, which receiver's TAP gets."""
    frame = udp_frame(sender, receiver.mac(), payload_bytes=int(mesh.now * 10) % 200)
    receiver.transmit.frames.clear()
    sender.send(frame, now=mesh.now)
    mesh.settle()
    assert receiver.frames() == [frame]


def run_until_folded(mesh: Mesh, member: Member, other: Member) -> tuple[float, Peer]:
    """Run until member folds other back into a known member; when that was, and the peer as it was then."""
    peer = member.core.peers[other.node_id]
    mesh.run(FOLDED_WITHIN_S + 400.0, until=lambda: other.node_id not in member.core.peers)
    return mesh.now, peer


def test_members_are_known_without_a_peer_and_nothing_is_sent_to_them_without_traffic() -> None:
    mesh = Mesh(3)
    m1, m2, m3 = mesh.members
    mesh.run(600.0)
    assert not mesh.network.log  # no handshake, probe or keepalive to anyone
    for member in mesh.members:
        assert not member.core.peers and not member.core.table.sessions
    assert m1.peer_ids() == {m2.node_id, m3.node_id}
    assert m1.core.peer_table.is_known(m2.identity.x25519_public)
    assert m1.path_to(m2) == "none" and m1.endpoint_of(m2) == m2.endpoint


def test_an_idle_peer_is_folded_back_after_the_idle_time_on_both_ends() -> None:
    mesh = Mesh(3)
    m1, m2, m3 = mesh.members
    exchange(mesh, m1, m2)
    assert set(m1.core.peers) == {m2.node_id} and set(m2.core.peers) == {m1.node_id}
    assert m3.node_id not in m1.core.peers and not m3.core.peers  # no traffic, no peer
    folded_s, peer = run_until_folded(mesh, m1, m2)
    assert IDLE_S <= folded_s - peer.last_activity_s() <= FOLDED_WITHIN_S
    assert peer.session is None  # cut off: keys wiped
    assert not m1.core.table.sessions
    mesh.run(FOLDED_WITHIN_S, until=lambda: not m2.core.peers)
    assert not m2.core.table.sessions
    # Still members: known, and where they answered is remembered.
    assert m1.peer_ids() == {m2.node_id, m3.node_id}
    assert m1.core.peer_table.known[m2.node_id].last_endpoint == m2.endpoint


def test_a_peer_in_use_is_not_folded_back() -> None:
    mesh = Mesh(2)
    m1, m2 = mesh.members
    for _ in range(int(3 * FOLDED_WITHIN_S / 30)):
        exchange(mesh, m1, m2)
        mesh.run(30.0)
    assert m2.node_id in m1.core.peers and m1.node_id in m2.core.peers


def test_a_folded_peer_is_reached_again_by_the_next_frame_either_way() -> None:
    mesh = Mesh(2)
    m1, m2 = mesh.members
    exchange(mesh, m1, m2)
    run_until_folded(mesh, m1, m2)
    mesh.run(FOLDED_WITHIN_S, until=lambda: not m2.core.peers)
    # m1 starts: its frame makes m2 a peer again, and m2's answer to the handshake makes m1 one on m2.
    log_start = len(mesh.network.log)
    exchange(mesh, m1, m2)
    initiations = [s for s in mesh.network.log[log_start:] if s.kind == PacketType.HANDSHAKE_INIT]
    assert [s.sender for s in initiations] == [m1] and initiations[0].address == m2.endpoint  # where it answered
    assert m1.path_to(m2) == m2.path_to(m1) == "direct"
    exchange(mesh, m2, m1)
    # And the other way round, m2 first this time.
    run_until_folded(mesh, m2, m1)
    mesh.run(FOLDED_WITHIN_S, until=lambda: not m1.core.peers)
    exchange(mesh, m2, m1)
    exchange(mesh, m1, m2)
    assert m1.path_to(m2) == m2.path_to(m1) == "direct"


def test_a_member_removed_from_the_config_while_idle_is_forgotten() -> None:
    mesh = Mesh(3)
    m1, m2, m3 = mesh.members
    exchange(mesh, m1, m2)
    run_until_folded(mesh, m1, m2)
    mesh.run(FOLDED_WITHIN_S, until=lambda: not m2.core.peers)
    assert m1.core.apply_netconf(mesh.config_for(m1, revision=2, others=[m3]))
    table = m1.core.peer_table
    assert m1.peer_ids() == {m3.node_id}
    assert not table.is_known(m2.identity.x25519_public)
    assert table.node_at(m2.endpoint) is None  # neither its config endpoint nor where it last answered
    # Its handshakes are refused, and undecryptable traffic from its address starts none of ours.
    m2.send(udp_frame(m2, m1.mac()), now=mesh.now)
    mesh.settle()
    assert m1.core.drops["initiation_rejected"] == 1 and m1.frames() == []
    junk = bytes([PacketType.TRANSPORT, 0, 0, 0]) + b"\xee" * 40
    m1.transmit.datagrams.clear()
    m1.core.datagram_received(memoryview(junk), m2.endpoint, mesh.now)
    assert not m1.transmit.datagrams and not m1.core.peers


def test_a_member_whose_keys_changed_is_known_by_the_new_keys_only() -> None:
    mesh = Mesh(2)
    m1, m2 = mesh.members
    old_static = m2.identity.x25519_public
    config = mesh.config_for(m1)
    other = Identity.generate()
    members = tuple(
        MemberConfig(m.node_id, other.public, endpoints=m.endpoints) if m.node_id == m2.node_id else m
        for m in config.members
    )
    assert m1.core.apply_netconf(config.with_changes(revision=2, members=members))
    table = m1.core.peer_table
    assert not table.is_known(old_static) and table.is_known(other.x25519_public)
    assert table.known[m2.node_id].identity == other.public


def test_undecryptable_traffic_from_an_idle_members_address_wakes_it_with_a_handshake() -> None:
    """We restarted (or folded the peer) while the member still holds keys: one handshake heals it."""
    mesh = Mesh(2)
    m1, m2 = mesh.members
    junk = bytes([PacketType.TRANSPORT, 0, 0, 0]) + b"\xee" * 40
    m1.core.datagram_received(memoryview(junk), m2.endpoint, 0.0)
    assert [(d[0], address) for d, address in m1.transmit.datagrams] == [(PacketType.HANDSHAKE_INIT, m2.endpoint)]
    assert m2.node_id in m1.core.peers


def test_peer_listing_shows_idle_members_with_path_none() -> None:
    mesh = Mesh(3)
    m1, m2, m3 = mesh.members
    exchange(mesh, m1, m2)
    listing = {entry["id"]: entry for entry in peer_listing(m1.core, mesh.now)}
    assert set(listing) == {format_node_id(m2.node_id), format_node_id(m3.node_id)}
    active, idle = listing[format_node_id(m2.node_id)], listing[format_node_id(m3.node_id)]
    assert active["path"] == "direct" and active["tx_bytes"] > 0
    assert set(idle) == set(active)  # the same fields
    assert idle["path"] == "none" and idle["rx_bytes"] == idle["tx_bytes"] == 0 and idle["last_handshake_s"] is None
    assert idle["endpoint"] == f"{m3.endpoint[0]}:{m3.endpoint[1]}" and idle["networks"] == active["networks"]


# -- the rule, on a peer table alone ----------------------------------------------------------------------

LIMITS = SessionLimits(idle_peer_forget_s=300.0)  # longer than keys live, so the idle time alone decides


def table_knowing(member: Identity) -> PeerTable:
    table = PeerTable(Identity.generate().x25519_private, LIMITS)
    table.know(member.node_id, member.public, (("198.18.9.2", 9993),), (NET,))
    return table


def test_a_peer_is_folded_once_idle_for_the_idle_time_and_not_before() -> None:
    member = Identity.generate()
    table = table_knowing(member)
    peer = table.peer(member.node_id, 10.0)
    assert peer is not None and table.peer_by_static(member.x25519_public, 11.0) is peer
    assert peer.endpoint == ("198.18.9.2", 9993) and table.node_at(("198.18.9.2", 9993)) == member.node_id
    peer.last_rx_s = 50.0
    table.forget_idle(349.9)
    assert member.node_id in table.by_id
    table.forget_idle(350.0 + IDLE_SWEEP_INTERVAL_S)
    assert member.node_id not in table.by_id and member.node_id in table.known
    assert table.is_known(member.x25519_public) and table.node_at(("198.18.9.2", 9993)) == member.node_id


def test_a_peer_with_a_handshake_under_way_or_messages_waiting_is_not_folded() -> None:
    member = Identity.generate()
    table = table_knowing(member)
    peer = table.peer(member.node_id, 0.0)
    assert peer is not None
    session = table.session_of(peer)
    session.create_initiation(0.0)  # pending until answered or given up
    table.forget_idle(1000.0)
    assert member.node_id in table.by_id
    session.wipe()
    peer.enqueue(b"waits for keys")
    table.forget_idle(2000.0)
    assert member.node_id in table.by_id
    peer.drop_queue()
    table.forget_idle(3000.0)
    assert member.node_id not in table.by_id and not table.sessions.sessions
