"""Flow rules and tags on the controller: validated, stored, carried signed to members and pushed at once (issue 13)."""

from __future__ import annotations

import pytest

from l2mesh.controller import admin
from l2mesh.controller.model import Network, ValidationError
from l2mesh.rules.syntax import parse_rules
from tests.unit.harness import Member, World, controller_of

ISSUE_RULES = """\
# guests may not reach ssh anywhere, nor the 10.147.17.0/28 servers at all
drop tcp dport 22 src-tag guest
drop dst 10.147.17.0/28 src-tag guest
drop ethertype 0x88b5 not src-tag plc
accept
"""


def members_with_tags(world: World, *tag_lists: list[str]) -> tuple[int, list[Member]]:
    controller = controller_of(world)
    network_id = controller.create_network()
    members = [world.add_member() for _ in tag_lists]
    for member, tags in zip(members, tag_lists):
        member.join(network_id, controller)
        controller.authorize(network_id, member, tags=tags)
    world.run(1.0)
    assert all(m.status() == "OK" for m in members)
    return network_id, members


def test_rules_and_tags_reach_every_member_signed_at_once(world: World) -> None:
    network_id, (guest, plc, plain) = members_with_tags(world, ["guest"], ["plc"], [])
    view = controller_of(world).set_rules(network_id, ISSUE_RULES)
    world.settle()  # no time passes: the push is what carries them
    assert [r["line"] for r in view["rules"]] == [2, 3, 4, 5]
    for member in (guest, plc, plain):
        config = member.config()
        assert config is not None and config.rules.text == ISSUE_RULES
        assert {m.node_id: m.tags for m in config.members} == {guest.node_id: {"guest"}, plc.node_id: {"plc"}, plain.node_id: frozenset()}
        assert member.core.networks[network_id].switch.rules is not None


def test_a_raw_88b5_frame_from_an_untagged_member_is_dropped_while_a_plc_members_arrives(world: World) -> None:
    network_id, (guest, plc, plain) = members_with_tags(world, ["guest"], ["plc"], [])
    controller_of(world).set_rules(network_id, ISSUE_RULES)
    world.settle()
    plain.send(plain.frame_to(guest, b"from plain"))  # frame_to builds 0x88b5 frames
    plc.send(plc.frame_to(guest, b"from plc"))
    world.run(1.0)
    payloads = [f[14:] for f in guest.frames()]
    assert b"from plc" in payloads and b"from plain" not in payloads
    assert plain.switch_counters()["rules"]["drops"] == 1


def test_a_rules_change_takes_effect_on_the_next_frame_and_new_tags_too(world: World) -> None:
    network_id, (guest, server) = members_with_tags(world, ["guest"], [])
    controller = controller_of(world)
    controller.set_rules(network_id, "drop ethertype 0x88b5 src-tag guest\n")
    world.settle()
    guest.send(guest.frame_to(server, b"one"))
    world.run(0.5)
    assert server.frames() == []
    controller.set_rules(network_id, "drop ethertype 0x88b5 src-tag visitor\n")
    world.settle()
    guest.send(guest.frame_to(server, b"two"))
    world.run(0.5)
    assert [f[14:] for f in server.frames()] == [b"two"]
    controller.authorize(network_id, guest, tags=["visitor"])  # re-tagged: pushed like any admin change
    world.settle()
    guest.send(guest.frame_to(server, b"three"))
    world.run(0.5)
    assert [f[14:] for f in server.frames()] == [b"two"]


def test_a_bad_rules_text_is_one_error_naming_its_line_and_nothing_is_stored_or_pushed(world: World) -> None:
    network_id, (member,) = members_with_tags(world, [])
    controller = controller_of(world)
    controller.set_rules(network_id, ISSUE_RULES)
    world.settle()
    revision, pushed = controller.core.get_network(network_id)["revision"], controller.sent.get("netconf", 0)
    with pytest.raises(ValidationError, match=r"^rules line 3: unknown condition 'dprt' \(did you mean dport\?\)$"):
        controller.set_rules(network_id, "accept udp\n\ndrop tcp dprt 22\n")
    world.settle()
    assert controller.core.get_rules(network_id)["text"] == ISSUE_RULES
    assert controller.core.get_network(network_id)["revision"] == revision
    assert controller.sent.get("netconf", 0) == pushed
    assert member.config().rules.text == ISSUE_RULES  # type: ignore[union-attr]


@pytest.mark.parametrize("doc", [{}, {"rules": 7}, {"rules": ["drop"]}, {"rules": "accept", "extra": 1}])
def test_rules_requests_that_are_not_rules_text_are_refused(world: World, doc: dict) -> None:
    controller = controller_of(world)
    network_id = controller.create_network()
    with pytest.raises(ValidationError):
        admin.set_rules(controller.storage, network_id, doc)


@pytest.mark.parametrize("tags", ["guest", [".guest"], [""], [7], ["x" * 65], [f"t{i}" for i in range(65)]])
def test_bad_tags_are_refused(world: World, tags: object) -> None:
    controller = controller_of(world)
    network_id = controller.create_network()
    member = world.add_member()
    with pytest.raises(ValidationError):
        controller.authorize(network_id, member, tags=tags)


def test_tags_are_sorted_deduplicated_listed_and_replaced(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network()
    member = world.add_member()
    assert controller.authorize(network_id, member, tags=["wifi", "guest", "wifi"])["tags"] == ["guest", "wifi"]
    assert controller.member(network_id, member)["tags"] == ["guest", "wifi"]
    assert controller.core.list_members(network_id)[0]["tags"] == ["guest", "wifi"]
    assert controller.authorize(network_id, member, name="laptop")["tags"] == ["guest", "wifi"]  # untouched unless given
    assert controller.authorize(network_id, member, tags=[])["tags"] == []


def test_rules_and_tags_survive_a_controller_restart(world: World) -> None:
    network_id, (guest, _) = members_with_tags(world, ["guest"], [])
    controller = controller_of(world)
    controller.set_rules(network_id, ISSUE_RULES)
    world.restart_controller()
    assert controller.core.get_rules(network_id)["text"] == ISSUE_RULES
    assert controller.member(network_id, guest)["tags"] == ["guest"]
    assert controller.core.get_network(network_id)["rules"] == 4


def test_the_rules_view_names_each_rule_by_its_line() -> None:
    view = Network(1, "n", rules=parse_rules(ISSUE_RULES)).rules_json()
    assert view["rules"][0] == {"line": 2, "rule": "drop tcp dport 22 src-tag guest", "action": "drop"}
    assert view["text"] == ISSUE_RULES
