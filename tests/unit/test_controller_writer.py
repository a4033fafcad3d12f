"""l2mesh.edge.controller.writer with a real reactor thread (no sockets): every storage call is made on
the writer thread, every commit is applied on the reactor thread in commit order, and admin callers
hear the core's answer only after both."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from l2mesh.controller import admin
from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.directory import Directory
from l2mesh.controller.joins import MemberAsked
from l2mesh.controller.model import Network, ValidationError
from l2mesh.controller.storage import Storage
from l2mesh.edge.controller.storage_url import storage_from_url
from l2mesh.edge.controller.writer import StorageWriter
from l2mesh.edge.reactor import Reactor
from l2mesh.identity import Identity
from l2mesh.node.core import NetworkStatus, NodeCore
from tests.unit.recording import RecordingTransmit

CONTROLLER = Identity.generate()
CONTROLLER_ENDPOINT = ("198.18.0.1", 9994)
NODE_ENDPOINT = ("198.18.1.2", 9993)
TIMEOUT_S = 10.0


class ThreadCheckedStorage:
    """Storage that remembers which threads called it."""

    def __init__(self, url: str) -> None:
        self.inner = storage_from_url(url)
        self.threads: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def called(*args: Any, **kwargs: Any) -> Any:
            self.threads.add(threading.current_thread().name)
            return attribute(*args, **kwargs)

        return called


class Running:
    """A reactor thread and a storage writer around apply(), as the controller process wires them."""

    def __init__(self, storage: Any, apply: Callable[[Committed], Any], on_tick: Callable[[float], None] = lambda now: None) -> None:
        self.writer = StorageWriter(storage, apply)
        self.reactor = Reactor(on_tick, tick_interval_s=0.05)
        self.reactor.add_reader(self.writer.doorbell, self.writer.results_ready)
        self.thread = threading.Thread(target=self.reactor.run, name="reactor")

    def start(self) -> None:
        self.writer.start()
        self.thread.start()

    def on_reactor(self, function: Callable[[], Any]) -> Any:
        return self.reactor.call(function).result(TIMEOUT_S)

    def stop(self) -> None:
        self.writer.stop()
        self.reactor.stop()
        self.thread.join(TIMEOUT_S)
        self.writer.close()


@pytest.fixture
def storage(storage_url: str) -> ThreadCheckedStorage:
    return ThreadCheckedStorage(storage_url)


@pytest.fixture
def recorded(storage: ThreadCheckedStorage) -> Iterator[tuple[Running, list[tuple[str, Committed]]]]:
    applied: list[tuple[str, Committed]] = []

    def apply(change: Committed) -> str:
        applied.append((threading.current_thread().name, change))
        return f"applied #{len(applied)}"

    running = Running(storage, apply)
    running.start()
    yield running, applied
    running.stop()


def network_id_of(change: Future[Any], applied: list[tuple[str, Committed]]) -> int:
    change.result(TIMEOUT_S)
    network = applied[-1][1].answer
    assert isinstance(network, Network)
    return network.network_id


def test_admin_changes_and_core_writes_commit_on_the_writer_and_apply_on_the_reactor_in_commit_order(
    storage: ThreadCheckedStorage, recorded: tuple[Running, list[tuple[str, Committed]]]
) -> None:
    running, applied = recorded
    created = running.writer.change(lambda s: admin.create_network(s, CONTROLLER.node_id, {"name": "lab"}))
    network_id = network_id_of(created, applied)
    node = Identity.generate()
    futures = []
    for i in range(5):
        running.writer.write(MemberAsked(network_id, node.node_id, node.public, f"198.18.1.2:{4000 + i}", False, 1.0))
        futures.append(running.writer.change(lambda s, i=i: admin.update_member(s, network_id, node.node_id, {"name": f"n{i}"}, 1.0)))
    answers = [f.result(TIMEOUT_S) for f in futures]
    assert answers == [f"applied #{3 + 2 * i}" for i in range(5)]  # each answer after its own commit was applied
    assert {thread for thread, _ in applied} == {"reactor"}
    endpoints = [c.members[0].endpoint for _, c in applied[1:]]
    assert endpoints == [f"198.18.1.2:{4000 + i // 2}" for i in range(10)]  # the rows as each commit left them, in order
    assert storage.threads == {"l2mesh-storage"}


def test_a_refused_admin_change_reaches_its_caller_and_nothing_is_applied(
    recorded: tuple[Running, list[tuple[str, Committed]]],
) -> None:
    running, applied = recorded
    network_id = network_id_of(running.writer.change(lambda s: admin.create_network(s, CONTROLLER.node_id, {"name": "lab"})), applied)
    refused = running.writer.change(lambda s: admin.update_member(s, network_id, 0x1000000001, {"authorized": "yes"}, 1.0))
    with pytest.raises(ValidationError, match="authorized must be true or false"):
        refused.result(TIMEOUT_S)
    assert len(applied) == 1


def test_a_core_write_that_raises_comes_back_as_its_failed_result(recorded: tuple[Running, list[tuple[str, Committed]]]) -> None:
    running, applied = recorded
    node = Identity.generate()
    write = MemberAsked(0x1, node.node_id, node.public, "198.18.1.2:9993", False, 1.0)

    class Broken:
        def commit(self, storage: Storage) -> Committed:
            raise OSError("disk full")

        def failed(self) -> Committed:
            return write.failed()

    running.writer.write(Broken())
    running.writer.change(lambda s: Committed()).result(TIMEOUT_S)  # everything before it has been applied
    assert applied[0][1] == write.failed() and running.writer.failed_writes == 1


def test_stopping_commits_what_is_queued_then_refuses_changes(storage: ThreadCheckedStorage) -> None:
    running = Running(storage, lambda change: None)
    queued = running.writer.change(lambda s: admin.create_network(s, CONTROLLER.node_id, {"name": "lab"}))
    running.start()
    running.writer.stop()
    queued.result(TIMEOUT_S)
    assert len(storage.inner.list_networks()) == 1
    with pytest.raises(Exception, match="stopping"):
        running.writer.change(lambda s: Committed()).result(TIMEOUT_S)
    running.stop()


def test_a_member_joins_and_is_authorized_with_no_storage_call_on_the_reactor_thread(storage: ThreadCheckedStorage) -> None:
    network = admin.create_network(storage, CONTROLLER.node_id, {"name": "lab", "pools": ["10.147.17.0/24"]}).answer
    assert isinstance(network, Network)
    transmit = RecordingTransmit()
    core = ControllerCore(CONTROLLER, Directory.load(storage), transmit)
    storage.threads.clear()
    running = Running(storage, core.committed, core.tick)

    def after_wakeup() -> None:
        for write in core.take_writes():
            running.writer.write(write)

    running.reactor.after_wakeup = after_wakeup
    running.start()
    node = NodeCore(Identity.generate(), RecordingTransmit())
    try:

        def exchange() -> None:
            """Node datagrams to the core (on the reactor thread), and the core's back to the node."""
            now = time.monotonic()
            sent, node.transmit.datagrams = node.transmit.datagrams, []

            def deliver() -> list[tuple[bytes, Any]]:
                for data, _ in sent:
                    core.datagram_received(memoryview(data), NODE_ENDPOINT, time.monotonic())
                answers, transmit.datagrams = transmit.datagrams, []
                return answers

            for data, _ in running.on_reactor(deliver):
                node.datagram_received(memoryview(data), CONTROLLER_ENDPOINT, now)
            node.tick(now)

        def wait_for(status: NetworkStatus) -> None:
            deadline = time.monotonic() + TIMEOUT_S
            while node.networks[network.network_id].status != status:
                assert time.monotonic() < deadline, f"node still {node.networks[network.network_id].status}"
                exchange()
                time.sleep(0.01)

        node.join(network.network_id, CONTROLLER_ENDPOINT, time.monotonic())
        wait_for(NetworkStatus.ACCESS_DENIED)
        doc = running.writer.change(lambda s: admin.update_member(s, network.network_id, node.node_id, {"authorized": True}, 1.0))
        assert doc.result(TIMEOUT_S)["ips"] == ["10.147.17.1"]
        wait_for(NetworkStatus.OK)
        assert storage.threads == {"l2mesh-storage"}
    finally:
        running.stop()
