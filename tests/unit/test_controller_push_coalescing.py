"""Push coalescing (issue 12): a burst of member joins costs each online member one or two pushes, not one per join;
a lone change, and any admin change, is still pushed at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from l2mesh.controller.core import PUSH_COALESCE_S
from tests.unit.harness import Member, World, controller_of

BURST = 100


@dataclass(eq=False)
class CountingMember(Member):
    """A member that counts how many times its config changed (each push it applied)."""

    configs_applied: int = 0
    _last: object = field(default=None, repr=False)

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        super().receive(data, source, now)
        if self.network_id is not None and self.config() is not self._last:
            self._last = self.config()
            self.configs_applied += 1


def online(world: World, network_id: int, count: int, first: int = 1) -> list[CountingMember]:
    controller = controller_of(world)
    members = []
    for number in range(first, first + count):
        member = CountingMember(number, clock=world.clock)
        world.plug_in(member)
        controller.authorize(network_id, member)
        members.append(member)
    for member in members:
        member.join(network_id, controller)
    return members


def test_a_burst_of_joins_reaches_each_online_member_in_at_most_two_pushes(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=["10.147.0.0/16"])
    watchers = online(world, network_id, 3)
    world.run(2.0, until=lambda: all(len(m.listed()) == 3 for m in watchers))
    world.run(2 * PUSH_COALESCE_S)  # the window of the last join's push is over
    for m in watchers:
        m.configs_applied = 0
    sent_before = controller.sent
    burst = online(world, network_id, BURST, first=10)
    world.settle()  # every join committed at the same instant: one push at once, the rest held back
    assert all(m.status() == "OK" for m in burst)  # each joiner got its own config at once all the same
    assert all(m.configs_applied == 1 for m in watchers)
    world.run(2 * PUSH_COALESCE_S)
    everyone = watchers + burst
    last = controller.core.directory.networks[network_id].revision
    assert all(len(m.listed()) == 3 + BURST and m.config().revision == last for m in everyone)  # type: ignore[union-attr]
    assert all(m.configs_applied <= 2 for m in watchers)
    sent = controller.sent
    pushed = sum(sent.get(k, 0) - sent_before.get(k, 0) for k in ("netconf", "netconf_delta"))
    # A joiner gets its own answer, then the window's push (a delta from the revision it got, or a whole config
    # when that is older than the history keeps). One push per join would be ~BURST^2 / 2.
    assert pushed <= 3 * len(everyone)


def test_a_lone_join_and_an_admin_change_right_after_a_push_go_out_at_once(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=["10.147.0.0/16"])
    watchers = online(world, network_id, 2)
    world.run(2.0, until=lambda: all(len(m.listed()) == 2 for m in watchers))
    world.run(2 * PUSH_COALESCE_S)
    late = online(world, network_id, 1, first=5)[0]
    world.settle()  # no time passes: the join's push is not held back
    assert all(late.node_id in m.listed() for m in watchers)
    controller.deauthorize(network_id, watchers[1])  # inside the window of that push: an admin change all the same
    world.settle()
    assert watchers[1].node_id not in watchers[0].listed() and watchers[1].node_id not in late.listed()
    assert watchers[1].status() == "ACCESS_DENIED"
