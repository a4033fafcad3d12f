"""l2mesh.session: Noise IK sessions between SessionTables, driven entirely by the `now` argument."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.crypto.noise import public_key
from l2mesh.crypto.replay import REPLAY_WINDOW_MESSAGES, ReplayWindow
from l2mesh.crypto.timers import DEFAULT_LIMITS, SessionLimits
from l2mesh.crypto.cookie import CookieGenerator
from l2mesh.session import HandshakeRefused, Session, SessionAction, SessionError, SessionTable
from l2mesh.wire import ParseError
from l2mesh.wire.packets import (
    HANDSHAKE_INIT_BYTES,
    HANDSHAKE_RESPONSE_BYTES,
    TRANSPORT_HEADER,
    HandshakeInit,
    HandshakeResponse,
    PacketType,
)


class FakeWallClock:
    """Strictly increasing wall time for TAI64N timestamps in initiations."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1_700_000_000 * 10**9, 10**6)

    def __call__(self) -> int:
        return next(self._ticks)


@dataclass
class Node:
    private: bytes
    table: SessionTable

    @property
    def public(self) -> bytes:
        return public_key(self.private)


def make_node(limits: SessionLimits = DEFAULT_LIMITS, is_allowed=None) -> Node:
    private = os.urandom(32)
    kwargs = {} if is_allowed is None else {"is_allowed": is_allowed}
    return Node(private, SessionTable(private, limits=limits, wall_clock_ns=FakeWallClock(), **kwargs))


def handshake(a: Node, b: Node, now: float, source="a") -> tuple[Session, Session]:
    """a initiates to b; returns (a's session, b's session) with b's keypair still unconfirmed."""
    sa = a.table.session_for(b.public)
    init = sa.create_initiation(now)
    result = b.table.handle_initiation(init, now, source=source)
    assert result.response is not None
    done = a.table.handle_response(result.response, now)
    assert done.session is sa
    return sa, result.session


def seal(session: Session, plaintext: bytes, now: float) -> bytes:
    packet = session.seal(plaintext, now)
    assert packet is not None
    return bytes(packet)  # the view points into shared scratch


def open_(node: Node, packet: bytes, now: float) -> tuple[Session, bytes]:
    session, plaintext = node.table.open(memoryview(packet), now)
    return session, bytes(plaintext)


def receive_data(node: Node, packet: bytes, now: float) -> Session:
    """Open a packet the way the node core does for anything but a keepalive: it counts as data."""
    session, _ = open_(node, packet, now)
    session.last_data_received_s = now
    return session


def receiver_index(packet: bytes) -> int:
    return TRANSPORT_HEADER.unpack_from(packet)[1]


def counter_of(packet: bytes) -> int:
    return TRANSPORT_HEADER.unpack_from(packet)[2]


def established_pair(limits: SessionLimits = DEFAULT_LIMITS, now: float = 0.0) -> tuple[Node, Node, Session, Session]:
    """Handshake done and confirmed (a sent its first packet), b's view of a is current."""
    a, b = make_node(limits), make_node(limits)
    sa, sb = handshake(a, b, now)
    opened_session, plaintext = open_(b, seal(sa, b"confirm", now), now)
    assert opened_session is sb and plaintext == b"confirm"
    return a, b, sa, sb


# -- handshake and data -------------------------------------------------------


def test_full_handshake_then_data_flows_both_ways() -> None:
    a, b = make_node(), make_node()
    sa, sb = handshake(a, b, 0.0)
    assert sa.established and sa.remote_static == b.public
    assert sb.remote_static == a.public
    session, plaintext = open_(b, seal(sa, b"ping from a", 0.1), 0.1)
    assert session is sb and plaintext == b"ping from a"
    session, plaintext = open_(a, seal(sb, b"pong from b", 0.2), 0.2)
    assert session is sa and plaintext == b"pong from b"
    assert sa.established_count == 1 and sb.established_count == 1


def test_handshake_packets_have_their_documented_sizes() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    init = sa.create_initiation(0.0)
    assert len(init) == HANDSHAKE_INIT_BYTES == 148 and init[0] == PacketType.HANDSHAKE_INIT
    response = b.table.handle_initiation(init, 0.0).response
    assert len(response) == HANDSHAKE_RESPONSE_BYTES == 92 and response[0] == PacketType.HANDSHAKE_RESPONSE


def test_transport_packet_is_addressed_to_the_receivers_index() -> None:
    a, b, sa, sb = established_pair()
    packet = seal(sa, b"x", 1.0)
    assert packet[0] == PacketType.TRANSPORT
    assert receiver_index(packet) == sb.current.local_index == sa.current.remote_index
    assert len(packet) == 16 + 1 + 16


def test_responder_keypair_is_unconfirmed_until_initiators_first_transport_packet() -> None:
    a, b = make_node(), make_node()
    sa, sb = handshake(a, b, 0.0)
    assert sb.current is None and sb.next is not None
    assert not sb.established
    assert sb.seal(b"too early", 0.0) is None
    assert sb.established_count == 0
    confirmed = sb.next
    open_(b, seal(sa, b"first", 0.1), 0.1)
    assert sb.current is confirmed and sb.next is None
    assert sb.established and sb.established_count == 1
    assert open_(a, seal(sb, b"now b can send", 0.2), 0.2)[1] == b"now b can send"


def test_sealing_without_a_session_returns_none() -> None:
    a, b = make_node(), make_node()
    assert a.table.session_for(b.public).seal(b"x", 0.0) is None


# -- replay protection ----------------------------------------------------------


def test_replayed_transport_packet_is_rejected() -> None:
    a, b, sa, _ = established_pair()
    packet = seal(sa, b"once", 1.0)
    open_(b, packet, 1.0)
    with pytest.raises(SessionError):
        open_(b, packet, 1.1)


def test_out_of_order_packets_inside_window_are_accepted_once_each() -> None:
    a, b, sa, _ = established_pair()
    packets = [seal(sa, f"m{i}".encode(), 1.0) for i in range(6)]
    for i in (3, 0, 5, 1, 4, 2):
        assert open_(b, packets[i], 1.0)[1] == f"m{i}".encode()
    for packet in packets:
        with pytest.raises(SessionError):
            open_(b, packet, 1.0)


def test_counter_older_than_replay_window_is_rejected_by_session() -> None:
    a, b, sa, _ = established_pair()
    old = seal(sa, b"old", 1.0)
    sa.current.send_counter = counter_of(old) + REPLAY_WINDOW_MESSAGES + 5
    new = seal(sa, b"new", 1.0)
    assert open_(b, new, 1.0)[1] == b"new"
    with pytest.raises(SessionError):
        open_(b, old, 1.0)


def test_replay_window_edges() -> None:
    window = ReplayWindow(size=64)
    window.mark(100)
    assert window.may_accept(101) and window.may_accept(10**6)
    assert not window.may_accept(100)
    assert window.may_accept(100 - 63)  # the oldest counter still inside the window
    assert not window.may_accept(100 - 64)  # just outside
    window.mark(37)
    assert not window.may_accept(37)
    assert window.may_accept(38)


def test_replay_window_forgets_marks_that_slide_out_and_refuses_old_counters() -> None:
    window = ReplayWindow()
    window.mark(0)
    window.mark(REPLAY_WINDOW_MESSAGES)
    assert window.highest == REPLAY_WINDOW_MESSAGES
    assert not window.may_accept(0)  # offset == size: too old
    assert window.may_accept(1)
    window.mark(1)
    assert not window.may_accept(1)
    window.mark(10 * REPLAY_WINDOW_MESSAGES)  # jump far ahead
    assert not window.may_accept(10 * REPLAY_WINDOW_MESSAGES)
    assert window.may_accept(10 * REPLAY_WINDOW_MESSAGES - 1)


class WindowModel:
    """What a replay window of size must answer: each counter once, none older than size below the highest seen."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.highest = -1

    def accepts(self, counter: int) -> bool:
        return counter not in self.seen and (counter > self.highest or self.highest - counter < self.size)

    def offer(self, window: ReplayWindow, counter: int) -> None:
        """The window answers as the model does; what both accept is marked in both."""
        assert window.may_accept(counter) == self.accepts(counter), (self.size, self.highest, counter)
        if self.accepts(counter):
            window.mark(counter)
            self.seen.add(counter)
            self.highest = max(self.highest, counter)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=200), st.integers(1, 80))
def test_replay_window_matches_a_reference_model(counters: list[int], size: int) -> None:
    window, model = ReplayWindow(size=size), WindowModel(size)
    for counter in counters:
        model.offer(window, counter)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=40), st.integers(1, 300), st.data())
def test_replay_window_matches_the_model_across_ring_wraps_and_jumps(starts: list[int], size: int, data: st.DataObject) -> None:
    """Runs of nearly ordered counters from jumping starts: the window's ring of blocks wraps many times."""
    window, model = ReplayWindow(size=size), WindowModel(size)
    for start in sorted(starts):
        for counter in data.draw(st.lists(st.integers(max(0, start - 2 * size), start + 40), max_size=30)):
            model.offer(window, counter)
    highest = model.highest
    for old in range(max(0, highest - 3 * size - 40), highest - size + 1):
        window.mark(old)  # outside the window: marks nothing inside it, whatever block of the ring it falls in
    assert all(window.may_accept(c) == model.accepts(c) for c in range(max(0, highest - size + 1), highest + 1))


def test_replay_window_every_size_and_alignment_with_holes_filled_late() -> None:
    """Each small size against the model at every step: the window spans one more block than size // 8 at some
    alignments, and a hole marked just before it slides out must still be refused afterwards."""
    for size in range(1, 40):
        window, model = ReplayWindow(size=size), WindowModel(size)
        for highest in range(120):
            for counter in (highest, highest - size + 1):  # the new highest, then the oldest counter still inside
                if counter >= 0:
                    model.offer(window, counter)
            for counter in range(highest + 2):
                assert window.may_accept(counter) == model.accepts(counter), (size, highest, counter)


def test_tampered_ciphertext_is_rejected_and_does_not_advance_replay_window() -> None:
    a, b, sa, _ = established_pair()
    genuine = seal(sa, b"genuine payload", 1.0)
    for position in (16, len(genuine) // 2, len(genuine) - 1):
        tampered = bytearray(genuine)
        tampered[position] ^= 0x40
        with pytest.raises(SessionError):
            open_(b, bytes(tampered), 1.0)
    assert open_(b, genuine, 1.0)[1] == b"genuine payload"


def test_forged_high_counter_does_not_push_genuine_packets_out_of_window() -> None:
    a, b, sa, _ = established_pair()
    genuine = seal(sa, b"still fine", 1.0)
    forged = bytearray(genuine)
    forged[8:16] = (counter_of(genuine) + 10 * REPLAY_WINDOW_MESSAGES).to_bytes(8, "little")
    with pytest.raises(SessionError):
        open_(b, bytes(forged), 1.0)
    assert open_(b, genuine, 1.0)[1] == b"still fine"


def test_unknown_receiver_index_and_short_packets_are_rejected() -> None:
    a, b, sa, sb = established_pair()
    packet = bytearray(seal(sa, b"x", 1.0))
    packet[4:8] = ((sb.current.local_index + 1) % 2**32).to_bytes(4, "little")
    with pytest.raises(SessionError):
        open_(b, bytes(packet), 1.0)
    with pytest.raises(SessionError):
        open_(b, seal(sa, b"x", 1.0)[:31], 1.0)


def test_pending_handshake_index_is_not_a_transport_receiver() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    init = HandshakeInit.parse(sa.create_initiation(0.0))
    fake = TRANSPORT_HEADER.pack(PacketType.TRANSPORT, init.sender_index, 0) + b"\0" * 32
    with pytest.raises(SessionError):
        open_(a, fake, 0.0)


# -- handshake refusals --------------------------------------------------------


def test_handshake_from_static_key_that_is_not_allowed_is_refused() -> None:
    a = make_node()
    stranger = make_node()
    b = make_node(is_allowed=lambda remote: remote == a.public)
    init = stranger.table.session_for(b.public).create_initiation(0.0)
    with pytest.raises(SessionError):
        b.table.handle_initiation(init, 0.0, source="stranger")
    assert stranger.public not in b.table.sessions
    # the allowed key still gets through
    handshake(a, b, 0.1, source="a")
    assert a.public in b.table.sessions


def test_initiation_targeting_a_different_responder_key_is_refused() -> None:
    a, b, c = make_node(), make_node(), make_node()
    init = a.table.session_for(c.public).create_initiation(0.0)  # meant for c...
    with pytest.raises(SessionError):
        b.table.handle_initiation(init, 0.0)  # ...delivered to b
    assert b.table.sessions == {}


def test_replayed_initiation_is_refused() -> None:
    a, b = make_node(), make_node()
    init = a.table.session_for(b.public).create_initiation(0.0)
    first = b.table.handle_initiation(init, 0.0)
    unconfirmed = first.session.next
    with pytest.raises(SessionError):
        b.table.handle_initiation(init, 0.1)
    assert first.session.next is unconfirmed  # the replay did not replace the keys


def test_initiation_with_older_timestamp_than_one_already_seen_is_refused() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    older = sa.create_initiation(0.0)
    newer = sa.create_initiation(0.5)
    b.table.handle_initiation(newer, 0.5)
    with pytest.raises(SessionError):
        b.table.handle_initiation(older, 0.6)


def test_response_for_unknown_index_is_refused() -> None:
    a, b = make_node(), make_node()
    init = a.table.session_for(b.public).create_initiation(0.0)
    response = bytearray(b.table.handle_initiation(init, 0.0).response)
    packet = HandshakeResponse.parse(bytes(response))
    response[8:12] = ((packet.receiver_index + 1) % 2**32).to_bytes(4, "little")
    with pytest.raises(SessionError):
        a.table.handle_response(bytes(response), 0.0)


def test_response_replayed_after_handshake_completed_is_refused() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    response = b.table.handle_initiation(sa.create_initiation(0.0), 0.0).response
    a.table.handle_response(response, 0.0)
    with pytest.raises(SessionError):
        a.table.handle_response(response, 0.1)


def test_response_to_superseded_initiation_is_refused() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    first = sa.create_initiation(0.0)
    sa.create_initiation(0.5)  # retransmission with a fresh index
    response = b.table.handle_initiation(first, 0.6).response
    with pytest.raises(SessionError):
        a.table.handle_response(response, 0.6)


def test_forged_response_does_not_break_the_pending_handshake() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    response = b.table.handle_initiation(sa.create_initiation(0.0), 0.0).response
    forged = bytearray(response[:-32])
    forged[-1] ^= 0x01  # anyone who saw the initiation and knows a's public key can send this
    with pytest.raises(SessionError, match="handshake response"):
        a.table.handle_response(CookieGenerator(a.public).add_macs(bytes(forged), 0.0), 0.0)
    a.table.handle_response(response, 0.0)
    assert sa.established


def test_handshake_rate_limit_per_source_allows_burst_then_refuses() -> None:
    limits = SessionLimits(handshake_burst_per_source=3, handshake_rate_per_source_per_s=1.0)
    a, b = make_node(), make_node(limits)
    sa = a.table.session_for(b.public)
    for _ in range(3):
        b.table.handle_initiation(sa.create_initiation(0.0), 0.0, source=("198.18.250.1", 1))
    with pytest.raises(HandshakeRefused, match="rate_limited"):
        b.table.handle_initiation(sa.create_initiation(0.0), 0.0, source=("198.18.250.1", 1))
    # another source has its own bucket
    b.table.handle_initiation(sa.create_initiation(0.0), 0.0, source=("198.18.250.2", 1))
    # the first source earns a token back after 1 / rate seconds
    b.table.handle_initiation(sa.create_initiation(1.0), 1.0, source=("198.18.250.1", 1))


def test_garbage_is_refused_before_the_rate_limit_and_spends_none_of_it() -> None:
    limits = SessionLimits(handshake_burst_per_source=1, handshake_rate_per_source_per_s=1.0)
    a, b = make_node(), make_node(limits)
    for junk in (b"\x01junk", b"\x01" + bytes(HANDSHAKE_INIT_BYTES - 1)):
        with pytest.raises(HandshakeRefused) as refused:
            b.table.handle_initiation(junk, 0.0, source="x")
        assert refused.value.reason in ("handshake_malformed", "handshake_bad_mac1")
    handshake(a, b, 0.0, source="x")


# -- re-keying and expiry --------------------------------------------------------

REKEY_LIMITS = SessionLimits(
    rekey_after_time_s=10.0,
    reject_after_time_s=30.0,
    responder_rekey_delay_s=5.0,
    idle_expiry_s=100.0,
    keepalive_after_s=3.0,
)


def test_rekey_after_time_keeps_in_flight_packets_and_switches_to_new_keys() -> None:
    a, b, sa, sb = established_pair(REKEY_LIMITS, now=0.0)
    for t in (2.0, 5.0, 8.0):
        open_(b, seal(sa, b"a", t), t)
        open_(a, seal(sb, b"b", t), t)
    assert not sa.poll(9.9) & SessionAction.SEND_INITIATION
    assert sa.poll(10.0) & SessionAction.SEND_INITIATION
    # the responder waits responder_rekey_delay_s longer
    assert not sb.poll(10.0) & SessionAction.SEND_INITIATION

    old_a_index, old_b_index = sa.current.local_index, sb.current.local_index
    in_flight_to_b = seal(sa, b"old keys a->b", 10.0)
    in_flight_to_a = seal(sb, b"old keys b->a", 10.0)

    init = sa.create_initiation(10.0)
    response = b.table.handle_initiation(init, 10.1, source="a").response
    a.table.handle_response(response, 10.2)
    assert sa.established_count == 2
    assert sa.previous is not None and sa.previous.local_index == old_a_index
    assert sa.current.local_index != old_a_index

    # b still sends with the old keys until a's first new packet confirms the new ones
    assert receiver_index(seal(sb, b"still old", 10.2)) == old_a_index
    assert open_(a, in_flight_to_a, 10.3)[1] == b"old keys b->a"

    new_packet = seal(sa, b"new keys", 10.4)
    assert receiver_index(new_packet) != old_b_index
    assert open_(b, new_packet, 10.4)[1] == b"new keys"
    assert sb.established_count == 2
    assert sb.current.local_index == receiver_index(new_packet)
    assert sb.previous.local_index == old_b_index

    # the packet sealed with the previous keypair before the re-key still opens
    assert open_(b, in_flight_to_b, 10.5)[1] == b"old keys a->b"
    reply = seal(sb, b"b on new keys", 10.6)
    assert receiver_index(reply) == sa.current.local_index
    assert open_(a, reply, 10.6)[1] == b"b on new keys"
    # and no re-key is wanted right after one
    assert not sa.poll(10.7) & SessionAction.SEND_INITIATION


def test_responder_rekeys_after_its_extra_delay() -> None:
    a, b, sa, sb = established_pair(REKEY_LIMITS, now=0.0)
    for t in (4.0, 8.0, 12.0):
        open_(a, seal(sb, b"b", t), t)
    assert not sb.poll(14.9) & SessionAction.SEND_INITIATION
    assert sb.poll(15.0) & SessionAction.SEND_INITIATION


def test_idle_session_is_not_rekeyed() -> None:
    a, b, sa, sb = established_pair(REKEY_LIMITS, now=0.0)
    # last activity at 0: by t=20 it has been unused for longer than rekey_after_time_s
    assert not sa.poll(20.0) & SessionAction.SEND_INITIATION


def test_rekey_after_message_count() -> None:
    limits = SessionLimits(rekey_after_messages=5)
    a, b, sa, sb = established_pair(limits, now=0.0)  # the confirming packet was message 1
    for _ in range(3):
        seal(sa, b"x", 0.1)
    assert sa.current.send_counter == 4
    assert not sa.poll(0.2) & SessionAction.SEND_INITIATION
    seal(sa, b"x", 0.2)
    assert sa.poll(0.3) & SessionAction.SEND_INITIATION
    old_remote_index = sa.current.remote_index
    response = b.table.handle_initiation(sa.create_initiation(0.3), 0.3).response
    a.table.handle_response(response, 0.3)
    assert sa.current.send_counter == 0
    assert not sa.poll(0.4) & SessionAction.SEND_INITIATION
    packet = seal(sa, b"fresh keys", 0.4)
    assert receiver_index(packet) != old_remote_index
    assert open_(b, packet, 0.4)[1] == b"fresh keys"
    assert sa.established_count == 2 and sb.established_count == 2


def test_keypair_rejected_after_reject_after_time() -> None:
    limits = SessionLimits(rekey_after_time_s=10.0, reject_after_time_s=30.0, idle_expiry_s=1000.0)
    a, b, sa, sb = established_pair(limits, now=0.0)
    late_packet = seal(sa, b"sealed in time", 29.9)
    assert sa.seal(b"too late", 30.0) is None
    assert sb.seal(b"too late", 30.0) is None
    with pytest.raises(SessionError):
        open_(b, late_packet, 30.0)


def test_poll_drops_keypairs_after_reject_after_time() -> None:
    limits = SessionLimits(rekey_after_time_s=10.0, reject_after_time_s=30.0, idle_expiry_s=1000.0)
    a, b, sa, sb = established_pair(limits, now=0.0)
    packet = seal(sa, b"x", 1.0)
    sa.poll(30.0)
    sb.poll(30.0)
    assert sa.current is None and sb.current is None
    assert not sa.established
    with pytest.raises(SessionError):
        open_(b, packet, 1.0)  # the index is gone even for an earlier clock


def test_idle_session_expires_and_is_removed_by_table_poll() -> None:
    limits = SessionLimits(idle_expiry_s=60.0, reject_after_time_s=1000.0, rekey_after_time_s=500.0)
    a, b, sa, sb = established_pair(limits, now=0.0)
    in_flight = seal(sb, b"late", 0.0)
    assert all(not action & SessionAction.EXPIRED for _, action in a.table.poll(59.9))
    assert b.public in a.table.sessions
    reports = a.table.poll(60.0)
    assert reports == [(sa, SessionAction.EXPIRED)]
    assert b.public not in a.table.sessions
    assert sa.current is None
    with pytest.raises(SessionError):
        open_(a, in_flight, 60.0)


def test_active_session_does_not_expire() -> None:
    limits = SessionLimits(idle_expiry_s=60.0, reject_after_time_s=1000.0, rekey_after_time_s=500.0)
    a, b, sa, sb = established_pair(limits, now=0.0)
    open_(a, seal(sb, b"x", 50.0), 50.0)
    assert all(not action & SessionAction.EXPIRED for _, action in a.table.poll(100.0))
    assert b.public in a.table.sessions and sa.established


def test_handshake_retries_back_off_then_give_up() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    sa.create_initiation(0.0)
    sent_at = [0.0]
    while True:
        next_retry = sa.pending.next_retry_s
        if next_retry >= DEFAULT_LIMITS.handshake_give_up_s:
            break
        assert sa.poll(next_retry - 0.01) == SessionAction.NONE
        assert sa.poll(next_retry) == SessionAction.SEND_INITIATION
        sa.create_initiation(next_retry)
        sent_at.append(next_retry)
    intervals = [later - earlier for earlier, later in zip(sent_at, sent_at[1:])]
    assert intervals[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(interval == 8.0 for interval in intervals[4:])
    assert sa.poll(DEFAULT_LIMITS.handshake_give_up_s - 0.01) == SessionAction.NONE
    assert sa.poll(DEFAULT_LIMITS.handshake_give_up_s) & SessionAction.HANDSHAKE_FAILED
    assert sa.pending is None


def test_response_after_give_up_is_refused() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    init = sa.create_initiation(0.0)
    response = b.table.handle_initiation(init, 0.0).response
    assert sa.poll(DEFAULT_LIMITS.handshake_give_up_s) & SessionAction.HANDSHAKE_FAILED
    with pytest.raises(SessionError):
        a.table.handle_response(response, DEFAULT_LIMITS.handshake_give_up_s)


def test_handshake_failure_is_reported_by_table_poll() -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    sa.create_initiation(0.0)
    reports = dict((id(s), action) for s, action in a.table.poll(DEFAULT_LIMITS.handshake_give_up_s))
    assert reports[id(sa)] & SessionAction.HANDSHAKE_FAILED


# -- keepalive ---------------------------------------------------------------------


def test_keepalive_requested_when_data_received_but_nothing_sent_for_keepalive_after() -> None:
    a, b, sa, sb = established_pair(REKEY_LIMITS, now=0.0)
    receive_data(a, seal(sb, b"b talks", 0.0), 0.0)
    seal(sa, b"a talks", 1.0)  # a's last send: t=1
    receive_data(a, seal(sb, b"b talks again", 2.0), 2.0)  # a received at t=2, sends nothing back
    assert not sa.poll(3.9) & SessionAction.SEND_KEEPALIVE
    assert sa.poll(4.0) & SessionAction.SEND_KEEPALIVE  # nothing sent for keepalive_after_s (3 s)
    seal(sa, b"", 4.0)  # the keepalive
    assert not sa.poll(4.1) & SessionAction.SEND_KEEPALIVE


def test_no_keepalive_when_nothing_was_received_since_last_send() -> None:
    a, b, sa, sb = established_pair(REKEY_LIMITS, now=0.0)
    open_(a, seal(sb, b"b talks", 0.0), 0.0)
    seal(sa, b"a answers", 0.5)
    for t in (0.6, 3.5, 5.0, 9.0):
        assert not sa.poll(t) & SessionAction.SEND_KEEPALIVE


def test_keepalive_owed_after_receipt_is_not_lost_between_polls() -> None:
    a, b, sa, sb = established_pair(REKEY_LIMITS, now=0.0)
    seal(sa, b"a talks", 0.2)  # a's last send
    receive_data(a, seal(sb, b"b answers", 0.3), 0.3)  # received, never answered
    polls = [sa.poll(float(t)) for t in range(1, 21)]  # a 1 s timer tick
    assert any(action & SessionAction.SEND_KEEPALIVE for action in polls)


def test_a_received_keepalive_is_not_answered_so_idle_peers_fall_silent_and_expire() -> None:
    a, b, sa, sb = established_pair(REKEY_LIMITS, now=0.0)
    seal(sa, b"a talks", 0.2)
    open_(a, seal(sb, b"", 0.3), 0.3)  # only a keepalive came back: not data
    assert not any(sa.poll(float(t)) & SessionAction.SEND_KEEPALIVE for t in range(1, 21))


# -- hostile input -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(min_size=115, max_size=115).map(lambda rest: b"\x01" + rest),
        st.binary(min_size=59, max_size=59).map(lambda rest: b"\x02" + rest),
        st.binary(min_size=31, max_size=200).map(lambda rest: b"\x03" + rest),
    )
)
def test_random_bytes_raise_only_session_or_parse_errors(data: bytes) -> None:
    a, b, sa, sb = _fuzz_pair()
    fresh = make_node()  # its own rate limiter, so no example is refused just for being frequent
    for call in (
        lambda: b.table.open(memoryview(data), 1.0),
        lambda: fresh.table.handle_initiation(data, 1.0),
        lambda: a.table.handle_response(data, 1.0),
    ):
        try:
            call()
        except (SessionError, ParseError):
            pass


@settings(max_examples=200, deadline=None)
@given(counter=st.integers(0, 2**64 - 1), body=st.binary(min_size=16, max_size=100))
def test_random_ciphertext_for_a_live_receiver_index_is_refused(counter: int, body: bytes) -> None:
    a, b, sa, sb = _fuzz_pair()
    packet = TRANSPORT_HEADER.pack(PacketType.TRANSPORT, sb.current.local_index, counter) + body
    with pytest.raises(SessionError):
        b.table.open(memoryview(packet), 1.0)


@settings(max_examples=100, deadline=None)
@given(rest=st.binary(min_size=52, max_size=52))
def test_random_response_for_a_pending_index_is_refused(rest: bytes) -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    index = HandshakeInit.parse(sa.create_initiation(0.0)).sender_index
    packet = b"\x02\0\0\0" + rest[:4] + index.to_bytes(4, "little") + rest[4:]
    with pytest.raises(SessionError):
        a.table.handle_response(packet, 0.0)
    assert not sa.established


_FUZZ_PAIR: tuple | None = None


def _fuzz_pair():
    """One established pair shared by fuzz examples (hypothesis and function fixtures do not mix)."""
    global _FUZZ_PAIR
    if _FUZZ_PAIR is None:
        _FUZZ_PAIR = established_pair()
    return _FUZZ_PAIR
