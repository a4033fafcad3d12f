"""A RootCore in memory with test nodes around it (tests/root_client.py), for the root's unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from l2mesh.identity import Identity
from l2mesh.root.core import RootCore
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import MessageKind
from tests.root_client import RootClient
from tests.unit.recording import RecordingTransmit


@dataclass(eq=False)
class RootNode:
    client: RootClient
    endpoint: Endpoint
    stream: bool = False

    @property
    def node_id(self) -> int:
        return self.client.node_id


class RootWorld:
    """One root; time is `now`, moved by the test; what the root sends is read per address."""

    def __init__(self, relay_limit_mbps: int = 5000) -> None:
        self.identity = Identity.generate()
        self.transmit = RecordingTransmit()
        self.core = RootCore(self.identity, self.transmit, relay_limit_mbps)
        self.now = 1.0

    def node(self, number: int, register: bool = True, local_endpoints: list[Endpoint] | None = None,
             stream: bool = False, identity: Identity | None = None, endpoint: Endpoint | None = None) -> RootNode:
        """A node at 198.18.<number>.2:9993 with a session to the root (and registered, unless told not to)."""
        node = RootNode(RootClient(self.identity.public, identity), endpoint or (f"198.18.{number}.2", 9993), stream)
        self.send(node, node.client.initiation(self.now))
        for data in self.sent_to(node):
            node.client.receive(data, self.now)
        if register:
            kind, registered = self.ask(node, node.client.register(self.now, local_endpoints))[0]
            assert kind == MessageKind.ROOT_REGISTERED, kind
        return node

    def send(self, node: RootNode, data: bytes, source: Endpoint | None = None) -> None:
        self.core.datagram_received(memoryview(data), source or node.endpoint, self.now, node.stream)

    def sent_to(self, node: RootNode) -> list[bytes]:
        """Datagrams the root sent to node's address since last asked (taken off the record)."""
        mine = [data for data, address in self.transmit.datagrams if address == node.endpoint]
        self.transmit.datagrams = [(d, a) for d, a in self.transmit.datagrams if a != node.endpoint]
        return mine

    def messages(self, node: RootNode) -> list[tuple[MessageKind, Any]]:
        return [m for m in (node.client.receive(data, self.now) for data in self.sent_to(node)) if m is not None]

    def ask(self, node: RootNode, data: bytes) -> list[tuple[MessageKind, Any]]:
        """Send a sealed message, then read the root's answers to node."""
        self.send(node, data)
        return self.messages(node)

    def lookup(self, asker: RootNode, node_id: int) -> Any:
        answers = self.ask(asker, asker.client.lookup(node_id, self.now))
        assert [kind for kind, _ in answers] == [MessageKind.ROOT_LOOKUP_REPLY]
        return answers[0][1]

    @property
    def drops(self) -> dict[str, int]:
        return dict(self.core.status()["drops"])
