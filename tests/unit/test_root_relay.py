"""The root's relay: envelopes go to the destination's most recent registration when the origin is
registered at the envelope's source address, within hops and budget; GRO runs go in one send; nodes
on TCP streams are relayed to but never handed out; hostile bytes are counted, never raised."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.relaying import RELAY_BURST_S, same_size_runs
from l2mesh.wire.packets import MAX_RELAY_HOPS, PacketType
from tests.unit.root_world import RootWorld

SEGMENT = 1444


def test_an_envelope_from_a_registered_origin_goes_as_is_to_the_destinations_newest_registration() -> None:
    world = RootWorld()
    a, b = world.node(1), world.node(2)
    world.now += 1
    b_moved = world.node(3, identity=b.client.identity)  # b re-registered from elsewhere since
    packet = a.client.envelope(b.node_id, b"end-to-end ciphertext")
    world.send(a, packet)
    assert world.sent_to(b_moved) == [packet] and world.sent_to(b) == []
    status = world.core.status()
    assert (status["relayed_packets"], status["relayed_bytes"]) == (1, len(packet))


def test_a_spoofed_origin_an_unregistered_target_and_too_many_hops_are_dropped_by_reason() -> None:
    world = RootWorld()
    a, b = world.node(1), world.node(2)
    mallory = world.node(3)
    world.send(mallory, mallory.client.envelope(b.node_id, b"x", origin=a.node_id))  # a's name, mallory's address
    world.send(a, a.client.envelope(0x0BADC0FFEE, b"x"))
    world.send(a, a.client.envelope(b.node_id, b"x", hops=MAX_RELAY_HOPS))
    world.send(a, a.client.envelope(b.node_id, b""))  # a bare header
    assert world.sent_to(b) == []
    assert world.drops["relay_spoofed_or_unregistered_source"] == 1
    assert world.drops["relay_target_unregistered"] == 1
    assert world.drops["relay_too_many_hops"] == 1
    assert world.drops["relay_malformed"] == 1


def test_an_origin_over_its_budget_is_dropped_until_the_bucket_refills() -> None:
    world = RootWorld(relay_limit_mbps=8)  # 1 MB/s, a bucket of RELAY_BURST_S of it
    a, b = world.node(1), world.node(2)
    burst_bytes = int(1_000_000 * RELAY_BURST_S)
    packet = a.client.envelope(b.node_id, bytes(988))
    for _ in range(burst_bytes // 1000 + 5):
        world.send(a, packet)
    forwarded = len(world.sent_to(b))
    assert forwarded == burst_bytes // 1000
    assert world.drops["relay_rate_limited"] == 5
    world.now += RELAY_BURST_S
    world.send(a, packet)
    assert len(world.sent_to(b)) == 1


def test_a_run_of_one_envelope_is_forwarded_in_one_segmented_send_others_left_to_the_datagram_path() -> None:
    world = RootWorld()
    a, b = world.node(1), world.node(2)
    header = a.client.envelope(b.node_id, b"")
    run = b"".join(header + bytes([i]) * (SEGMENT - 12) for i in range(5)) + header + b"tail"
    assert world.core.segments_received(memoryview(run), SEGMENT, a.endpoint, world.now) is True
    assert world.transmit.segmented == [(run, SEGMENT, b.endpoint)]
    assert world.core.status()["relayed_packets"] == 6
    mixed = header + bytes(SEGMENT - 12) + a.client.envelope(a.node_id, b"x")
    assert world.core.segments_received(memoryview(mixed), SEGMENT, a.endpoint, world.now) is False


def test_a_node_on_a_tcp_stream_is_relayed_to_but_its_stream_address_is_never_handed_out() -> None:
    world = RootWorld()
    a = world.node(1)
    streamed = world.node(2, stream=True, local_endpoints=[("192.168.7.7", 9993)])
    reply = world.lookup(a, streamed.node_id)
    assert reply.registered and list(reply.endpoints) == [("192.168.7.7", 9993)]
    [(_, hints)] = world.ask(a, a.client.meet(streamed.node_id, world.now))
    assert list(hints.endpoints) == [("192.168.7.7", 9993)]
    packet = a.client.envelope(streamed.node_id, b"over the stream")
    world.send(a, packet)
    assert packet in world.sent_to(streamed)
    streamed_packet = streamed.client.envelope(a.node_id, b"from the stream")
    world.send(streamed, streamed_packet)
    assert world.sent_to(a) == [streamed_packet]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), first=st.sampled_from([None, *PacketType]))
def test_hostile_datagrams_are_dropped_and_counted_never_raised(data: bytes, first: PacketType | None) -> None:
    world = _hostile_world
    packet = data if first is None else bytes([first]) + data
    world.core.datagram_received(memoryview(packet), ("198.18.66.2", 9993), world.now)
    world.core.datagram_received(memoryview(packet), ("198.18.66.2", 9993), world.now, stream=True)
    if len(packet) > 20:
        world.core.segments_received(memoryview(packet), 13, ("198.18.66.2", 9993), world.now)
    # The same bytes as a message over a real session (a registered node gone bad).
    world.send(_hostile_node, _hostile_node.client.seal(packet or b"\x00", world.now))


_hostile_world = RootWorld()
_hostile_node = _hostile_world.node(1)


@given(st.lists(st.integers(min_value=1, max_value=6), max_size=40))
def test_a_streams_datagrams_are_cut_into_runs_as_udp_gro_would_join_them(sizes: list[int]) -> None:
    datagrams = [bytes([i % 256]) * size for i, size in enumerate(sizes)]
    runs = same_size_runs(datagrams)
    assert [d for run in runs for d in run] == datagrams  # nothing lost, nothing reordered
    for run in runs:
        assert all(len(d) == len(run[0]) for d in run[:-1]) and len(run[-1]) <= len(run[0])
    for before, after in zip(runs, runs[1:]):
        # A run ends only where the next datagram could not join it.
        assert len(after[0]) > len(before[0]) or len(before[-1]) < len(before[0])

