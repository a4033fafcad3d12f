"""A member's receive path under a handshake flood (NodeCore on the in-memory network of tests/unit/harness.py)."""

from __future__ import annotations

import os

from l2mesh.crypto.cookie import UNDER_LOAD_INITIATIONS_PER_S, CookieGenerator
from l2mesh.wire.packets import HANDSHAKE_INIT_BYTES, MAC_BYTES, PacketType
from tests.unit.test_core import NET, Mesh, established, udp_frame


def flood(target_static: bytes, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    """Initiations with random Noise and a correct mac1 (the flooder knows the key), each from its own address."""
    out = []
    for i in range(count):
        body = bytes([PacketType.HANDSHAKE_INIT, 0, 0, 0]) + os.urandom(HANDSHAKE_INIT_BYTES - 4 - 2 * MAC_BYTES)
        out.append((CookieGenerator(target_static).add_macs(body, 0.0), (f"198.19.{i // 200}.{i % 200 + 1}", 5000 + i)))
    return out


def test_garbage_initiations_are_counted_as_bad_mac1_and_answered_with_nothing() -> None:
    mesh = Mesh(2)
    member = mesh.members[0]
    for i in range(50):
        garbage = bytes([PacketType.HANDSHAKE_INIT]) + os.urandom(HANDSHAKE_INIT_BYTES - 1)
        member.receive(garbage, ("198.19.0.1", 6000 + i), 1.0)
    assert member.core.drops["handshake_bad_mac1"] == 50
    assert member.transmit.datagrams == []


def test_a_restarted_member_gets_through_a_flood_one_cookie_round_trip_later() -> None:
    mesh = Mesh(2)
    m1, m2 = mesh.members
    established(mesh, m1, m2)
    static = m2.identity.public.x25519_public
    for packet, source in flood(static, UNDER_LOAD_INITIATIONS_PER_S + 50):
        m2.receive(packet, source, 5.0)
    assert m2.core.drops["handshake_cookie_sent"] == 50  # past the load threshold: cookies, no DH
    m2.transmit.datagrams.clear()  # the cookie replies went to the flood's addresses
    m1 = mesh.restart(m1)
    frame = udp_frame(m1, m2.mac())
    m1.core.frame_from_tap(NET, frame, 5.0)
    delivered = mesh.deliver(5.0)
    assert [s.kind for s in delivered] == [PacketType.HANDSHAKE_INIT, PacketType.COOKIE_REPLY]
    assert m2.frames() == []
    m1.core.tick(5.5)  # the first retry carries mac2
    mesh.deliver(5.5)
    assert m2.frames() == [frame]
    assert m2.core.drops["handshake_cookie_sent"] == 51 and m1.core.drops["cookie_reply_rejected"] == 0
