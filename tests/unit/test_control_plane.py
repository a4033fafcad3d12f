"""The control plane without root: NodeCores and a ControllerCore on one fake network and clock.

Membership and netconf requests and pushes, deauthorization, a controller restart, and the path
decisions the controller takes part in (relay fallback, hole punching), driven only through the
harness (tests/unit/harness.py), which alone knows the cores' entry points. Everything here runs
in fake time: a minute of it takes milliseconds.
"""

from __future__ import annotations

from tests.unit.harness import (
    DIRECT_DEAD_AFTER_S,
    DIRECT_RETRY_S,
    NETCONF_ANSWER_TIMEOUT_S,
    NETCONF_REFRESH_S,
    RELAY_AFTER_S,
    Member,
    NatFilter,
    Sent,
    World,
    controller_of,
    cut_between,
)
from l2mesh.wire.packets import PacketType

TRANSPORT = PacketType.TRANSPORT

POOL = "10.147.17.0/24"


def authorized_members(world: World, count: int, behind_nat: bool = False) -> tuple[int, list[Member]]:
    """A private network with `count` members that joined and were authorized, one second ago."""
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    members = [world.add_member() for _ in range(count)]
    if behind_nat:
        world.behind_nat(*members)
    for member in members:
        member.join(network_id, controller)
        controller.authorize(network_id, member)
    world.run(1.0)
    assert all(m.status() == "OK" for m in members)
    return network_id, members


def nat_of(world: World) -> NatFilter:
    return next(rule for rule in world.network.rules if isinstance(rule, NatFilter))


def exchange(world: World, a: Member, b: Member, payload: bytes = b"ping") -> bool:
    """a sends b one frame and b answers; True if both arrived within one tick."""
    to_b, to_a = a.frame_to(b, payload), b.frame_to(a, payload + b"-reply")
    a.send(to_b)
    world.run(0.1)
    b.send(to_a)
    world.run(0.1)
    return b.frames()[-1:] == [to_b] and a.frames()[-1:] == [to_a]


# -- membership -------------------------------------------------------------------------------------------


def test_joining_member_is_requesting_then_denied_on_a_private_network_until_authorized_then_ok_with_a_pool_ip(
    world: World,
) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    member = world.add_member()
    member.join(network_id, controller)
    assert member.status() == "REQUESTING" and member.config() is None
    # The controller's keys are fetched, a session opened, the config asked for: refused, not yet authorized.
    world.settle()
    assert member.status() == "ACCESS_DENIED"
    assert member.config() is None and not member.peer_ids()
    listed = controller.member(network_id, member)
    assert listed["known"] and not listed["authorized"] and listed["online"]
    # Authorized: the push arrives with no time passing, with the first pool address.
    controller.authorize(network_id, member)
    world.settle()
    assert member.status() == "OK"
    assert member.ips() == ("10.147.17.1/24",)
    assert member.listed() == {member.node_id}
    # The periodic refresh keeps it OK and changes nothing.
    world.run(60.0)
    assert member.status() == "OK" and member.ips() == ("10.147.17.1/24",)
    assert controller.drops == {}


def test_authorizing_a_second_member_pushes_it_to_the_first_and_frames_cross_directly(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    first, second = world.add_member(), world.add_member()
    first.join(network_id, controller)
    controller.authorize(network_id, first)
    world.settle()
    assert first.listed() == {first.node_id}
    second.join(network_id, controller)
    world.settle()
    assert second.status() == "ACCESS_DENIED"
    assert first.listed() == {first.node_id}  # an unauthorized member is in nobody's config
    controller.authorize(network_id, second)
    world.settle()
    assert first.listed() == second.listed() == {first.node_id, second.node_id}
    assert {first.ips(), second.ips()} == {("10.147.17.1/24",), ("10.147.17.2/24",)}
    assert exchange(world, first, second)
    assert first.path_to(second) == second.path_to(first) == "direct"


def test_public_network_admits_a_member_at_once_with_a_pool_address(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL], private=False)
    member = world.add_member()
    member.join(network_id, controller)
    world.settle()
    assert member.status() == "OK" and member.ips() == ("10.147.17.1/24",)
    assert controller.member(network_id, member)["authorized"]


def test_preauthorized_member_with_a_manual_ip_is_ok_on_its_first_request(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[])
    member = world.add_member()
    controller.authorize(network_id, member, ip="10.147.30.1")
    assert not controller.member(network_id, member)["known"]
    member.join(network_id, controller)
    world.settle()
    assert member.status() == "OK" and member.ips() == ("10.147.30.1/24",)
    assert controller.sent.get("access_denied", 0) == 0


def test_joining_a_network_the_controller_does_not_have_ends_in_not_found(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network()
    member = world.add_member()
    member.join(network_id + 1, controller)  # same controller, network number it never created
    world.settle()
    assert member.status() == "NOT_FOUND" and member.config() is None


def test_leaving_forgets_the_network_and_the_controller_but_peers_keep_the_member_until_deauthorized(
    world: World,
) -> None:
    network_id, (a, b) = authorized_members(world, 2)
    assert exchange(world, a, b)
    a.leave(network_id)
    assert a.status() is None and not a.peer_ids(with_controllers=True)
    world.run(30.0)
    assert a.node_id in b.listed()  # leaving is local; who is a member stays the admin's call


# -- deauthorization -------------------------------------------------------------------------------------------


def test_deauthorized_member_is_dropped_by_every_peer_within_one_push(world: World) -> None:
    controller = controller_of(world)
    network_id, (m1, m2, m3) = authorized_members(world, 3)
    for a, b in ((m1, m2), (m1, m3), (m2, m3)):
        assert exchange(world, a, b)
    controller.deauthorize(network_id, m3)
    world.settle()  # the push, and nothing else: no time passes
    for peer in (m1, m2):
        assert peer.listed() == {m1.node_id, m2.node_id}
        assert m3.node_id not in peer.peer_ids()
    assert m3.status() == "ACCESS_DENIED" and m3.config() is None and not m3.peer_ids()
    assert exchange(world, m1, m2, b"still")


def test_deauthorized_member_that_missed_its_own_push_is_still_refused_by_every_peer(world: World) -> None:
    controller = controller_of(world)
    network_id, (m1, m2, m3) = authorized_members(world, 3)
    for a, b in ((m3, m1), (m3, m2)):
        assert exchange(world, a, b)
    # m3 never hears of its deauthorization: it keeps its old config and keys and goes on sending.
    world.network.rules.append(lambda sent: sent.sender is controller and sent.address == m3.endpoint)
    controller.deauthorize(network_id, m3)
    world.settle()
    assert m3.status() == "OK" and m3.listed() == {m1.node_id, m2.node_id, m3.node_id}
    frames_before = {m1: len(m1.frames()), m2: len(m2.frames())}
    log_start = len(world.network.log)
    for second in range(5):
        m3.send(m3.frame_to(m1, b"let me in"))
        m3.send(m3.frame_to(m2, b"let me in"))
        world.run(1.0)
    assert len(m1.frames()) == frames_before[m1] and len(m2.frames()) == frames_before[m2]
    assert m1.drops["transport_rejected"] >= 1 and m2.drops["transport_rejected"] >= 1
    # Nothing from the peers reaches m3 any more: not an answer, not a handshake.
    later: list[Sent] = world.network.log[log_start:]
    assert not [s for s in later if s.sender in (m1, m2) and s.address == m3.endpoint]


# -- controller restart and outage -------------------------------------------------------------------------------


def test_after_a_controller_restart_members_rerequest_and_pushes_reach_them_again(world: World) -> None:
    controller = controller_of(world)
    network_id, (a, b) = authorized_members(world, 2)
    world.run(30.0)
    assert world.restart_controller(greet=True) == 2
    # A new process with no sessions: the greeting brings both members back at once (see the next test).
    world.run(NETCONF_ANSWER_TIMEOUT_S + 1.0, until=lambda: controller.online_members() == 2)
    controller.set_ips(network_id, a, "10.147.17.77")
    world.settle()
    assert a.ips() == ("10.147.17.77/24",)
    assert b.config() is not None and b.config().member(a.node_id).ips == ("10.147.17.77/24",)
    # Nothing was lost across the restart, and a newcomer is served as before.
    newcomer = world.add_member()
    newcomer.join(network_id, controller)
    controller.authorize(network_id, newcomer)
    world.settle()
    assert newcomer.status() == "OK" and newcomer.ips() == ("10.147.17.1/24",)  # the lowest free: a gave it up
    assert a.listed() == b.listed() == {a.node_id, b.node_id, newcomer.node_id}


def test_greeting_after_a_restart_makes_members_rerequest_at_once(world: World) -> None:
    controller = controller_of(world)
    network_id, (a, b) = authorized_members(world, 2)
    world.restart_controller(greet=True)
    world.run(0.5)
    assert controller.online_members() == 2


def test_without_a_greeting_members_come_back_only_on_their_own_refresh(world: World) -> None:
    controller = controller_of(world)
    authorized_members(world, 2)
    world.run(30.0)
    world.restart_controller(greet=False)
    world.run(NETCONF_ANSWER_TIMEOUT_S + 1.0)
    assert controller.online_members() == 0
    world.run(NETCONF_REFRESH_S + NETCONF_ANSWER_TIMEOUT_S + 1.0, until=lambda: controller.online_members() == 2)


def test_members_keep_forwarding_on_their_configs_while_the_controller_is_down(world: World) -> None:
    controller = controller_of(world)
    network_id, (a, b) = authorized_members(world, 2)
    world.down.add(controller)
    for _ in range(6):
        world.run(10.0)
        assert a.status() == b.status() == "OK"
        assert exchange(world, a, b)
    world.down.discard(controller)
    world.restart_controller(greet=True)
    # After a minute of silence the members' handshakes to it are backed off: they resync within seconds.
    world.run(10.0, until=lambda: controller.online_members() == 2)


# -- paths: relay and hole punching ----------------------------------------------------------------------------------


def test_members_whose_direct_path_drops_everything_end_up_on_the_relay_and_still_exchange_frames(world: World) -> None:
    controller = controller_of(world)
    network_id, (a, b) = authorized_members(world, 2)
    world.network.rules.append(cut_between(a.endpoint, b.endpoint))
    frame = a.frame_to(b, b"first")
    a.send(frame)
    # Handshake retries go direct (lost) until RELAY_AFTER_S, then also through the controller.
    took_s = world.run(5.0, until=lambda: b.frames() == [frame] and a.path_to(b) == b.path_to(a) == "relay")
    assert took_s >= RELAY_AFTER_S
    relayed_before = controller.relayed_packets
    for n in range(10):
        assert exchange(world, a, b, b"over the relay %d" % n)
    assert controller.relayed_packets >= relayed_before + 20
    assert a.path_to(b) == b.path_to(a) == "relay"


def test_a_direct_path_that_goes_silent_fails_over_to_the_relay_and_back_once_healed(world: World) -> None:
    network_id, (a, b) = authorized_members(world, 2)
    assert exchange(world, a, b)
    assert a.path_to(b) == b.path_to(a) == "direct"
    cut = cut_between(a.endpoint, b.endpoint)
    world.network.rules.append(cut)

    def both(path: str) -> bool:
        exchange(world, a, b, b"keep talking")
        return a.path_to(b) == b.path_to(a) == path

    world.run(DIRECT_DEAD_AFTER_S + 2.0, until=lambda: both("relay"))
    assert exchange(world, a, b, b"via the relay")
    world.network.rules.remove(cut)
    # From the relay, direct candidates are re-probed every DIRECT_RETRY_S.
    world.run(2 * DIRECT_RETRY_S + 2.0, until=lambda: both("direct"))
    assert exchange(world, a, b, b"direct again")


def test_rendezvous_makes_two_members_behind_nat_filters_go_direct_at_once(world: World) -> None:
    controller = controller_of(world)
    network_id, (a, b) = authorized_members(world, 2, behind_nat=True)
    nat = nat_of(world)
    frame = a.frame_to(b, b"through the nat")
    a.send(frame)
    world.settle()
    # a's handshake hit b's NAT; the controller told both to send to each other; b's went through.
    assert nat.refused and nat.refused[0].sender is a and nat.refused[0].address == b.endpoint
    assert controller.sent["rendezvous"] >= 1
    assert b.frames() == [frame]
    assert a.path_to(b) == b.path_to(a) == "direct"
    assert controller.relayed_packets == 0
    world.run(10.0)
    assert exchange(world, a, b) and a.path_to(b) == b.path_to(a) == "direct"


def test_without_the_controller_two_members_behind_nat_filters_never_meet(world: World) -> None:
    controller = controller_of(world)
    network_id, (a, b) = authorized_members(world, 2, behind_nat=True)
    nat = nat_of(world)
    world.down.add(controller)
    a.send(a.frame_to(b, b"knock knock"))
    world.run(10.0)
    assert b.frames() == [] and a.path_to(b) == "none"
    assert all(sent.sender is a for sent in nat.refused)


def test_a_member_that_missed_the_rendezvous_hint_still_answers_through_the_relay(world: World) -> None:
    controller = controller_of(world)
    network_id, (a, b) = authorized_members(world, 2)
    world.network.rules.append(cut_between(a.endpoint, b.endpoint))
    # Everything the controller sends b in its session (the punch hint among it) is lost; relayed packets pass.
    world.network.rules.append(lambda sent: sent.sender is controller and sent.address == b.endpoint
                               and sent.kind == TRANSPORT)
    frame = a.frame_to(b, b"first")
    a.send(frame)
    world.run(5.0, until=lambda: b.frames() == [frame])
    answer = b.frame_to(a, b"answer")
    b.send(answer)
    world.run(10.0, until=lambda: answer in a.frames())
