"""Membership's choice of controller instance (issue 12): which it learns, when it leaves one, where it goes."""

from __future__ import annotations

from collections import Counter

from l2mesh.identity import Identity
from l2mesh.node.decisions import LookupNode, RenewSession, UseEndpoint
from l2mesh.node.membership import CONTROLLER_SILENT_S, ControllerContact, ControllerLink, Membership

A, B, C = ("198.18.0.1", 9994), ("198.18.0.2", 9994), ("198.18.0.3", 9994)


def membership_with_link(instances: list[tuple[str, int]]) -> tuple[Membership, ControllerLink]:
    controller = Identity.generate()
    membership = Membership(Identity.generate(), {}, Counter(), lambda: 0.0)
    link = membership.controllers[controller.node_id] = ControllerLink(controller.node_id, A, controller.public)
    link.learn_instances(instances, replace=True)
    return membership, link


def test_an_instance_heard_recently_is_kept() -> None:
    membership, link = membership_with_link([A, B])
    assert membership.failover(10.0, {link.node_id: ControllerContact(10.0 - CONTROLLER_SILENT_S + 0.1, None)}) == []
    assert link.endpoint == A


def test_a_silent_instance_is_left_for_the_next_with_a_fresh_handshake() -> None:
    membership, link = membership_with_link([A, B])
    decisions = membership.failover(10.0, {link.node_id: ControllerContact(10.0 - CONTROLLER_SILENT_S, None)})
    assert decisions == [UseEndpoint(link.node_id, B), RenewSession(link.node_id, restart=True), LookupNode(link.node_id)]
    assert link.endpoint == B and membership.failovers == 1


def test_the_next_one_gets_its_time_and_a_dead_pair_is_walked_in_order() -> None:
    membership, link = membership_with_link([A, B, C])
    membership.failover(10.0, {link.node_id: ControllerContact(1.0, None)})
    assert link.endpoint == B
    assert membership.failover(10.0 + CONTROLLER_SILENT_S - 0.1, {link.node_id: ControllerContact(1.0, None)}) == []
    membership.failover(10.0 + CONTROLLER_SILENT_S, {link.node_id: ControllerContact(1.0, None)})
    assert link.endpoint == C
    membership.failover(10.0 + 2 * CONTROLLER_SILENT_S, {link.node_id: ControllerContact(1.0, None)})
    assert link.endpoint == A


def test_a_single_instance_is_never_left() -> None:
    membership, link = membership_with_link([A])
    assert membership.failover(100.0, {link.node_id: ControllerContact(1.0, None)}) == []


def test_a_controller_never_heard_gets_its_chance_before_a_move() -> None:
    membership, link = membership_with_link([A, B])
    assert membership.failover(5.0, {link.node_id: ControllerContact(None, None)}) == []
    assert membership.failover(5.0 + CONTROLLER_SILENT_S, {link.node_id: ControllerContact(None, None)})[0] == UseEndpoint(link.node_id, B)


def test_instances_from_a_config_replace_those_from_roots_add() -> None:
    _, link = membership_with_link([A, B])
    link.learn_instances([C], replace=False)
    assert link.instances == [A, B, C]
    link.learn_instances([B], replace=True)
    assert link.instances == [B]


def test_the_next_one_is_counted_from_the_instance_that_answered_not_the_one_first_tried() -> None:
    # The roots gave both as candidates and B answered the handshake first: the peer is at B.
    membership, link = membership_with_link([A, B, C])
    decisions = membership.failover(10.0, {link.node_id: ControllerContact(1.0, B)})
    assert decisions[0] == UseEndpoint(link.node_id, C)
