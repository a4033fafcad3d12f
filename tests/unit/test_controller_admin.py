"""l2mesh.controller.admin: admin changes validated against storage in one transaction, and the admin views."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from l2mesh.controller import admin
from l2mesh.controller.directory import Directory
from l2mesh.controller.issuing import Issuer
from l2mesh.controller.joins import MemberAsked
from l2mesh.controller.model import Network, NotFound, ValidationError
from l2mesh.controller.storage import Storage
from l2mesh.identity import Identity
from l2mesh.ids import format_network_id, format_node_id

CONTROLLER = Identity.generate()
WALL_S = 1_900_000_000.0
A, B = 0x1000000001, 0x1000000002


def network(storage: Storage, **doc: object) -> Network:
    change = admin.create_network(storage, CONTROLLER.node_id, {"name": "lab", "pools": ["10.147.17.0/24"], **doc})
    assert isinstance(change.answer, Network) and change.networks == (change.answer,) and change.push == ()
    return change.answer


def test_authorizing_an_unknown_node_pre_authorizes_it_with_the_first_pool_address_and_pushes_nothing(storage: Storage) -> None:
    net = network(storage)
    change = admin.update_member(storage, net.network_id, A, {"authorized": True}, WALL_S)
    member = storage.get_member(net.network_id, A)
    assert change.answer == member and change.members == (member,)
    assert (member.authorized, member.ips, member.identity, member.created_s) == (True, ("10.147.17.1/24",), None, WALL_S)
    assert change.push == ()  # in nobody's config until its node asks
    assert storage.get_network(net.network_id).revision == net.revision


def test_changing_a_member_that_holds_keys_makes_a_new_revision_to_push(storage: Storage) -> None:
    net, node = network(storage), Identity.generate()
    MemberAsked(net.network_id, node.node_id, node.public, "198.18.1.2:9993", False, WALL_S).commit(storage)
    change = admin.update_member(storage, net.network_id, node.node_id, {"authorized": True, "bridge": True}, WALL_S)
    assert change.push == (net.network_id,) and change.networks[0].revision == net.revision + 1
    member = storage.get_member(net.network_id, node.node_id)
    assert member.bridge and member.ips == ()  # bridges get no pool address


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"authorized": True, "colour": "red"}, "unknown member field(s): colour"),
        ({"authorized": "yes"}, "authorized must be true or false"),
        ({"name": "x" * 65}, "member name must be a string of at most 64 characters"),
        ({"ips": "10.147.17.5"}, "ips must be a list of addresses"),
        ({"ips": ["10.147.17.7"]}, "IP 10.147.17.7 is already used by member 1000000002"),
        ({"ips": ["not-an-ip"]}, "invalid IP address 'not-an-ip'"),
    ],
)
def test_bad_member_changes_are_refused_with_one_line_and_write_nothing(storage: Storage, doc: dict, message: str) -> None:
    net = network(storage)
    admin.update_member(storage, net.network_id, B, {"ips": ["10.147.17.7"]}, WALL_S)
    with pytest.raises(ValidationError, match=re.escape(message)):
        admin.update_member(storage, net.network_id, A, doc, WALL_S)
    assert storage.find_member(net.network_id, A) is None


def test_a_full_pool_refuses_the_authorize(storage: Storage) -> None:
    net = network(storage, pools=["10.147.17.0/30"])
    admin.update_member(storage, net.network_id, A, {"authorized": True}, WALL_S)
    admin.update_member(storage, net.network_id, B, {"authorized": True}, WALL_S)
    with pytest.raises(ValidationError, match="the pools of network 'lab' are full"):
        admin.update_member(storage, net.network_id, 0x1000000003, {"authorized": True}, WALL_S)


def test_unknown_networks_and_members_are_not_found(storage: Storage) -> None:
    net = network(storage)
    with pytest.raises(NotFound, match="no network"):
        admin.update_member(storage, net.network_id + 1, A, {"authorized": True}, WALL_S)
    with pytest.raises(NotFound, match=f"no member {format_node_id(A)} in network {format_network_id(net.network_id)}"):
        admin.delete_member(storage, net.network_id, A)


def test_network_updates_and_deletes_are_pushed(storage: Storage) -> None:
    net = network(storage)
    with pytest.raises(ValidationError, match="unknown network field"):
        admin.update_network(storage, net.network_id, {"colour": "red"})
    change = admin.update_network(storage, net.network_id, {"mtu": 2800, "broadcast": False, "multicast_limit": None})
    assert change.push == (net.network_id,)
    assert isinstance(change.answer, Network) and (change.answer.mtu_bytes, change.answer.broadcast) == (2800, False)
    admin.update_member(storage, net.network_id, A, {"name": "a"}, WALL_S)
    change = admin.delete_member(storage, net.network_id, A)
    assert change.deleted_members == ((net.network_id, A),) and change.push == (net.network_id,)
    change = admin.delete_network(storage, net.network_id)
    assert change.deleted_networks == (net.network_id,) and change.push == (net.network_id,)
    assert storage.find_network(net.network_id) is None


def test_views_list_networks_with_counts_and_members_with_online_state(storage: Storage) -> None:
    net = network(storage)
    admin.update_member(storage, net.network_id, A, {"authorized": True}, WALL_S)
    admin.update_member(storage, net.network_id, B, {"name": "b"}, WALL_S)
    directory = Directory.load(storage)
    [listed] = admin.network_list(directory)
    assert (listed["id"], listed["members"], listed["authorized"]) == (format_network_id(net.network_id), 2, 1)
    member = admin.known_member(directory, net.network_id, A)
    assert admin.member_doc(member, None)["online"] is False
    online = admin.member_doc(member, WALL_S + 5)
    assert online["online"] and online["last_seen"] == WALL_S + 5 and online["ips"] == ["10.147.17.1"]
    with pytest.raises(NotFound):
        admin.network_doc(directory, net.network_id + 1)
    with pytest.raises(NotFound):
        admin.known_member(directory, net.network_id, 0x1000000009)


# -- routes and names (issue 14) ------------------------------------------------------------------------
def test_routes_are_added_and_removed_one_at_a_time_and_replaced_whole(storage: Storage) -> None:
    net = network(storage, routes=["10.147.17.0/24"])
    assert [r.spec() for r in net.routes] == ["10.147.17.0/24"]
    change = admin.update_network(storage, net.network_id, {"add_routes": ["198.19.200.0/24@10.147.17.3", "0.0.0.0/0@10.147.17.2"]})
    assert change.push == (net.network_id,)
    assert [r.spec() for r in storage.get_network(net.network_id).routes] == [
        "0.0.0.0/0@10.147.17.2", "10.147.17.0/24", "198.19.200.0/24@10.147.17.3",
    ]
    # Adding a route to a target already there changes its gateway; removing goes by target.
    admin.update_network(storage, net.network_id, {"add_routes": ["198.19.200.0/24@10.147.17.4"], "remove_routes": ["0.0.0.0/0"]})
    assert [r.spec() for r in storage.get_network(net.network_id).routes] == ["10.147.17.0/24", "198.19.200.0/24@10.147.17.4"]
    admin.update_network(storage, net.network_id, {"routes": []})
    assert storage.get_network(net.network_id).routes == ()
    assert admin.network_doc(Directory.load(storage), net.network_id)["routes"] == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"add_routes": ["198.19.200.0/24@10.147.99.3"]}, "gateway 10.147.99.3 is not an overlay address of the network"),
        ({"add_routes": ["10.147.17.128/25@10.147.17.3"]}, "is on the overlay itself; give it without @VIA"),
        ({"add_routes": ["198.19.200.0/33"]}, "invalid route '198.19.200.0/33'"),
        ({"add_routes": "198.19.200.0/24"}, "add_routes must be a list of routes"),
        ({"remove_routes": ["198.19.201.0/24"]}, "no route to 198.19.201.0/24 on this network"),
        ({"routes": ["198.19.200.0/24", "198.19.200.0/24@10.147.17.3"]}, "a route target is given twice"),
        ({"pools": ["10.147.18.0/24"]}, "gateway 10.147.17.3 is not an overlay address"),  # a pool change may not strand a gateway
        ({"dns_domain": "bad_domain.example"}, "invalid DNS domain 'bad_domain.example'"),
    ],
)
def test_bad_routes_and_domains_are_refused_with_one_line_and_write_nothing(storage: Storage, doc: dict, message: str) -> None:
    net = network(storage, routes=["198.19.200.0/24@10.147.17.3"])
    with pytest.raises(ValidationError, match=re.escape(message)) as excinfo:
        admin.update_network(storage, net.network_id, doc)
    assert "\n" not in str(excinfo.value)
    assert storage.get_network(net.network_id) == net


def test_a_gateway_needs_a_pool_and_the_dns_domain_follows_the_name_until_set(storage: Storage) -> None:
    with pytest.raises(ValidationError, match="give the network a pool"):
        admin.create_network(storage, CONTROLLER.node_id, {"name": "bare", "routes": ["0.0.0.0/0@10.147.17.2"]})
    net = network(storage)
    assert admin.network_doc(Directory.load(storage), net.network_id)["dns_domain"] == "lab.l2mesh"
    admin.update_network(storage, net.network_id, {"name": "Plant Floor"})
    assert storage.get_network(net.network_id).effective_dns_domain == "plant-floor.l2mesh"
    admin.update_network(storage, net.network_id, {"dns_domain": "Corp.Example."})
    assert storage.get_network(net.network_id).effective_dns_domain == "corp.example"
    admin.update_network(storage, net.network_id, {"dns_domain": ""})
    assert storage.get_network(net.network_id).effective_dns_domain == "plant-floor.l2mesh"


def test_authorize_on_an_existing_member_renames_it_and_the_config_carries_routes_and_domain(storage: Storage) -> None:
    net, node = network(storage, routes=["198.19.200.0/24@10.147.17.3"], dns_domain="corp.example"), Identity.generate()
    MemberAsked(net.network_id, node.node_id, node.public, "198.18.1.2:9993", False, WALL_S).commit(storage)
    admin.update_member(storage, net.network_id, node.node_id, {"authorized": True, "name": "n2"}, WALL_S)
    change = admin.update_member(storage, net.network_id, node.node_id, {"authorized": True, "name": "build-2"}, WALL_S)
    assert change.push == (net.network_id,) and storage.get_member(net.network_id, node.node_id).name == "build-2"
    issuer = Issuer(CONTROLLER, lambda: WALL_S, Counter(), Counter())
    config = issuer.build_config(storage.get_network(net.network_id), storage.list_members(net.network_id), node.node_id, {})
    assert [m.name for m in config.members] == ["build-2"]
    assert config.dns_domain == "corp.example" and [r.spec() for r in config.routes] == ["198.19.200.0/24@10.147.17.3"]
