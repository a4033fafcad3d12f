"""l2mesh.fragments: splitting sealed transport packets to fit the underlay, and bounded reassembly."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.fragments import (
    DEFAULT_MAX_DATAGRAM_BYTES,
    FRAGMENT_OVERHEAD_BYTES,
    REASSEMBLY_TIMEOUT_S,
    Reassembler,
    fragment,
    fragment_into,
)
from l2mesh.wire.messages import FRAME_HEADER_BYTES
from l2mesh.wire.packets import (
    AEAD_TAG_BYTES,
    FRAGMENT_HEADER,
    FRAGMENT_HEADER_BYTES,
    MAX_FRAGMENTS,
    TRANSPORT_HEADER,
    TRANSPORT_HEADER_BYTES,
    PacketType,
)

SETTINGS = settings(max_examples=50, deadline=None)
A = ("198.18.1.2", 9993)
B = ("198.18.2.2", 9993)


def sealed_packet(total_bytes: int, receiver_index: int = 0x01020304, counter: int = 7) -> bytes:
    """What Session.seal produces: a transport header, then (here random) ciphertext with its tag."""
    return TRANSPORT_HEADER.pack(PacketType.TRANSPORT, receiver_index, counter) + os.urandom(
        total_bytes - TRANSPORT_HEADER_BYTES
    )


def feed(reassembler: Reassembler, pieces: list[bytes], source=A, now: float = 0.0) -> list[bytes]:
    return [whole for piece in pieces if (whole := reassembler.add(piece, source, now)) is not None]


# -- fragment() -------------------------------------------------------------------------------------


@SETTINGS
@given(st.integers(200, 1500), st.data())
def test_fragments_fit_the_datagram_and_reassemble_in_any_order(max_datagram_bytes: int, data) -> None:
    chunk = max_datagram_bytes - FRAGMENT_HEADER_BYTES
    total = data.draw(st.integers(max_datagram_bytes + 1, TRANSPORT_HEADER_BYTES + MAX_FRAGMENTS * chunk))
    packet = sealed_packet(total, data.draw(st.integers(0, 2**32 - 1)), data.draw(st.integers(0, 2**64 - 1)))
    pieces = fragment(packet, max_datagram_bytes)
    assert len(pieces) == -(-(total - TRANSPORT_HEADER_BYTES) // chunk)
    assert all(len(piece) <= max_datagram_bytes for piece in pieces)
    for i, piece in enumerate(pieces):
        kind, index, count, _, _ = FRAGMENT_HEADER.unpack_from(piece)
        assert (kind, index, count) == (PacketType.FRAGMENT, i, len(pieces))
        assert piece[4:16] == packet[4:16]  # receiver index and counter name the packet
    reassembler = Reassembler()
    order = data.draw(st.permutations(pieces))
    results = [reassembler.add(piece, A, 0.0) for piece in order]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == packet
    assert reassembler.pending_count == 0 and reassembler.pending_bytes == 0
    assert not reassembler.drops


def test_full_mtu_frame_fits_in_exactly_two_fragments_at_the_default_datagram_size() -> None:
    # 9-byte frame header + 14-byte Ethernet header + 2800-byte MTU payload, sealed.
    packet = sealed_packet(TRANSPORT_HEADER_BYTES + FRAME_HEADER_BYTES + 2814 + AEAD_TAG_BYTES)
    assert len(packet) == 2855 > DEFAULT_MAX_DATAGRAM_BYTES
    pieces = fragment(packet, DEFAULT_MAX_DATAGRAM_BYTES)
    assert len(pieces) == 2
    assert all(len(piece) <= DEFAULT_MAX_DATAGRAM_BYTES for piece in pieces)
    assert feed(Reassembler(), pieces[::-1]) == [packet]


def test_packet_needing_more_than_max_fragments_raises_value_error() -> None:
    max_datagram_bytes = 200
    chunk = max_datagram_bytes - FRAGMENT_HEADER_BYTES
    largest = sealed_packet(TRANSPORT_HEADER_BYTES + MAX_FRAGMENTS * chunk)
    pieces = fragment(largest, max_datagram_bytes)
    assert len(pieces) == MAX_FRAGMENTS
    assert feed(Reassembler(), pieces) == [largest]
    with pytest.raises(ValueError, match=str(MAX_FRAGMENTS)):
        fragment(largest + b"\x00", max_datagram_bytes)


# -- duplicates, loss, timeouts ------------------------------------------------------------------------


def test_duplicate_fragments_are_counted_and_ignored() -> None:
    packet = sealed_packet(4000)
    pieces = fragment(packet, 1000)
    reassembler = Reassembler()
    assert reassembler.add(pieces[1], A, 0.0) is None
    assert reassembler.add(pieces[1], A, 0.0) is None
    assert reassembler.add(pieces[0], A, 0.0) is None
    assert reassembler.add(pieces[0], A, 0.0) is None
    assert reassembler.drops["fragment_duplicate"] == 2
    assert feed(reassembler, pieces[2:]) == [packet]
    assert reassembler.pending_count == 0 and reassembler.pending_bytes == 0


def test_duplicate_with_different_content_does_not_replace_the_first_chunk() -> None:
    packet = sealed_packet(3000)
    pieces = fragment(packet, 1000)
    forged = pieces[0][:FRAGMENT_HEADER_BYTES] + bytes(len(pieces[0]) - FRAGMENT_HEADER_BYTES)
    reassembler = Reassembler()
    reassembler.add(pieces[0], A, 0.0)
    assert reassembler.add(forged, A, 0.0) is None
    assert feed(reassembler, pieces[1:]) == [packet]


def test_missing_fragment_never_completes_and_pending_state_expires_after_the_timeout() -> None:
    packet = sealed_packet(5000)
    pieces = fragment(packet, 1000)
    reassembler = Reassembler(timeout_s=REASSEMBLY_TIMEOUT_S)
    assert feed(reassembler, pieces[:2] + pieces[3:], now=10.0) == []
    assert reassembler.pending_count == 1
    stored = [p for i, p in enumerate(pieces) if i != 2]
    assert reassembler.pending_bytes == sum(len(p) - FRAGMENT_HEADER_BYTES + FRAGMENT_OVERHEAD_BYTES for p in stored)
    reassembler.expire(10.0 + REASSEMBLY_TIMEOUT_S - 0.01)
    assert reassembler.pending_count == 1
    reassembler.expire(10.0 + REASSEMBLY_TIMEOUT_S)
    assert reassembler.pending_count == 0 and reassembler.pending_bytes == 0
    assert reassembler.drops["fragment_timeout"] == 1
    # The straggler alone starts a new reassembly; it cannot complete the expired one.
    assert reassembler.add(pieces[2], A, 13.0) is None
    assert reassembler.pending_count == 1


def test_expire_keeps_younger_reassemblies() -> None:
    reassembler = Reassembler(timeout_s=2.0)
    old = fragment(sealed_packet(3000, counter=1), 1000)
    young_packet = sealed_packet(3000, counter=2)
    young = fragment(young_packet, 1000)
    reassembler.add(old[0], A, 0.0)
    reassembler.add(young[0], A, 1.5)
    reassembler.expire(2.5)
    assert reassembler.pending_count == 1 and reassembler.drops["fragment_timeout"] == 1
    assert feed(reassembler, young[1:], now=2.5) == [young_packet]


# -- memory bounds ------------------------------------------------------------------------------------


def test_incomplete_packets_from_one_source_are_limited_per_source() -> None:
    reassembler = Reassembler(max_pending_per_source=4)
    packets = [sealed_packet(3000, counter=i) for i in range(10)]
    pieces = [fragment(p, 1000) for p in packets]
    other_packet = sealed_packet(3000, counter=0)
    other = fragment(other_packet, 1000)
    reassembler.add(other[0], B, 0.0)
    for i in range(10):
        assert reassembler.add(pieces[i][0], A, float(i) / 100) is None
    assert reassembler.pending_count == 4 + 1
    assert reassembler.drops["fragment_source_limit"] == 6
    # The newest survive, the oldest were dropped; the other source was untouched.
    assert feed(reassembler, pieces[9][1:]) == [packets[9]]
    assert feed(reassembler, pieces[0][1:]) == []
    assert feed(reassembler, other[1:], source=B) == [other_packet]


def test_pending_bytes_over_the_limit_drops_the_oldest_reassemblies() -> None:
    stored = 984 + FRAGMENT_OVERHEAD_BYTES  # what one stored 1000-byte fragment counts for
    reassembler = Reassembler(max_pending_bytes=2 * stored + 100)
    first = fragment(sealed_packet(2900, counter=1), 1000)
    second_packet = sealed_packet(1800, counter=2)
    second = fragment(second_packet, 1000)
    assert (len(first), len(second)) == (3, 2)
    reassembler.add(first[0], A, 0.0)
    reassembler.add(first[1], A, 0.0)
    assert reassembler.pending_bytes == 2 * stored
    reassembler.add(second[0], B, 0.1)
    assert reassembler.pending_bytes == stored <= reassembler.max_pending_bytes
    assert reassembler.drops["fragment_memory_limit"] == 1
    assert reassembler.add(second[1], B, 0.1) == second_packet
    assert reassembler.add(first[2], A, 0.2) is None  # its earlier pieces were dropped


fragment_plan = st.lists(
    st.tuples(st.sampled_from([A, B, ("198.18.250.1", 1)]), st.integers(0, 7), st.integers(0, 3)),
    min_size=1,
    max_size=80,
)


@SETTINGS
@given(fragment_plan, st.integers(1500, 6000), st.integers(1, 4))
def test_pending_bytes_never_exceed_the_bound(plan, max_pending_bytes: int, per_source: int) -> None:
    originals = [sealed_packet(3500, counter=i) for i in range(8)]
    packets = [fragment(p, 1000) for p in originals]
    assert {len(p) for p in packets} == {4}
    reassembler = Reassembler(max_pending_per_source=per_source, max_pending_bytes=max_pending_bytes)
    for step, (source, packet, index) in enumerate(plan):
        whole = reassembler.add(packets[packet][index], source, step * 0.01)
        assert whole is None or whole == originals[packet]
        assert 0 <= reassembler.pending_bytes <= max_pending_bytes
        assert reassembler.pending_count <= 3 * per_source


# -- malformed fragments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "count"),
    [(0, 0), (1, 1), (5, 5), (7, 3), (0, MAX_FRAGMENTS + 1), (255, 255)],
)
def test_bad_index_or_count_is_counted_and_dropped(index: int, count: int) -> None:
    reassembler = Reassembler()
    datagram = FRAGMENT_HEADER.pack(PacketType.FRAGMENT, index, count, 1, 2) + b"chunk"
    assert reassembler.add(datagram, A, 0.0) is None
    assert reassembler.drops["fragment_bad_index"] == 1
    assert reassembler.pending_count == 0


@pytest.mark.parametrize("length", [0, 1, 15, FRAGMENT_HEADER_BYTES])
def test_fragment_without_a_chunk_is_counted_and_dropped(length: int) -> None:
    reassembler = Reassembler()
    datagram = (FRAGMENT_HEADER.pack(PacketType.FRAGMENT, 0, 2, 1, 2) + b"chunk")[:length]
    assert reassembler.add(datagram, A, 0.0) is None
    assert reassembler.drops["fragment_too_short"] == 1


def test_fragment_count_that_disagrees_with_earlier_fragments_is_dropped() -> None:
    packet = sealed_packet(3000)
    pieces = fragment(packet, 1000)
    reassembler = Reassembler()
    reassembler.add(pieces[0], A, 0.0)
    liar = bytes((PacketType.FRAGMENT, 1, 5, 0)) + pieces[1][4:]
    assert reassembler.add(liar, A, 0.0) is None
    assert reassembler.drops["fragment_count_mismatch"] == 1
    assert feed(reassembler, pieces[1:]) == [packet]


def test_fragments_from_two_sources_with_the_same_index_and_counter_do_not_mix() -> None:
    from_a = sealed_packet(3000, receiver_index=42, counter=9)
    from_b = sealed_packet(3000, receiver_index=42, counter=9)
    assert from_a[:16] == from_b[:16] and from_a != from_b
    pieces_a, pieces_b = fragment(from_a, 1000), fragment(from_b, 1000)
    reassembler = Reassembler()
    results = []
    for piece_a, piece_b in zip(pieces_a, pieces_b):
        results.append((reassembler.add(piece_a, A, 0.0), reassembler.add(piece_b, B, 0.0)))
    assert results[-1] == (from_a, from_b)
    assert all(r == (None, None) for r in results[:-1])


@SETTINGS
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(min_size=12, max_size=60)).map(
                lambda t: bytes((PacketType.FRAGMENT, t[0] % 4, t[1] % 4, 0)) + t[2]
            ),
        ),
        max_size=40,
    )
)
def test_random_bytes_never_raise(datagrams: list[bytes]) -> None:
    reassembler = Reassembler(max_pending_per_source=3, max_pending_bytes=300)
    for i, datagram in enumerate(datagrams):
        whole = reassembler.add(memoryview(datagram), A, i * 0.5)
        assert whole is None or whole[:4] == bytes((PacketType.TRANSPORT, 0, 0, 0))
        assert reassembler.pending_bytes <= 300
        reassembler.expire(i * 0.5)


@SETTINGS
@given(body=st.binary(min_size=1, max_size=20000), prefix=st.sampled_from([b"", b"\x05" + bytes(11)]))
def test_fragment_into_lays_out_the_fragments_as_equal_segments_each_after_the_prefix(body: bytes, prefix: bytes) -> None:
    packet = TRANSPORT_HEADER.pack(3, 77, 99) + body
    segment = DEFAULT_MAX_DATAGRAM_BYTES
    out = bytearray(MAX_FRAGMENTS * segment)
    length = fragment_into(packet, segment, out, prefix)
    laid = bytes(out[:length])
    pieces = [laid[i : i + segment] for i in range(0, length, segment)]
    assert all(len(p) == segment for p in pieces[:-1])
    assert all(p.startswith(prefix) for p in pieces)
    assert [p[len(prefix):] for p in pieces] == fragment(packet, segment - len(prefix))
    reassembler = Reassembler()
    results = [reassembler.add(p[len(prefix):], "peer", 0.0) for p in pieces]
    assert results[-1] == packet


def test_tiny_hostile_fragments_are_counted_with_their_overhead_and_cannot_fill_memory() -> None:
    reassembler = Reassembler()
    for n in range(50_000):
        # One-byte fragments of distinct never-completed packets, from many ports of one host.
        datagram = FRAGMENT_HEADER.pack(PacketType.FRAGMENT, 0, 2, n, n) + b"x"
        reassembler.add(datagram, ("198.18.9.9", 1024 + n % 30000), 0.0)
    assert reassembler.pending_count <= reassembler.max_pending_per_source  # one host, whatever its ports
    assert reassembler.pending_bytes <= reassembler.max_pending_bytes


# -- whole fragment sets inside one UDP_GRO run ----------------------------------------------------------


def gro_run(*packets: bytes, max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES) -> bytes:
    """What UDP_GRO hands over for these packets' fragments sent back to back: one buffer, every
    datagram max_datagram_bytes long but the run's last (each packet here fills its last fragment)."""
    out = bytearray(len(packets) * 70000)
    end = 0
    for packet in packets:
        end += fragment_into(packet, max_datagram_bytes, memoryview(out)[end:])  # type: ignore[arg-type]
    return bytes(out[:end])


def take_all(run: bytes, segment_bytes: int, reassembler: Reassembler) -> list[bytes | None]:
    """take_whole along the run, as NodeCore.segments_received walks it: a packet, or None for a lone datagram."""
    view, offset, out = memoryview(run), 0, []
    while offset < len(view):
        whole = reassembler.take_whole(view, offset, segment_bytes, A)
        if whole is None:
            out.append(None)
            offset += segment_bytes
        else:
            out.append(whole[0])
            offset += whole[1]
    return out


def test_a_run_of_whole_fragment_sets_gives_each_packet_joined_as_add_would() -> None:
    chunk = DEFAULT_MAX_DATAGRAM_BYTES - FRAGMENT_HEADER_BYTES
    first, second = sealed_packet(TRANSPORT_HEADER_BYTES + 45 * chunk, counter=1), sealed_packet(TRANSPORT_HEADER_BYTES + 3 * chunk, counter=2)
    run = gro_run(first, second)
    assert take_all(run, DEFAULT_MAX_DATAGRAM_BYTES, Reassembler()) == [first, second]
    # The same datagrams one by one through add() give the same packets.
    one_by_one = Reassembler()
    results = [one_by_one.add(run[o : o + DEFAULT_MAX_DATAGRAM_BYTES], A, 0.0) for o in range(0, len(run), DEFAULT_MAX_DATAGRAM_BYTES)]
    assert [r for r in results if r is not None] == [first, second]


def test_a_set_cut_by_the_run_end_or_begun_earlier_is_left_to_add() -> None:
    chunk = DEFAULT_MAX_DATAGRAM_BYTES - FRAGMENT_HEADER_BYTES
    packet = sealed_packet(TRANSPORT_HEADER_BYTES + 4 * chunk)
    run = gro_run(packet)
    reassembler = Reassembler()
    # Only the first three fragments in this run: nothing whole.
    assert reassembler.take_whole(memoryview(run[: 3 * DEFAULT_MAX_DATAGRAM_BYTES]), 0, DEFAULT_MAX_DATAGRAM_BYTES, A) is None
    # A run starting mid-set (its first datagram is fragment 1) is not a whole set either.
    assert reassembler.take_whole(memoryview(run), DEFAULT_MAX_DATAGRAM_BYTES, DEFAULT_MAX_DATAGRAM_BYTES, A) is None
    # Once fragment 0 is pending through add(), a whole-looking copy belongs to that reassembly.
    assert reassembler.add(run[:DEFAULT_MAX_DATAGRAM_BYTES], A, 0.0) is None
    assert reassembler.take_whole(memoryview(run), 0, DEFAULT_MAX_DATAGRAM_BYTES, A) is None


def test_a_set_with_a_foreign_or_misordered_fragment_is_not_whole() -> None:
    chunk = DEFAULT_MAX_DATAGRAM_BYTES - FRAGMENT_HEADER_BYTES
    a = gro_run(sealed_packet(TRANSPORT_HEADER_BYTES + 2 * chunk, counter=1))
    b = gro_run(sealed_packet(TRANSPORT_HEADER_BYTES + 2 * chunk, counter=2))
    seg = DEFAULT_MAX_DATAGRAM_BYTES
    mixed = a[:seg] + b[seg : 2 * seg]  # fragment 0 of one packet, fragment 1 of another
    swapped = a[seg : 2 * seg] + a[:seg]
    for run in (mixed, swapped):
        assert Reassembler().take_whole(memoryview(run), 0, seg, A) is None


def test_a_set_with_a_fragment_missing_in_the_middle_is_not_whole() -> None:
    chunk = DEFAULT_MAX_DATAGRAM_BYTES - FRAGMENT_HEADER_BYTES
    seg = DEFAULT_MAX_DATAGRAM_BYTES
    a = gro_run(sealed_packet(TRANSPORT_HEADER_BYTES + 4 * chunk, counter=1))
    whole_b = sealed_packet(TRANSPORT_HEADER_BYTES + 2 * chunk, counter=2)
    gap = a[: 2 * seg] + a[3 * seg :] + gro_run(whole_b)  # fragments 0, 1, 3 of one set, then the next set
    # Fragment 0's set would end where the next set begins: left to add(), one datagram at a time.
    assert take_all(gap, seg, Reassembler()) == [None, None, None, whole_b]
