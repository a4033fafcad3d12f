"""Applying a netconf delta's result costs per member changed (issue 12: 10,000-member networks).

Membership hands the delta's MemberChanges along with the config it made;
Networks (switch ports, known peers) and the name table then touch only
those members. The property test holds the incremental path to what taking
the same config whole makes of it, for random change sequences.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import make_network_id
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.netconf_delta import ConfigDelta, DeltaBase, MemberChanges, apply_delta, content_digest, member_hash
from l2mesh.node import networks as networks_module
from l2mesh.node.core import NetworkConfigured, NodeCore
from l2mesh.node.name_table import NameTable
from l2mesh.node.peer_table import PeerTable
from tests.unit.harness import World, controller_of
from tests.unit.recording import NullTransmit

POOL = "10.147.17.0/24"
ME = Identity.generate()
NETWORK_ID = make_network_id(Identity.generate().node_id, 1)
OTHER_NETWORK_ID = make_network_id(Identity.generate().node_id, 2)
# A pool of identities members are drawn from (random keys: node ids are their hashes, nothing checks a key pair).
IDENTITIES = [PublicIdentity(os.urandom(32), os.urandom(32)) for _ in range(12)]


def member(index: int, variant: int = 0, bridge: bool = False, tags: frozenset[str] = frozenset()) -> MemberConfig:
    """Member index of the pool (-1: us); variant picks its address, endpoint and name (some names shared)."""
    identity = ME.public if index < 0 else IDENTITIES[index]
    number = index + 2
    return MemberConfig(
        identity.node_id, identity,
        ips=(f"10.147.{variant}.{number}/16",) + ((f"fd00::{variant}:{number}/64",) if variant % 2 else ()),
        endpoints=((f"198.18.{variant}.{number}", 9993),) if variant != 3 else (),
        name=("shared" if variant == 2 else f"m{number}-v{variant}") if variant != 4 else "",
        bridge=bridge, tags=tags,
    )


def delta_to(base: DeltaBase, changed: tuple[MemberConfig, ...], removed: tuple[int, ...]) -> tuple[DeltaBase, MemberChanges]:
    """The delta a controller would send for this change, applied as membership.py applies it."""
    config = base.config
    members = [m for m in config.members if m.node_id not in removed]
    by_id = {m.node_id: i for i, m in enumerate(members)}
    for new in changed:
        if new.node_id in by_id:
            members[by_id[new.node_id]] = new
        else:
            members.append(new)
    result = config.with_changes(revision=config.revision + 1, members=tuple(members))
    total = sum(member_hash(m, config.network_id) for m in members) % (1 << 256)
    delta = ConfigDelta(
        config.network_id, config.revision, config.revision + 1, config.timestamp_s, config.expires_s,
        content_digest(result, total), members=changed, removed=removed,
    )
    applied = apply_delta(base, delta)
    return applied, MemberChanges.of(base, applied.config, delta)


def first_config(members: list[MemberConfig], network_id: int = NETWORK_ID) -> NetworkConfig:
    return NetworkConfig(network_id=network_id, revision=1, issued_to=ME.node_id, members=(member(-1), *members))


def snapshot(core: NodeCore) -> dict[str, object]:
    """What a config makes of a node: switch ports and tables, known peers, peers' networks."""
    state = core.networks[NETWORK_ID]
    switch = state.switch
    return {
        "members": dict(switch.members),
        "owner_of_mac": dict(switch.owner_of_mac),
        "remote_ids": switch.remote_ids,
        "bridges": switch.bridges,
        "local_is_bridge": switch.local_is_bridge,
        "managed_arp": dict(switch.arp.managed),
        "tags": switch._tags(),
        "known": {
            n: (k.identity, k.endpoints, k.networks) for n, k in core.peer_table.known.items()
        },
        "known_at": {e: k.node_id for e, k in core.peer_table.known_at.items()},
        "peers": {n: p.networks for n, p in core.peer_table.by_id.items()},
    }


def names(table: NameTable) -> dict[str, tuple[str, ...]]:
    """What a table answers: every label with its addresses (each once), and its domain and serial."""
    return {
        "": (table.domain, str(table.serial)),
        **{label: tuple(dict.fromkeys(addresses)) for label, addresses in table.hosts.items()},
    }


# -- one member changed touches that member only ----------------------------------------------------------------------
@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the per-member steps of applying a config: switch ports built, peers known or cut off."""
    counted: Counter[str] = Counter()
    for name, owner, attribute in (
        ("port", networks_module, "_member_port"),
        ("know", PeerTable, "know"),
        ("unknow", PeerTable, "unknow"),
    ):
        original = getattr(owner, attribute)

        def counting(*args: object, _original: object = original, _name: str = name, **kwargs: object) -> object:
            counted[_name] += 1
            return _original(*args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(owner, attribute, counting)
    return counted


def test_a_one_member_delta_builds_one_port_and_knows_one_peer(calls: Counter[str]) -> None:
    core = NodeCore(ME, NullTransmit(), wall_clock_s=lambda: 0.0)
    config = first_config([member(i) for i in range(10)])
    assert core.apply_netconf(config)
    assert calls == Counter(port=11, know=10)
    ports_before = dict(core.networks[NETWORK_ID].switch.members)
    calls.clear()

    renamed = member(4, variant=1)
    base, changes = delta_to(DeltaBase.of(config), (renamed,), ())
    assert core.nets.apply_config(base.config, None, 0.0, changes)
    assert calls == Counter(port=1, know=1)
    ports = core.networks[NETWORK_ID].switch.members
    assert [n for n in ports if ports[n] is not ports_before[n]] == [renamed.node_id]
    event = core.events[-1]
    assert isinstance(event, NetworkConfigured) and event.changes is changes
    calls.clear()

    base, changes = delta_to(base, (), (IDENTITIES[7].node_id,))
    assert core.nets.apply_config(base.config, None, 0.0, changes)
    assert calls == Counter(unknow=1)
    assert IDENTITIES[7].node_id not in core.peer_table.known


def test_changes_from_another_config_than_the_one_held_are_taken_whole(calls: Counter[str]) -> None:
    core = NodeCore(ME, NullTransmit(), wall_clock_s=lambda: 0.0)
    config = first_config([member(i) for i in range(5)])
    base, changes = delta_to(DeltaBase.of(config), (member(2, variant=1),), ())
    other = first_config([member(i) for i in range(6)]).with_changes(revision=0)
    assert core.apply_netconf(other)  # held: not the delta's base
    calls.clear()
    assert core.nets.apply_config(base.config, None, 0.0, changes)
    assert calls["port"] > 1 and calls["know"] == 5
    event = core.events[-1]
    assert isinstance(event, NetworkConfigured) and event.changes is None


def test_a_delta_from_the_controller_reaches_the_member_as_its_changes(world: World, calls: Counter[str]) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    members = [world.add_member() for _ in range(4)]
    for each in members:
        each.join(network_id, controller)
        controller.authorize(network_id, each)
    world.run(1.0)
    members[0].core.events.clear()
    calls.clear()
    controller.set_ips(network_id, members[2], "10.147.17.99")
    world.run(0.5)
    configured = [e for e in members[0].core.events if isinstance(e, NetworkConfigured)]
    assert len(configured) == 1 and configured[0].changes is not None
    assert configured[0].changes.node_ids == {members[2].node_id}
    (before,) = configured[0].changes.before  # what the name table takes out
    assert before.node_id == members[2].node_id and before.ips != ("10.147.17.99/24",)
    # Every member that applied it built one port (the changed member's) and knew one peer again.
    assert calls["port"] == len(members) and calls["know"] == len(members) - 1


# -- incremental == whole, for random change sequences ---------------------------------------------------------------
TAGS = st.sets(st.sampled_from(["web", "db"]), max_size=2).map(frozenset)
CHANGE = st.one_of(
    st.tuples(st.just("set"), st.integers(-1, len(IDENTITIES) - 1), st.integers(0, 4), st.booleans(), TAGS),
    st.tuples(st.just("remove"), st.integers(0, len(IDENTITIES) - 1)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.dictionaries(st.integers(0, len(IDENTITIES) - 1), st.integers(0, 4), max_size=10),  # index: variant
    steps=st.lists(st.lists(CHANGE, min_size=0, max_size=4), min_size=1, max_size=6),
    on_other_network=st.sets(st.integers(0, len(IDENTITIES) - 1), max_size=4),
    with_rules=st.booleans(),
)
def test_following_changes_ends_where_taking_each_config_whole_does(
    start: dict[int, int], steps: list[list[tuple]], on_other_network: set[int], with_rules: bool  # type: ignore[type-arg]
) -> None:
    from l2mesh.rules.syntax import parse_rules

    rules = parse_rules("drop src-tag db dst-tag web\naccept\n") if with_rules else parse_rules("")
    config = first_config([member(i, variant) for i, variant in sorted(start.items())]).with_changes(rules=rules)
    other = first_config([member(i, variant=3) for i in sorted(on_other_network)], OTHER_NETWORK_ID)
    following, whole = (NodeCore(ME, NullTransmit(), wall_clock_s=lambda: 0.0) for _ in range(2))
    for core in (following, whole):
        assert core.apply_netconf(other) and core.apply_netconf(config)
    table = NameTable.from_config(config)
    base = DeltaBase.of(config)
    for step in steps:
        changed: dict[int, MemberConfig] = {}
        removed: set[int] = set()
        for change in step:
            if change[0] == "set":
                _, index, variant, bridge, tags = change
                new = member(index, variant, bridge, tags)
                changed[new.node_id] = new
                removed.discard(new.node_id)
            else:
                node_id = IDENTITIES[change[1]].node_id
                removed.add(node_id)
                changed.pop(node_id, None)
        removed.discard(ME.node_id)
        base, changes = delta_to(base, tuple(changed.values()), tuple(sorted(removed)))
        assert following.nets.apply_config(base.config, None, 0.0, changes)
        assert whole.apply_netconf(base.config)
        table.apply(changes)
        assert snapshot(following) == snapshot(whole)
        assert names(table) == names(NameTable.from_config(base.config))


def test_a_name_three_members_share_answers_for_those_left_as_each_goes() -> None:
    config = first_config([member(i, variant=2) for i in range(3)])  # all three named "shared"
    table = NameTable.from_config(config)
    base = DeltaBase.of(config)
    for index in range(3):
        base, changes = delta_to(base, (), (IDENTITIES[index].node_id,))
        table.apply(changes)
        assert names(table) == names(NameTable.from_config(base.config))
    assert "shared" not in table.hosts


def test_only_routes_other_than_default_ones_ask_where_the_underlay_goes() -> None:
    from l2mesh.managed_routes import route_from_json
    from l2mesh.node.join_options import JoinOptions
    from l2mesh.node.route_plan import NO_ROUTES, needs_underlay_hosts, plan_routes

    config = first_config([member(i) for i in range(3)])
    default = route_from_json({"target": "0.0.0.0/0", "via": "10.147.0.3"})
    lan = route_from_json({"target": "192.168.50.0/24", "via": "10.147.0.3"})
    assert not needs_underlay_hosts(None) and not needs_underlay_hosts(config)
    assert not needs_underlay_hosts(config.with_changes(routes=(default,)))
    assert needs_underlay_hosts(config.with_changes(routes=(default, lan)))
    assert plan_routes(config, ME.node_id, JoinOptions()) == NO_ROUTES
    assert plan_routes(config.with_changes(routes=(lan,)), ME.node_id, JoinOptions()).install == (lan,)


def test_a_name_table_follows_a_delta_made_after_a_refresh_it_was_not_told_of() -> None:
    config = first_config([member(i) for i in range(4)])
    table = NameTable.from_config(config)
    refreshed = config.with_changes(timestamp_s=60.0, expires_s=120.0)  # applied without an event: same content
    base, changes = delta_to(DeltaBase.of(refreshed), (member(1, variant=2),), (IDENTITIES[3].node_id,))
    assert changes.applies_to(config) and not changes.applies_to(first_config([member(i) for i in range(3)]))
    table.apply(changes)
    assert table.config is base.config
    assert names(table) == names(NameTable.from_config(base.config))
