"""l2mesh.controller.core with real node cores, sans-IO: datagrams handed across by the test, the storage
writer played by the test too, so a write the core asked for can be committed late, after an admin change."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import l2mesh
from l2mesh.controller import admin
from l2mesh.controller import core as core_module
from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.directory import Directory
from l2mesh.controller.joins import MemberAsked
from l2mesh.controller.seen import SeenTimes
from l2mesh.controller.storage import Storage
from l2mesh.identity import Identity
from l2mesh.ids import format_node_id
from l2mesh.node.core import NetworkStatus, NodeCore
from tests.unit.recording import RecordingTransmit

Endpoint = tuple[str, int]
CONTROLLER_ENDPOINT: Endpoint = ("198.18.0.1", 9994)
WALL_S = 1_900_000_000.0


class World:
    """One controller core, its storage, node cores at underlay endpoints, and a clock."""

    def __init__(self, storage: Storage, private: bool = True) -> None:
        self.controller = Identity.generate()
        self.storage = storage
        doc = {"name": "lab", "pools": ["10.147.17.0/24"], "private": private}
        network = admin.create_network(self.storage, self.controller.node_id, doc).answer
        assert network is not None
        self.network_id = network.network_id
        self.transmit = RecordingTransmit()
        self.core = ControllerCore(self.controller, Directory.load(self.storage), self.transmit, wall_clock_s=lambda: WALL_S)
        self.nodes: dict[Endpoint, NodeCore] = {}
        self.now = 1.0

    def add_node(self, endpoint: Endpoint) -> NodeCore:
        node = NodeCore(Identity.generate(), RecordingTransmit(), wall_clock_s=lambda: WALL_S)
        self.nodes[endpoint] = node
        return node

    def join(self, node: NodeCore) -> None:
        node.join(self.network_id, CONTROLLER_ENDPOINT, self.now)

    def pump(self, seconds: float = 0.0, step_s: float = 0.1) -> None:
        """Deliver datagrams both ways until quiet, ticking everyone for `seconds` of simulated time."""
        end = self.now + seconds
        while True:
            for _ in range(50):
                moved = False
                for endpoint, node in self.nodes.items():
                    sent, node.transmit.datagrams = node.transmit.datagrams, []
                    for data, address in sent:
                        assert address == CONTROLLER_ENDPOINT
                        self.core.datagram_received(memoryview(data), endpoint, self.now)
                        moved = True
                sent, self.transmit.datagrams = self.transmit.datagrams, []
                for data, address in sent:
                    if address in self.nodes:
                        self.nodes[address].datagram_received(memoryview(data), CONTROLLER_ENDPOINT, self.now)
                        moved = True
                if not moved:
                    break
            if self.now >= end:
                return
            self.now += step_s
            self.core.tick(self.now)
            for node in self.nodes.values():
                node.tick(self.now)

    def commit_writes(self) -> list[Committed]:
        """Play the storage writer: run what the core asked for, hand back what was committed."""
        done = []
        for write in self.core.take_writes():
            change = write.commit(self.storage)
            self.core.committed(change)
            done.append(change)
        return done

    def asked(self) -> list[MemberAsked]:
        """The member writes the core asked for, left uncommitted (last-seen writes are committed)."""
        writes = self.core.take_writes()
        for write in writes:
            if isinstance(write, SeenTimes):
                self.core.committed(write.commit(self.storage))
        return [w for w in writes if isinstance(w, MemberAsked)]

    def change(self, perform: Callable[[Storage], Committed]) -> Any:
        """An admin change as the API makes it: committed on storage, then applied by the core."""
        return self.core.committed(perform(self.storage))

    def update_member(self, node: NodeCore, **doc: Any) -> Any:
        return self.change(lambda s: admin.update_member(s, self.network_id, node.node_id, doc, WALL_S))

    def member_online(self, endpoint: Endpoint) -> NodeCore:
        """A node pre-authorized, joined, its own write committed: it holds its config."""
        node = self.add_node(endpoint)
        self.update_member(node, authorized=True)
        self.join(node)
        self.pump(0.5)
        self.commit_writes()
        self.pump()
        assert self.status(node) == NetworkStatus.OK
        return node

    def status(self, node: NodeCore) -> NetworkStatus:
        return node.networks[self.network_id].status


@pytest.fixture
def world(storage: Storage) -> World:
    return World(storage)


def node_ips(world: World, node: NodeCore) -> tuple[str, ...]:
    config = node.networks[world.network_id].config
    assert config is not None
    return next(m.ips for m in config.members if m.node_id == node.node_id)


def test_a_members_first_request_becomes_a_write_and_the_commit_answers_it(world: World) -> None:
    node = world.add_node(("198.18.1.2", 9993))
    world.join(node)
    world.pump(0.5)
    [write] = world.asked()
    assert write.node_id == node.node_id and write.endpoint == "198.18.1.2:9993"
    assert world.storage.find_member(world.network_id, node.node_id) is None
    assert world.status(node) == NetworkStatus.REQUESTING  # nothing answered before the commit
    world.core.committed(write.commit(world.storage))
    world.pump()
    assert world.status(node) == NetworkStatus.ACCESS_DENIED
    world.update_member(node, authorized=True)
    world.pump()
    assert world.status(node) == NetworkStatus.OK
    assert node_ips(world, node) == ("10.147.17.1/24",)


def test_repeated_requests_while_a_write_is_on_its_way_ask_for_it_once(world: World) -> None:
    node = world.add_node(("198.18.1.2", 9993))
    world.join(node)
    world.pump(10.0)  # the node asks again every 2 s
    assert len(world.asked()) == 1


def test_an_admin_authorize_committed_before_the_members_own_write_is_kept(world: World) -> None:
    node = world.add_node(("198.18.1.2", 9993))
    world.join(node)
    world.pump(0.5)
    # The node's request was planned from a directory without it; the admin's change commits first.
    doc = world.update_member(node, authorized=True, name="web")
    assert doc["authorized"] and not doc["known"]
    world.commit_writes()
    world.pump()
    member = world.storage.get_member(world.network_id, node.node_id)
    assert (member.authorized, member.name, member.ips) == (True, "web", ("10.147.17.1/24",))
    assert member.identity == node.identity.public
    assert world.core.directory.member(world.network_id, node.node_id) == member
    assert world.status(node) == NetworkStatus.OK


def test_a_deauthorize_committed_before_a_pre_authorized_member_binds_its_keys_is_kept(world: World) -> None:
    node = world.add_node(("198.18.1.2", 9993))
    world.update_member(node, authorized=True)
    world.join(node)
    world.pump(0.5)
    world.update_member(node, authorized=False)
    [write] = world.asked()
    change = write.commit(world.storage)
    world.core.committed(change)
    assert change.push == ()  # binding keys to a deauthorized member makes no new revision
    world.pump()
    member = world.storage.get_member(world.network_id, node.node_id)
    assert member.identity == node.identity.public and not member.authorized
    assert world.status(node) == NetworkStatus.ACCESS_DENIED


def test_an_endpoint_write_leaves_a_rename_and_new_address_committed_meanwhile(world: World) -> None:
    node = world.member_online(("198.18.1.2", 9993))
    # The member comes back from another address (NAT rebinding): its next request asks for an endpoint write.
    world.nodes[("198.18.1.3", 4000)] = world.nodes.pop(("198.18.1.2", 9993))
    world.pump(30.0)
    [write] = world.asked()
    assert write.endpoint == "198.18.1.3:4000"
    world.update_member(node, name="db", ips=["10.147.17.50"])
    world.core.committed(write.commit(world.storage))
    world.pump()
    member = world.storage.get_member(world.network_id, node.node_id)
    assert (member.name, member.ips, member.endpoint, member.authorized) == ("db", ("10.147.17.50/24",), "198.18.1.3:4000", True)
    assert node_ips(world, node) == ("10.147.17.50/24",)


def test_a_public_network_authorizes_and_addresses_a_new_member_at_commit_time(storage: Storage) -> None:
    world = World(storage, private=False)
    first, second = world.add_node(("198.18.1.2", 9993)), world.add_node(("198.18.2.2", 9993))
    world.join(first)
    world.pump(0.5)
    # While the first member's write waits, an admin hands the pool's first address to the second one.
    world.update_member(second, authorized=True)
    world.commit_writes()
    world.join(second)
    world.pump(0.5)
    world.commit_writes()
    world.pump()
    assert (world.status(first), world.status(second)) == (NetworkStatus.OK, NetworkStatus.OK)
    assert node_ips(world, second) == ("10.147.17.1/24",)
    assert node_ips(world, first) == ("10.147.17.2/24",)


def test_a_write_that_failed_is_asked_for_again_on_the_next_request(world: World) -> None:
    node = world.add_node(("198.18.1.2", 9993))
    world.join(node)
    world.pump(0.5)
    [write] = world.asked()
    world.core.committed(write.failed())
    assert world.core.drops["storage_write_failed"] == 1
    world.pump(2.5)
    assert len(world.asked()) == 1


def test_admin_views_read_the_directory_with_who_is_online(world: World) -> None:
    node = world.add_node(("198.18.1.2", 9993))
    world.join(node)
    world.pump(0.5)
    world.commit_writes()
    [listed] = world.core.list_members(world.network_id)
    assert listed["id"] == format_node_id(node.node_id) and listed["online"] and listed["known"]
    assert listed["last_seen"] == pytest.approx(WALL_S, abs=1.0)
    assert listed["version"] == l2mesh.__version__  # what the node's netconf request reported
    [network] = world.core.list_networks()
    assert (network["members"], network["authorized"]) == (1, 0)
    assert world.core.status()["online_members"] == 1


def test_last_seen_times_are_a_batched_write_every_ten_seconds(world: World) -> None:
    node = world.add_node(("198.18.1.2", 9993))
    world.join(node)
    world.pump(0.5)
    world.commit_writes()
    world.pump(10.0)
    seen = [w for w in world.core.take_writes() if isinstance(w, SeenTimes)]
    assert len(seen) == 1 and seen[0].rows[0][:2] == (world.network_id, node.node_id)
    world.core.committed(seen[0].commit(world.storage))
    assert world.storage.get_member(world.network_id, node.node_id).last_seen_s == seen[0].rows[0][2]


def test_deleting_the_network_tells_its_online_members_not_found(world: World) -> None:
    node = world.member_online(("198.18.1.2", 9993))
    world.change(lambda s: admin.delete_network(s, world.network_id))
    world.pump()
    assert world.status(node) == NetworkStatus.NOT_FOUND
    assert world.core.directory.network(world.network_id) is None


def test_past_the_bound_on_writes_in_flight_a_request_waits_unanswered_for_its_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "MAX_MEMBER_WRITES_IN_FLIGHT", 0)
    node = world.add_node(("198.18.1.2", 9993))
    world.join(node)
    world.pump(0.5)
    assert world.asked() == [] and world.core.drops["storage_backlog"] >= 1
    assert world.status(node) == NetworkStatus.REQUESTING
    monkeypatch.setattr(core_module, "MAX_MEMBER_WRITES_IN_FLIGHT", 10)
    world.pump(2.0)
    assert len(world.asked()) == 1
