"""Cookies end to end on the in-memory network (tests/unit/harness.py): through the controller's relay, and with the
controller itself under load. Responders are made "under load" from the first initiation (threshold 0)."""

from __future__ import annotations

from l2mesh.crypto.cookie import CookieChecker
from l2mesh.session import SessionTable
from l2mesh.wire.packets import PacketType
from tests.unit.harness import World, cut_between
from tests.unit.test_controller_relay import relay_world


def always_under_load(table: SessionTable) -> None:
    table.cookies = CookieChecker(table.static_public, under_load_initiations_per_s=0)


def test_a_relayed_initiation_under_load_gets_its_cookie_back_through_the_relay(world: World) -> None:
    controller, a, b = relay_world(world)
    world.network.rules.append(cut_between(a.endpoint, b.endpoint))
    always_under_load(b.core.table)
    log_start = len(world.network.log)
    frame = a.frame_to(b, b"through the relay, with a cookie")
    a.send(frame)
    world.run(10.0, until=lambda: b.frames() == [frame])
    assert b.frames() == [frame] and a.path_to(b) == "relay"
    assert b.core.drops["handshake_cookie_sent"] >= 1 and a.core.drops["cookie_reply_rejected"] == 0
    relayed_cookies = [s for s in world.network.log[log_start:] if s.sender is b and s.kind == PacketType.RELAY
                       and s.data[12] == PacketType.COOKIE_REPLY]
    assert relayed_cookies


def test_members_get_through_to_a_controller_under_load(world: World) -> None:
    controller = world.controller
    assert controller is not None
    always_under_load(controller.core.clients.table)
    network_id = controller.create_network(pools=["10.147.18.0/24"])
    member = world.add_member()
    member.join(network_id, controller)
    controller.authorize(network_id, member)
    world.run(10.0, until=lambda: member.status() == "OK")
    assert member.status() == "OK"
    assert controller.drops["handshake_cookie_sent"] >= 1
