"""Several controller instances on one database (issue 12), sans-IO: two ControllerCores with one identity over
one SQLite file, real node cores, datagrams routed by the test. A change made through one instance reaches the
members of the other through external_change(); a member whose instance falls silent moves to the other."""

from __future__ import annotations

from collections import Counter

from pathlib import Path
from typing import Any

import pytest

from l2mesh.controller import admin
from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.directory import Directory
from l2mesh.controller.instances import ControllerInstance
from l2mesh.controller.reload import Reload
from l2mesh.edge.controller.sqlite_storage import SqliteStorage
from l2mesh.identity import Identity
from l2mesh.node.core import NetworkStatus, NodeCore
from tests.unit.recording import RecordingTransmit

Endpoint = tuple[str, int]
A: Endpoint = ("198.18.0.1", 9994)
B: Endpoint = ("198.18.0.2", 9994)
WALL_S = 1_900_000_000.0
wall_now = [WALL_S]  # what every core's wall clock reads; a test may move it (reset by the cluster fixture)


class Instance:
    def __init__(self, identity: Identity, path: Path, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.storage = SqliteStorage(path)  # its own connection, as a second process has
        self.transmit = RecordingTransmit()
        self.core = ControllerCore(identity, Directory.load(self.storage), self.transmit, wall_clock_s=lambda: wall_now[0])
        self.core.instance_endpoints = [endpoint]
        self.alive = True

    def commit_writes(self) -> bool:
        """Play the storage writer; whether there was anything to commit."""
        writes = self.core.take_writes()
        for write in writes:
            self.core.committed(write.commit(self.storage))
        return bool(writes)

    def change(self, change: Committed) -> Any:
        return self.core.committed(change)


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        identity = Identity.generate()
        path = tmp_path / "controller.db"
        first = SqliteStorage(path)
        doc = {"name": "lab", "pools": ["10.147.17.0/24"]}
        network = admin.create_network(first, identity.node_id, doc).answer
        first.close()
        assert network is not None
        self.network_id = network.network_id
        self.instances = {A: Instance(identity, path, A), B: Instance(identity, path, B)}
        self.nodes: dict[Endpoint, NodeCore] = {}
        self.now = 1.0

    def heartbeats(self) -> None:
        """Both instances write their rows, then read the live ones back (as their second heartbeat would)."""
        for _ in range(2):
            for instance in self.instances.values():
                instance.core.tick(self.now)
                instance.commit_writes()
                instance.core._next_heartbeat_s = 0.0

    def member(self, endpoint: Endpoint, via: Endpoint) -> NodeCore:
        node = NodeCore(Identity.generate(), RecordingTransmit(), wall_clock_s=lambda: wall_now[0])
        self.nodes[endpoint] = node
        instance = self.instances[via]
        instance.change(admin.update_member(instance.storage, self.network_id, node.node_id, {"authorized": True}, WALL_S))
        node.join(self.network_id, via, self.now)
        self.pump(1.0)
        return node

    def pump(self, seconds: float = 0.0, step_s: float = 0.1) -> None:
        end = self.now + seconds
        while True:
            for _ in range(50):
                moved = False
                for endpoint, node in self.nodes.items():
                    sent, node.transmit.datagrams = node.transmit.datagrams, []
                    for data, address in sent:
                        instance = self.instances.get(address)
                        if instance is not None and instance.alive:
                            instance.core.datagram_received(memoryview(data), endpoint, self.now)
                            moved = True
                for instance in self.instances.values():
                    sent, instance.transmit.datagrams = instance.transmit.datagrams, []
                    for data, address in sent:
                        if address in self.nodes and instance.alive:
                            self.nodes[address].datagram_received(memoryview(data), instance.endpoint, self.now)
                            moved = True
                    if instance.alive and instance.commit_writes():
                        moved = True
                if not moved:
                    break
            if self.now >= end:
                return
            self.now += step_s
            for instance in self.instances.values():
                if instance.alive:
                    instance.core.tick(self.now)
            for node in self.nodes.values():
                node.tick(self.now)

    def status(self, node: NodeCore) -> NetworkStatus:
        return node.networks[self.network_id].status

    def controller_endpoint(self, node: NodeCore) -> Endpoint | None:
        return node.membership.controller_endpoint(self.network_id)


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    wall_now[0] = WALL_S
    return Cluster(tmp_path)


def pushes(sent: Counter[str]) -> int:
    """Configs sent: whole ones and deltas."""
    return sent["netconf"] + sent["netconf_delta"]


def test_a_change_made_through_one_instance_reaches_the_members_of_the_other_once(cluster: Cluster) -> None:
    node = cluster.member(("198.18.1.1", 9993), via=A)
    assert cluster.status(node) == NetworkStatus.OK
    a, b = cluster.instances[A], cluster.instances[B]
    b.change(admin.update_member(b.storage, cluster.network_id, node.node_id, {"name": "renamed"}, WALL_S))
    held = node.networks[cluster.network_id].config
    assert held is not None and held.member(node.node_id).name == ""  # A has not heard yet
    sent_before = pushes(a.core.sent)
    a.core.external_change(None)
    cluster.pump()
    held = node.networks[cluster.network_id].config
    assert held is not None and held.member(node.node_id).name == "renamed"
    assert pushes(a.core.sent) == sent_before + 1
    # Its own commits, read back through the feed, are not pushed a second time.
    a.change(admin.update_member(a.storage, cluster.network_id, node.node_id, {"name": "again"}, WALL_S))
    cluster.pump()
    pushed = pushes(a.core.sent)
    a.core.external_change(None)
    a.core.external_change(cluster.network_id)  # covered by the reload already queued
    reloads = [w for w in a.core.take_writes() if isinstance(w, Reload)]
    assert len(reloads) == 1
    a.change(reloads[0].commit(a.storage))
    assert pushes(a.core.sent) == pushed


def test_a_reload_deletes_what_the_other_instance_deleted(cluster: Cluster) -> None:
    node = cluster.member(("198.18.1.1", 9993), via=A)
    a, b = cluster.instances[A], cluster.instances[B]
    b.change(admin.delete_member(b.storage, cluster.network_id, node.node_id))
    a.core.external_change(cluster.network_id)
    a.commit_writes()
    assert a.core.directory.member(cluster.network_id, node.node_id) is None
    b.change(admin.delete_network(b.storage, cluster.network_id))
    a.core.external_change(None)
    a.commit_writes()
    assert a.core.directory.network(cluster.network_id) is None


def test_configs_list_every_live_instance_the_issuing_one_first(cluster: Cluster) -> None:
    cluster.heartbeats()
    node = cluster.member(("198.18.1.1", 9993), via=B)
    held = node.networks[cluster.network_id].config
    assert held is not None and held.controllers == (B, A)
    assert node.membership.controllers[held.network_id >> 24].instances == [B, A]


def test_a_new_instance_is_pushed_to_members_without_a_new_revision(cluster: Cluster) -> None:
    a = cluster.instances[A]
    node = cluster.member(("198.18.1.1", 9993), via=A)
    revision = node.networks[cluster.network_id].config.revision
    wall_now[0] += 1.0  # the news comes as the same revision with newer times: a member refuses older or equal ones
    cluster.heartbeats()  # B's row appears; A's next heartbeat reads it
    cluster.pump()
    held = node.networks[cluster.network_id].config
    assert held.revision == revision and held.controllers == (A, B)
    assert a.core.instances and {i.instance_id for i in a.core.instances} == {i.core.instance_id for i in cluster.instances.values()}


def test_a_member_whose_instance_goes_silent_moves_to_the_other_within_five_seconds(cluster: Cluster) -> None:
    cluster.heartbeats()
    node = cluster.member(("198.18.1.1", 9993), via=A)
    assert cluster.controller_endpoint(node) == A and cluster.status(node) == NetworkStatus.OK
    cluster.pump(3.0)
    cluster.instances[A].alive = False  # SIGKILL
    killed_at = cluster.now
    while cluster.controller_endpoint(node) != B or not cluster.instances[B].core.clients.online(node.node_id, cluster.now):
        assert cluster.now - killed_at < 5.0, "no failover within 5 s"
        cluster.pump(0.1)
    # B serves it: a change made there reaches it.
    b = cluster.instances[B]
    b.change(admin.update_member(b.storage, cluster.network_id, node.node_id, {"name": "after"}, WALL_S))
    cluster.pump()
    assert node.networks[cluster.network_id].config.member(node.node_id).name == "after"
    assert cluster.status(node) == NetworkStatus.OK


def test_a_starting_instance_greets_members_only_when_no_other_instance_is_live(tmp_path: Path, cluster: Cluster) -> None:
    a = cluster.instances[A]
    cluster.instances[B].alive = False  # only A runs (and heartbeats) here
    cluster.member(("198.18.1.1", 9993), via=A)
    # Started alone (a restart): the members still hold sessions with the process that died, so it greets them.
    alone = Instance(a.core.identity, tmp_path / "controller.db", B)
    assert alone.core.greet_members(cluster.now) == 1
    # Started beside a live instance (A heartbeats in pump): its members stay where they are.
    cluster.pump(0.5)
    beside = Instance(a.core.identity, tmp_path / "controller.db", B)
    beside.core.instances = tuple(beside.storage.live_instances(WALL_S - 10.0))
    assert beside.core.greet_members(cluster.now) == 0
    # Restarted in A's place after a SIGKILL, its previous process's row still fresh: that is no other instance.
    restarted = Instance(a.core.identity, tmp_path / "controller.db", A)
    restarted.core.instances = tuple(restarted.storage.live_instances(WALL_S - 10.0))
    assert restarted.core.greet_members(cluster.now) == 1


def test_instance_rows_live_expire_and_leave(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "controller.db")
    storage.record_instance(ControllerInstance("a", ("198.18.0.1:9994",), 1.0, 100.0))
    storage.record_instance(ControllerInstance("b", ("198.18.0.2:9994",), 2.0, 50.0))
    storage.record_instance(ControllerInstance("a", ("198.18.0.3:9994",), 1.0, 110.0))  # renewed, moved
    assert [(i.instance_id, i.endpoints) for i in storage.live_instances(90.0)] == [("a", ("198.18.0.3:9994",))]
    storage.remove_instances("a", 60.0)  # a leaves; b, unheard since 50, is pruned
    assert storage.live_instances(0.0) == []
