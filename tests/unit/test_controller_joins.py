"""l2mesh.controller.joins: a member's request as a field-level write that never undoes an admin change
committed between the request and the write (and the storage's field-level writes it is made of)."""

from __future__ import annotations


import pytest

from l2mesh.controller import admin
from l2mesh.controller.joins import MemberAsked
from l2mesh.controller.model import Member, Network
from l2mesh.controller.storage import Storage
from l2mesh.identity import Identity

CONTROLLER = Identity.generate()
WALL_S = 1_900_000_000.0


def network(storage: Storage, **doc: object) -> Network:
    created = admin.create_network(storage, CONTROLLER.node_id, {"name": "lab", "pools": ["10.147.17.0/24"], **doc}).answer
    assert isinstance(created, Network)
    return created


def asked(net: Network, node: Identity, endpoint: str = "198.18.1.2:9993", announce: bool = False) -> MemberAsked:
    return MemberAsked(net.network_id, node.node_id, node.public, endpoint, announce, WALL_S)


def test_a_new_member_of_a_private_network_is_listed_unauthorized_with_its_keys_and_endpoint(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    change = asked(net, node).commit(storage)
    member = storage.get_member(net.network_id, node.node_id)
    assert (member.authorized, member.identity, member.endpoint, member.ips) == (False, node.public, "198.18.1.2:9993", ())
    assert change.members == (member,) and change.push == () and change.asked == (net.network_id, node.node_id)
    assert storage.get_network(net.network_id).revision == net.revision


def test_a_new_member_of_a_public_network_is_authorized_addressed_and_pushed(storage: Storage) -> None:
    net, node = network(storage, private=False), Identity.generate()
    change = asked(net, node).commit(storage)
    member = storage.get_member(net.network_id, node.node_id)
    assert member.authorized and member.ips == ("10.147.17.1/24",)
    assert change.push == (net.network_id,) and change.networks[0].revision == net.revision + 1


def test_a_public_network_with_a_full_pool_still_takes_the_member_without_an_address(storage: Storage) -> None:
    net = network(storage, private=False, pools=["10.147.17.0/30"])
    first, second, third = (Identity.generate() for _ in range(3))
    asked(net, first).commit(storage)
    asked(net, second).commit(storage)
    change = asked(net, third).commit(storage)
    assert change.drops == ("pool_full",)
    member = storage.get_member(net.network_id, third.node_id)
    assert member.authorized and member.ips == ()


def test_an_admins_authorize_name_and_address_committed_first_are_kept_and_the_keys_bound(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    planned = asked(net, node)  # from a view in which the node was unknown
    admin.update_member(storage, net.network_id, node.node_id, {"authorized": True, "name": "web", "ips": ["10.147.17.9"]}, WALL_S)
    change = planned.commit(storage)
    member = storage.get_member(net.network_id, node.node_id)
    assert (member.authorized, member.name, member.ips, member.identity) == (True, "web", ("10.147.17.9/24",), node.public)
    assert change.push == (net.network_id,)  # it now appears in its peers' configs


def test_a_deauthorize_committed_first_is_kept_and_makes_no_new_revision(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    admin.update_member(storage, net.network_id, node.node_id, {"authorized": True}, WALL_S)
    planned = asked(net, node)  # from a view in which it was pre-authorized
    admin.update_member(storage, net.network_id, node.node_id, {"authorized": False}, WALL_S)
    revision = storage.get_network(net.network_id).revision
    change = planned.commit(storage)
    member = storage.get_member(net.network_id, node.node_id)
    assert not member.authorized and member.identity == node.public
    assert change.push == () and storage.get_network(net.network_id).revision == revision


def test_other_keys_for_a_bound_member_write_nothing(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    asked(net, node).commit(storage)
    impostor = MemberAsked(net.network_id, node.node_id, Identity.generate().public, "198.18.9.9:1", True, WALL_S)
    change = impostor.commit(storage)
    member = storage.get_member(net.network_id, node.node_id)
    assert member.identity == node.public and member.endpoint == "198.18.1.2:9993"
    assert change.drops == ("member_keys_mismatch",) and change.push == ()


def test_an_endpoint_change_makes_a_new_revision_only_when_announced_for_an_authorized_member(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    admin.update_member(storage, net.network_id, node.node_id, {"authorized": True}, WALL_S)
    asked(net, node).commit(storage)
    assert asked(net, node, "198.18.1.3:4000").commit(storage).push == ()
    assert storage.get_member(net.network_id, node.node_id).endpoint == "198.18.1.3:4000"
    assert asked(net, node, "198.18.1.4:4000", announce=True).commit(storage).push == (net.network_id,)


def test_a_network_deleted_before_the_write_gets_nothing_written(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    planned = asked(net, node)
    admin.delete_network(storage, net.network_id)
    change = planned.commit(storage)
    assert change.members == () and change.asked == (net.network_id, node.node_id)
    assert storage.find_member(net.network_id, node.node_id) is None


def test_a_failed_write_settles_the_request_without_an_answer(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    change = asked(net, node).failed()
    assert change.failed and change.asked == (net.network_id, node.node_id) and change.drops == ("storage_write_failed",)


def test_storage_field_writes_touch_only_their_field(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    admin.update_member(storage, net.network_id, node.node_id, {"authorized": True, "name": "web"}, WALL_S)
    assert not storage.insert_member(Member(net.network_id, node.node_id, node.public, created_s=WALL_S))
    assert storage.bind_identity(net.network_id, node.node_id, node.public)
    assert not storage.bind_identity(net.network_id, node.node_id, Identity.generate().public)
    storage.set_endpoint(net.network_id, node.node_id, "198.18.1.2:9993")
    storage.record_seen([(net.network_id, node.node_id, WALL_S), (net.network_id, 0x1234567890, WALL_S)])
    member = storage.get_member(net.network_id, node.node_id)
    assert (member.authorized, member.name, member.ips, member.identity) == (True, "web", ("10.147.17.1/24",), node.public)
    assert (member.endpoint, member.last_seen_s) == ("198.18.1.2:9993", WALL_S)


def test_a_storage_transaction_commits_all_or_nothing(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    with pytest.raises(RuntimeError):
        with storage.transaction():
            storage.insert_member(Member(net.network_id, node.node_id, node.public, created_s=WALL_S))
            storage.bump_revision(net.network_id)
            raise RuntimeError("half-way")
    assert storage.find_member(net.network_id, node.node_id) is None
    assert storage.get_network(net.network_id).revision == net.revision
