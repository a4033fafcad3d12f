"""l2mesh.controller.directory: the in-memory networks and members the reactor thread answers from."""

from __future__ import annotations


from l2mesh.controller import admin
from l2mesh.controller.changes import Committed
from l2mesh.controller.directory import Directory
from l2mesh.controller.model import Member, Network
from l2mesh.controller.storage import Storage
from l2mesh.identity import Identity
from l2mesh.ids import make_network_id

CONTROLLER = Identity.generate()
NET_A = Network(make_network_id(CONTROLLER.node_id, 1), "a")
NET_B = Network(make_network_id(CONTROLLER.node_id, 2), "b")
A, B, C = 0x1000000001, 0x1000000002, 0x1000000003


def member(network: Network, node_id: int, authorized: bool = True, **fields: object) -> Member:
    return Member(network.network_id, node_id, authorized=authorized, **fields)  # type: ignore[arg-type]


def directory(*members: Member) -> Directory:
    loaded = Directory()
    loaded.apply(Committed(networks=(NET_A, NET_B), members=members))
    return loaded


def test_load_reads_every_network_and_its_members_in_creation_order(storage: Storage) -> None:
    network = admin.create_network(storage, CONTROLLER.node_id, {"name": "lab"}).answer
    assert isinstance(network, Network)
    for i, node_id in enumerate((C, A, B)):
        admin.update_member(storage, network.network_id, node_id, {"name": f"m{i}"}, 1000.0 + i)
    loaded = Directory.load(storage)
    assert loaded.network(network.network_id) == storage.get_network(network.network_id)
    assert [m.node_id for m in loaded.members(network.network_id)] == [C, A, B]
    assert loaded.member(network.network_id, A) == storage.get_member(network.network_id, A)


def test_nodes_authorized_in_one_network_are_together_and_others_are_not() -> None:
    found = directory(member(NET_A, A), member(NET_A, B), member(NET_B, C), member(NET_A, C, authorized=False))
    assert found.authorized_together(A, B) and found.authorized_together(B, A)
    assert not found.authorized_together(A, C)
    assert not found.authorized_together(A, 0x1000000009)


def test_a_deauthorize_a_deleted_member_and_a_deleted_network_end_togetherness_at_once() -> None:
    found = directory(member(NET_A, A), member(NET_A, B), member(NET_B, A), member(NET_B, C))
    found.apply(Committed(members=(member(NET_A, B, authorized=False),)))
    assert not found.authorized_together(A, B)
    found.apply(Committed(deleted_members=((NET_B.network_id, C),)))
    assert not found.authorized_together(A, C) and found.member(NET_B.network_id, C) is None
    found.apply(Committed(members=(member(NET_A, B),)))
    assert found.authorized_together(A, B)
    found.apply(Committed(deleted_networks=(NET_A.network_id,)))
    assert not found.authorized_together(A, B) and found.network(NET_A.network_id) is None
    assert found.members(NET_A.network_id) == []


def test_an_updated_member_keeps_its_place_and_members_of_unknown_networks_are_ignored() -> None:
    found = directory(member(NET_A, A), member(NET_A, B))
    found.apply(Committed(members=(member(NET_A, A, name="renamed"), Member(make_network_id(CONTROLLER.node_id, 9), C))))
    assert [(m.node_id, m.name) for m in found.members(NET_A.network_id)] == [(A, "renamed"), (B, "")]
    assert found.member(make_network_id(CONTROLLER.node_id, 9), C) is None


def test_seen_times_update_only_members_that_exist() -> None:
    found = directory(member(NET_A, A))
    found.apply(Committed(seen=((NET_A.network_id, A, 1234.5), (NET_A.network_id, B, 99.0))))
    seen = found.member(NET_A.network_id, A)
    assert seen is not None and seen.last_seen_s == 1234.5 and seen.authorized
    assert found.member(NET_A.network_id, B) is None
