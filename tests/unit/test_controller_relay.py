"""The controller's relay: it forwards envelopes between authorized members only, and a run of
same-envelope segments (UDP GRO) in one segmented send. Members reach the controller by real
handshakes and netconf requests (tests/unit/harness.py)."""

from __future__ import annotations

from tests.unit.harness import Controller, Member, World, cut_between
from l2mesh.wire.packets import RELAY_HEADER, PacketType

SEGMENT = 1444


def relay_world(world: World, authorize_b: bool = True) -> tuple[Controller, Member, Member]:
    """Members a (authorized) and b (authorized or not) that joined and talk to the controller."""
    controller = world.controller
    assert controller is not None
    network_id = controller.create_network(pools=["10.147.17.0/24"])
    a, b = world.add_member(), world.add_member()
    for member, authorized in ((a, True), (b, authorize_b)):
        member.join(network_id, controller)
        if authorized:
            controller.authorize(network_id, member)
    world.run(1.0)
    assert a.status() == "OK" and b.status() == ("OK" if authorize_b else "ACCESS_DENIED")
    assert controller.online_members() == 2
    return controller, a, b


def envelope(src: Member, dst: Member) -> bytes:
    return RELAY_HEADER.pack(PacketType.RELAY, 0, dst.node_id.to_bytes(5, "big"), src.node_id.to_bytes(5, "big"))


def test_a_run_of_one_envelope_is_forwarded_in_one_segmented_send(world: World) -> None:
    controller, a, b = relay_world(world)
    relayed_before = controller.relayed_packets
    run = b"".join(envelope(a, b) + bytes([i]) * (SEGMENT - 12) for i in range(5)) + envelope(a, b) + b"tail"
    assert controller.receive_segments(run, SEGMENT, a.endpoint) is True
    assert controller.transmit.segmented == [(run, SEGMENT, b.endpoint)]
    assert controller.relayed_packets == relayed_before + 6


def test_a_run_with_different_envelopes_is_left_to_the_per_datagram_path(world: World) -> None:
    controller, a, b = relay_world(world)
    run = envelope(a, b) + bytes(SEGMENT - 12) + envelope(b, a) + b"x"
    assert controller.receive_segments(run, SEGMENT, a.endpoint) is False
    assert controller.transmit.segmented == []


def test_relay_refuses_a_spoofed_sender_address_and_an_unauthorized_target(world: World) -> None:
    controller, a, b = relay_world(world, authorize_b=False)
    world.settle()
    packet = envelope(a, b) + b"ciphertext"
    controller.receive(packet, ("198.18.9.9", 1), world.now)  # not where a's session is
    controller.receive(packet, a.endpoint, world.now)  # b is not authorized
    assert controller.transmit.datagrams == []
    assert controller.drops["relay_spoofed_or_unknown_source"] == 1
    assert controller.drops["relay_not_authorized"] == 1


def test_a_full_mtu_frame_crosses_the_relay_intact_in_enveloped_fragments(world: World) -> None:
    controller, a, b = relay_world(world)
    world.network.rules.append(cut_between(a.endpoint, b.endpoint))
    first = a.frame_to(b, b"hello?")
    a.send(first)
    world.run(5.0, until=lambda: a.path_to(b) == "relay" and b.frames() == [first])
    big = a.frame_to(b, bytes(range(256)) * 10 + bytes(240))
    assert len(big) == 2814
    log_start = len(world.network.log)
    a.send(big)
    world.settle()
    assert b.frames() == [first, big]
    # The sealed frame, fragmented, each fragment in its own envelope to the controller.
    pieces = [s for s in world.network.log[log_start:] if s.sender is a and len(s.data) > 1000]
    assert len(pieces) == 2
    assert all(s.kind == PacketType.RELAY and s.address == controller.endpoint and len(s.data) <= SEGMENT for s in pieces)
