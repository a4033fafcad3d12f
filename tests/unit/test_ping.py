"""`l2mesh ping` in the node core, sans-IO: a probe through the session, its reply, the path and round trip;
names resolved from the configs held. Driven through the harness's fake network and clock."""

from __future__ import annotations

import pytest

from l2mesh.errors import L2meshError
from l2mesh.node.ping import MAX_OUTSTANDING_PINGS, PingReply, Pings, resolve_node
from l2mesh.wire.messages import PathProbeReply
from tests.unit.harness import RELAY_AFTER_S, Member, World, controller_of, cut_between
from tests.unit.test_control_plane import POOL, authorized_members, exchange


def ping_and_wait(world: World, a: Member, b: Member, seconds: float = 5.0) -> PingReply | None:
    probe_id = a.core.ping(b.node_id, world.now)
    assert probe_id is not None
    world.settle()  # on the wire now, as the reactor sends at once (not at the next tick)
    answer: list[PingReply] = []

    def answered() -> bool:
        reply = a.core.pings.take(probe_id)
        if reply is not None:
            answer.append(reply)
        return bool(answer)

    world.run(seconds, until=answered)
    return answer[0] if answer else None


def test_a_ping_on_a_direct_path_reports_the_peers_endpoint_and_the_round_trip(world: World) -> None:
    _, (a, b) = authorized_members(world, 2)
    assert exchange(world, a, b)
    world.network.latency = lambda sent: 0.015  # 15 ms each way
    reply = ping_and_wait(world, a, b)
    assert reply is not None
    assert reply.path == "direct" and reply.endpoint == b.endpoint and reply.relay_id is None
    assert reply.rtt_ms == pytest.approx(30.0, abs=0.5)


def test_the_first_ping_without_a_session_waits_for_the_handshake_and_still_answers(world: World) -> None:
    _, (a, b) = authorized_members(world, 2)
    assert a.path_to(b) == "none"
    world.network.latency = lambda sent: 0.010
    reply = ping_and_wait(world, a, b)
    assert reply is not None and reply.path == "direct"
    # The handshake's round trip comes first: two round trips in all.
    assert reply.rtt_ms == pytest.approx(40.0, abs=1.0)
    reply = ping_and_wait(world, a, b)
    assert reply is not None and reply.rtt_ms == pytest.approx(20.0, abs=0.5)


def test_a_ping_through_the_relay_reports_the_relay_and_its_address(world: World) -> None:
    controller = controller_of(world)
    _, (a, b) = authorized_members(world, 2)
    world.network.rules.append(cut_between(a.endpoint, b.endpoint))
    reply = ping_and_wait(world, a, b, seconds=RELAY_AFTER_S + 3.0)
    assert reply is not None
    assert reply.path == "relay" and reply.relay_id == controller.node_id
    assert reply.endpoint == controller.endpoint
    assert a.path_to(b) == "relay"


def test_a_ping_to_no_peer_is_refused_and_an_unanswered_one_is_forgotten(world: World) -> None:
    _, (a, b) = authorized_members(world, 2)
    stranger = Member(99)
    assert a.core.ping(stranger.node_id, world.now) is None
    world.network.rules.append(lambda sent: True)  # everything lost
    probe_id = a.core.ping(b.node_id, world.now)
    assert probe_id is not None
    world.run(3.0)
    assert a.core.pings.take(probe_id) is None
    a.core.pings.forget(probe_id)
    assert not a.core.pings.outstanding


def test_a_reply_from_another_peer_or_to_a_path_probe_is_not_taken_for_a_ping() -> None:
    pings = Pings()
    probe_id, _ = pings.start(0x1111111111, 1.0)
    from_other = PathProbeReply.build({"probe_id": probe_id, "observed": ("198.18.1.2", 9993)})
    assert not pings.reply_received(0x2222222222, from_other, ("198.18.2.2", 9993), False, None, 1.5)
    unknown = PathProbeReply.build({"probe_id": probe_id ^ 1, "observed": ("198.18.1.2", 9993)})
    assert not pings.reply_received(0x1111111111, unknown, ("198.18.2.2", 9993), False, None, 1.5)
    assert not pings.reply_received(0x1111111111, b"\x08garbage", ("198.18.2.2", 9993), False, None, 1.5)
    assert pings.reply_received(0x1111111111, from_other, ("198.18.2.2", 9993), False, None, 1.5)
    reply = pings.take(probe_id)
    assert reply is not None and reply.rtt_ms == pytest.approx(500.0) and reply.path == "direct"
    assert pings.take(probe_id) is None


def test_pings_never_forgotten_by_their_caller_stay_bounded() -> None:
    pings = Pings()
    for n in range(3 * MAX_OUTSTANDING_PINGS):
        pings.start(0x1111111111, float(n))
    assert len(pings.outstanding) + len(pings.answered) <= MAX_OUTSTANDING_PINGS


def test_a_node_is_named_by_id_or_by_member_name_and_bad_names_fail_in_one_line(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    a, b, c = world.add_member(), world.add_member(), world.add_member()
    for member, name in ((a, "alpha"), (b, "Build Server #2"), (c, "twin")):
        member.join(network_id, controller)
        controller.authorize(network_id, member, name=name)
    world.run(1.0)
    configs = [state.config for state in a.core.networks.values() if state.config is not None]
    own = a.node_id
    assert resolve_node(f"{b.node_id:010x}", configs, own) == b.node_id
    assert resolve_node("Build Server #2", configs, own) == b.node_id
    assert resolve_node("build-server-2", configs, own) == b.node_id
    assert resolve_node("twin", configs, own) == c.node_id
    with pytest.raises(L2meshError, match="unknown node 'nobody'"):
        resolve_node("nobody", configs, own)
    with pytest.raises(L2meshError, match="is this node"):
        resolve_node(f"{own:010x}", configs, own)
    controller.authorize(network_id, b, name="twin")
    world.run(1.0)
    configs = [state.config for state in a.core.networks.values() if state.config is not None]
    with pytest.raises(L2meshError, match="names several members"):
        resolve_node("twin", configs, own)

