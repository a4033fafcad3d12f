"""Netconf deltas: a member holding a recent revision gets what changed, signed once for every member.

Through the harness (controller and member cores on the fake network): a change reaches members as
one delta and leaves them with what a fresh full config holds; a member that missed one asks and
gets the rest; after a controller restart (nothing kept) full configs again. At the membership
seam: forged, tampered, malformed and diverging deltas are dropped and counted. And a property over
the controller's history alone: whatever the admin changes and however far behind a member is, the
deltas it is sent take it to exactly what a fresh full config holds.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2mesh.controller import deltas
from l2mesh.controller.issuing import Issuer
from l2mesh.controller.model import Member as StoredMember
from l2mesh.controller.model import Network
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import is_reserved_node_id, make_network_id
from l2mesh.netconf import NetconfError, NetworkConfig
from l2mesh.netconf_delta import ConfigDelta, DeltaBase, apply_delta, content_digest, members_sum, verify_signed_delta
from l2mesh.node.decisions import ApplyConfig, SendMessage
from l2mesh.wire.messages import NetconfDelta, NetconfRequest
from l2mesh.node.membership import NETCONF_FULL_REFRESH_S
from tests.unit.harness import NETCONF_REFRESH_S, Member, World, controller_of

POOL = "10.147.17.0/24"


def content(config: NetworkConfig | None) -> NetworkConfig:
    """What a member acts on: everything but who it was issued to and when, and the order of members.

    (Members are listed in the order they entered the config as this controller process saw it; a
    restarted controller lists them in its storage's order. Nothing depends on it.)
    """
    assert config is not None
    members = tuple(sorted(config.members, key=lambda m: m.node_id))
    return config.with_changes(issued_to=0, timestamp_s=0.0, expires_s=0.0, members=members)


def network_of(world: World, count: int) -> tuple[int, list[Member]]:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    members = [world.add_member() for _ in range(count)]
    for member in members:
        member.join(network_id, controller)
        controller.authorize(network_id, member)
    world.run(1.0)
    assert all(m.status() == "OK" for m in members)
    return network_id, members


def fresh_full_content(world: World, network_id: int) -> NetworkConfig:
    """What a member that holds nothing is sent now: a new member process, joining from scratch."""
    restarted = world.restart_member(world.members[0])
    restarted.join(network_id, controller_of(world))
    world.run(1.0)
    return content(restarted.config())


def test_a_change_reaches_every_member_as_one_delta_signed_once(world: World) -> None:
    network_id, members = network_of(world, 4)
    controller = controller_of(world)
    before = Counter(controller.sent)
    controller.set_ips(network_id, members[1], "10.147.17.99")
    world.run(0.5)
    sent = Counter(controller.sent) - before
    assert sent["netconf_delta"] == 4 and sent["netconf_delta_signed"] == 1 and sent["netconf"] == 0
    revision = controller.core.directory.networks[network_id].revision
    assert {m.config().revision for m in members} == {revision}
    assert members[0].config().member(members[1].node_id).ips == ("10.147.17.99/24",)
    # issued_to stays from the full config; the times come from the delta.
    assert all(m.config().issued_to == m.node_id for m in members)


def test_members_following_deltas_hold_what_a_fresh_full_config_holds(world: World) -> None:
    network_id, members = network_of(world, 4)
    controller = controller_of(world)
    late = world.add_member()
    late.join(network_id, controller)
    world.run(1.0)
    full_configs = controller.sent.get("netconf", 0)
    controller.authorize(network_id, late, ip="10.147.17.50")  # added
    controller.update_network(network_id, name="renamed", mtu=1400)  # network-wide fields
    controller.set_rules(network_id, "drop ethertype 0x88b5\naccept\n")
    controller.deauthorize(network_id, members[2])  # removed
    controller._update_member(network_id, members[0], {"tags": ["web"], "name": "zero"})  # changed in place
    controller.authorize(network_id, members[2])  # back, at the end of the list
    controller.delete_member(network_id, members[3])
    world.run(1.0)
    followers = [members[0], members[1], members[2], late]
    # Full configs only for the two that held none (late before it was authorized, members[2] while it was not).
    assert controller.sent.get("netconf", 0) == full_configs + 2
    assert members[3].status() == "ACCESS_DENIED"
    expected = content(followers[0].config())
    assert all(content(m.config()) == expected for m in followers)
    assert expected.name == "renamed" and expected.mtu_bytes == 1400 and expected.rules.text
    assert fresh_full_content(world, network_id) == expected


def test_a_member_that_missed_a_delta_asks_and_gets_the_rest_as_one(world: World) -> None:
    network_id, members = network_of(world, 3)
    controller = controller_of(world)
    lagging = members[2]
    world.down.add(lagging)  # the first push is lost on the way to it
    controller.set_ips(network_id, members[0], "10.147.17.10")
    world.settle()
    world.down.discard(lagging)
    behind = lagging.config().revision
    before = Counter(controller.sent)
    controller.set_ips(network_id, members[1], "10.147.17.11")
    world.run(0.5)
    sent = Counter(controller.sent) - before
    assert lagging.drops.get("netconf_delta_gap") == 1
    assert sent["netconf"] == 0 and sent["netconf_delta"] == 3 + 1  # the push, then the merged answer
    assert lagging.config().revision == behind + 2
    assert content(lagging.config()) == content(members[0].config())


def test_a_member_that_cannot_use_deltas_gets_a_full_config_when_it_asks_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    network_id, members = network_of(world, 2)
    controller = controller_of(world)
    older = members[1]  # a member from before deltas: it drops them as unknown messages
    monkeypatch.setattr(older.core.membership, "netconf_delta", lambda *args: [])
    controller.set_ips(network_id, members[0], "10.147.17.10")
    world.run(1.0)
    assert older.config().member(members[0].node_id).ips != ("10.147.17.10/24",)
    before = Counter(controller.sent)
    world.run(NETCONF_REFRESH_S)
    assert (Counter(controller.sent) - before)["netconf"] == 1
    assert content(older.config()) == content(members[0].config())


def test_after_a_controller_restart_only_revisions_it_never_issued_get_full_configs(world: World) -> None:
    network_id, members = network_of(world, 3)
    controller = controller_of(world)
    lagging = members[2]
    world.down.add(lagging)
    controller.set_ips(network_id, members[0], "10.147.17.10")
    world.settle()
    world.down.discard(lagging)
    world.restart_controller()  # a new process (new counters) with no history: lagging's revision is unknown to it
    world.run(1.0)
    sent = Counter(controller.sent)
    assert sent["netconf"] == 1 and sent["ok"] == 2
    assert content(lagging.config()) == content(members[0].config())
    # Members that said which revision they hold get deltas, checked against the digest.
    before = Counter(controller.sent)
    controller.set_ips(network_id, members[1], "10.147.17.11")
    world.run(0.5)
    sent = Counter(controller.sent) - before
    assert sent["netconf"] == 0 and sent["netconf_delta"] == 3
    assert all(m.config().member(members[1].node_id).ips == ("10.147.17.11/24",) for m in members)
    assert not any(m.drops.get("netconf_delta_diverged") for m in members)


def test_unchanged_configs_get_new_times_from_one_empty_delta(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deltas, "STAMP_REFRESH_S", 30.0)
    network_id, members = network_of(world, 3)
    controller = controller_of(world)
    revision = members[0].config().revision
    stamped = [m.config().timestamp_s for m in members]
    before = Counter(controller.sent)
    world.run(40.0)
    sent = Counter(controller.sent) - before
    assert sent["netconf"] == 0 and sent["netconf_delta_signed"] == 1
    assert all(m.config().revision == revision for m in members)
    assert all(m.config().timestamp_s > t for m, t in zip(members, stamped))
    assert all(m.config().expires_s > m.config().timestamp_s for m in members)


def test_a_member_fetches_a_whole_signed_config_again_before_its_cached_one_expires(world: World) -> None:
    network_id, members = network_of(world, 2)
    controller = controller_of(world)
    controller.set_ips(network_id, members[0], "10.147.17.10")
    world.run(1.0)
    before = Counter(controller.sent)
    world.run(NETCONF_REFRESH_S + 1)
    assert (Counter(controller.sent) - before)["netconf"] == 0  # refreshes: "yours is current"
    members[1].core.membership.joined[network_id].signed_wall_s -= NETCONF_FULL_REFRESH_S  # days pass
    before = Counter(controller.sent)
    world.run(NETCONF_REFRESH_S + 1)
    assert (Counter(controller.sent) - before)["netconf"] == 1
    assert content(members[1].config()) == content(members[0].config())


# -- hostile deltas, at the membership seam ---------------------------------------------------------------


def _message(network_id: int, signed: bytes, from_revision: int, to_revision: int) -> bytes:
    return NetconfDelta.build(
        {"network_id": network_id, "from_revision": from_revision, "to_revision": to_revision, "signed_delta": signed}
    )


def _delta_for(config: NetworkConfig, **changes: object) -> ConfigDelta:
    """A delta renaming the network, with the right digest for config's member list."""
    renamed = config.with_changes(name="evil")
    digest = content_digest(renamed, members_sum(config.members, config.network_id))
    base = ConfigDelta(
        network_id=config.network_id, from_revision=config.revision, to_revision=config.revision + 1,
        timestamp_s=config.timestamp_s + 1, expires_s=config.expires_s + 1, digest=digest,
        network={"name": "evil", "mtu": config.mtu_bytes, "multicast_limit": config.multicast_limit,
                 "broadcast": config.broadcast, "private": config.private, "routes": [],
                 "dns_domain": config.dns_domain},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_forged_tampered_and_malformed_deltas_are_dropped_and_counted(world: World) -> None:
    network_id, (member, _) = network_of(world, 2)
    controller = controller_of(world)
    membership = member.core.membership
    held = member.config()
    assert held is not None
    good = _delta_for(held)
    cases = {
        "netconf_delta_rejected": [
            _message(network_id, good.sign(Identity.generate()), held.revision, held.revision + 1),  # another key
            _message(network_id, good.sign(controller.identity)[:-3] + b"}}}", held.revision, held.revision + 1),
            _message(network_id, good.sign(controller.identity), held.revision, held.revision + 5),  # outer lies
            # A full config's signature is not a delta's.
            _message(network_id, held.sign(controller.identity), held.revision, held.revision + 1),
        ],
        "netconf_delta_malformed": [b"\x10" + os.urandom(20), _message(network_id, b"x", 1, 2)[:-1]],
        "netconf_from_wrong_controller": [_message(network_id + 1, good.sign(controller.identity), held.revision, held.revision + 1)],
    }
    for reason, messages in cases.items():
        for message in messages:
            assert membership.netconf_delta(controller.node_id, message, world.now) == []
        assert member.drops[reason] == len(messages)
    assert member.config() == held
    # The genuine one applies.
    decisions = membership.netconf_delta(controller.node_id, _message(network_id, good.sign(controller.identity), held.revision, held.revision + 1), world.now)
    assert [type(d) for d in decisions] == [ApplyConfig]
    assert decisions[0].config.name == "evil" and decisions[0].signed is None  # type: ignore[union-attr]


def test_a_delta_whose_digest_does_not_match_makes_the_member_ask_for_a_full_config(world: World) -> None:
    network_id, (member, _) = network_of(world, 2)
    controller = controller_of(world)
    held = member.config()
    assert held is not None
    wrong = _delta_for(held, digest=bytes(32))
    decisions = member.core.membership.netconf_delta(
        controller.node_id, _message(network_id, wrong.sign(controller.identity), held.revision, held.revision + 1), world.now
    )
    assert member.drops["netconf_delta_diverged"] == 1
    requests = [NetconfRequest.parse(d.message) for d in decisions if isinstance(d, SendMessage)]
    assert [r.have_revision for r in requests] == [0]


def test_stale_and_gapped_deltas_are_not_applied(world: World) -> None:
    network_id, (member, _) = network_of(world, 2)
    controller = controller_of(world)
    membership = member.core.membership
    held = member.config()
    assert held is not None
    stale = _delta_for(held, from_revision=held.revision - 1, to_revision=held.revision - 1)
    membership.netconf_delta(controller.node_id, _message(network_id, stale.sign(controller.identity), held.revision - 1, held.revision - 1), world.now)
    gapped = _delta_for(held, from_revision=held.revision + 1, to_revision=held.revision + 2)
    decisions = membership.netconf_delta(
        controller.node_id, _message(network_id, gapped.sign(controller.identity), held.revision + 1, held.revision + 2), world.now
    )
    assert member.drops["netconf_delta_stale"] == 1 and member.drops["netconf_delta_gap"] == 1
    requests = [NetconfRequest.parse(d.message) for d in decisions if isinstance(d, SendMessage)]
    assert [r.have_revision for r in requests] == [held.revision]
    assert member.config() == held


# -- the property: any admin changes, any lag ------------------------------------------------------------

CONTROLLER = Identity.generate()
NETWORK_ID = make_network_id(CONTROLLER.node_id, 5)
WALL_S = 1_900_000_000.0


def _identities(count: int) -> list[PublicIdentity]:
    out: list[PublicIdentity] = []
    while len(out) < count:
        identity = PublicIdentity(os.urandom(32), os.urandom(32))
        if not is_reserved_node_id(identity.node_id):
            out.append(identity)
    return out


POOL_IDENTITIES = _identities(8)

operations = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 7), st.booleans(), st.integers(1, 3), st.sampled_from(["", "a", "b"])),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("network"), st.sampled_from(["lab", "other"]), st.sampled_from([1400, 2800])),
    st.tuples(st.just("endpoint"), st.integers(0, 7), st.integers(1, 3)),
)


def _apply_operation(network: Network, members: dict[int, StoredMember], operation: tuple) -> Network:  # type: ignore[type-arg]
    kind = operation[0]
    if kind == "put":
        _, index, authorized, ip, tag = operation
        identity = POOL_IDENTITIES[index]
        old = members.get(identity.node_id) or StoredMember(NETWORK_ID, identity.node_id, identity)
        members[identity.node_id] = replace(old, authorized=authorized, ips=(f"10.147.17.{ip}/24",), tags=(tag,) if tag else ())
    elif kind == "delete":
        members.pop(POOL_IDENTITIES[operation[1]].node_id, None)
    elif kind == "network":
        network = replace(network, name=operation[1], mtu_bytes=operation[2])
    else:
        node_id = POOL_IDENTITIES[operation[1]].node_id
        if node_id in members:
            members[node_id] = replace(members[node_id], endpoint=f"198.18.0.{operation[2]}:9993")
    return replace(network, revision=network.revision + 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(operations, st.lists(st.booleans(), min_size=3, max_size=3)), max_size=25))
def test_members_following_deltas_end_where_a_fresh_full_config_is(steps: list[tuple[tuple, list[bool]]]) -> None:  # type: ignore[type-arg]
    issuer = Issuer(CONTROLLER, lambda: WALL_S, Counter(), Counter())
    network = Network(NETWORK_ID, "lab", revision=1)
    members: dict[int, StoredMember] = {}

    def snapshot() -> NetworkConfig:
        return issuer.history.current(network, lambda: issuer.build_config(network, list(members.values()), 0, {})).config

    def follow(held: DeltaBase) -> DeltaBase:
        """What a member holding held ends with: the delta the controller has for it, else a full config."""
        message = issuer.history.delta_from(NETWORK_ID, held.config.revision)
        if message is None:
            return DeltaBase.of(snapshot())
        parsed = NetconfDelta.parse(message)
        delta = verify_signed_delta(parsed.signed_delta, CONTROLLER.public, NETWORK_ID)
        base = apply_delta(held, delta)
        assert base == DeltaBase.of(base.config)  # what it keeps for the next delta is right too
        return replace(base, config=base.config.with_changes(timestamp_s=0.0, expires_s=0.0))

    followers = [DeltaBase.of(snapshot())] * 3
    for operation, catch_up in steps:
        network = _apply_operation(network, members, operation)
        current = snapshot()
        followers = [follow(held) if move else held for held, move in zip(followers, catch_up)]
        assert all(f.config == current for f, move in zip(followers, catch_up) if move)
    final = snapshot()
    fresh = issuer.build_config(network, list(members.values()), 0, {})
    for held in followers:
        assert (follow(held) if held.config.revision != final.revision else held).config == final
    # The same content as built from scratch (members as members parse them; order aside).
    parsed_fresh = NetworkConfig.from_json(fresh.with_changes(issued_to=CONTROLLER.node_id).to_json())
    assert content(final) == content(parsed_fresh)


def test_a_delta_onto_another_revision_is_refused() -> None:
    config = NetworkConfig(NETWORK_ID, 3, 0)
    delta = ConfigDelta(NETWORK_ID, 4, 5, 0.0, 0.0, bytes(32))
    with pytest.raises(NetconfError):
        apply_delta(DeltaBase.of(config), delta)


def _history_with(count: int) -> tuple[Issuer, Network, dict[int, StoredMember]]:
    issuer = Issuer(CONTROLLER, lambda: WALL_S, Counter(), Counter())
    members = {i.node_id: StoredMember(NETWORK_ID, i.node_id, i, authorized=True) for i in _identities(count)}
    network = Network(NETWORK_ID, "lab", revision=1)
    issuer.history.current(network, lambda: issuer.build_config(network, list(members.values()), 0, {}))
    return issuer, network, members


def test_a_bulk_change_and_a_member_too_far_behind_get_full_configs() -> None:
    issuer, network, members = _history_with(2)
    bulk = {i.node_id: StoredMember(NETWORK_ID, i.node_id, i, authorized=True) for i in _identities(deltas.MAX_DELTA_ENTRIES + 1)}
    network = replace(network, revision=2)
    issuer.history.current(network, lambda: issuer.build_config(network, [*members.values(), *bulk.values()], 0, {}))
    assert issuer.history.delta_from(NETWORK_ID, 1) is None
    network = replace(network, revision=3)  # the bulk gone again: as large a change
    issuer.history.current(network, lambda: issuer.build_config(network, list(members.values()), 0, {}))
    assert issuer.history.delta_from(NETWORK_ID, 2) is None
    for revision in range(4, 4 + deltas.MAX_DELTAS + 1):  # one change more than is kept
        network = replace(network, revision=revision, name=f"lab{revision}")
        issuer.history.current(network, lambda: issuer.build_config(network, list(members.values()), 0, {}))
    assert issuer.history.delta_from(NETWORK_ID, 3) is None  # too far behind
    assert issuer.history.delta_from(NETWORK_ID, 4) is not None
