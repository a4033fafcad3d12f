"""l2mesh.controller.clients: sessions with whoever talks to the controller, and who is who and online."""

from __future__ import annotations

from collections import Counter

import pytest

from l2mesh import session_server as session_server_module
from l2mesh.controller.clients import (
    MAX_LOCAL_ENDPOINTS,
    MAX_VERSION_CHARS,
    ONLINE_WINDOW_S,
    UNIDENTIFIED_CLIENT_S,
    Clients,
    printable_version,
)
from l2mesh.identity import Identity
from l2mesh.session import SessionTable
from l2mesh.wire.messages import Keepalive

CONTROLLER = Identity.generate()
NET = 0x1234567890000001


class Node:
    """A node's side of its session with the controller."""

    def __init__(self, endpoint: tuple[str, int]) -> None:
        self.identity = Identity.generate()
        self.endpoint = endpoint
        self.session = SessionTable(self.identity.x25519_private).session_for(CONTROLLER.x25519_public)

    def handshake(self, clients: Clients, now: float) -> None:
        response = clients.handshake_initiation(memoryview(self.session.create_initiation(now)), self.endpoint, now)
        assert response is not None
        self.session.table.handle_response(response, now)

    def send(self, clients: Clients, message: bytes, now: float) -> bytes:
        packet = self.session.seal(message, now)
        assert packet is not None
        client, opened = clients.open(memoryview(bytes(packet)), self.endpoint, now)
        assert client.session.remote_static == self.identity.x25519_public
        return opened


@pytest.fixture
def clients() -> Clients:
    return Clients(CONTROLLER.x25519_private, Counter())


def test_a_handshake_makes_an_unidentified_client_that_is_dropped_unless_it_names_its_node(clients: Clients) -> None:
    quiet, named = Node(("198.18.1.2", 9993)), Node(("198.18.2.2", 9993))
    quiet.handshake(clients, 1.0)
    named.handshake(clients, 1.0)
    client = clients.by_static[named.identity.x25519_public]
    clients.identify(client, named.identity.node_id, named.identity.public, NET)
    assert clients.by_node == {named.identity.node_id: client} and client.networks == {NET}
    clients.poll(1.0 + UNIDENTIFIED_CLIENT_S + 0.1)
    assert set(clients.by_static) == {named.identity.x25519_public}
    assert quiet.identity.x25519_public not in clients.table.sessions


def test_too_many_unidentified_clients_refuse_new_handshakes(clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_server_module, "MAX_UNIDENTIFIED_CLIENTS", 2)
    for i in range(2):
        Node((f"198.18.{i + 1}.2", 9993)).handshake(clients, 1.0)
    late = Node(("198.18.9.2", 9993))
    assert clients.handshake_initiation(memoryview(late.session.create_initiation(1.0)), late.endpoint, 1.0) is None
    assert clients.drops["too_many_unidentified_clients"] == 1


def test_a_client_follows_its_node_to_a_new_address_and_is_online_while_heard(clients: Clients) -> None:
    node = Node(("198.18.1.2", 9993))
    node.handshake(clients, 1.0)
    assert node.send(clients, Keepalive.build({}), 2.0) == Keepalive.build({})
    client = clients.by_static[node.identity.x25519_public]
    clients.identify(client, node.identity.node_id, node.identity.public, NET)
    node.endpoint = ("198.18.7.7", 4000)  # NAT rebinding
    node.send(clients, Keepalive.build({}), 3.0)
    assert client.endpoint == ("198.18.7.7", 4000)
    assert clients.online(node.identity.node_id, 3.0 + ONLINE_WINDOW_S) is client
    assert clients.online_in(NET, 3.0 + ONLINE_WINDOW_S) == [client]
    assert clients.online_in(NET + 1, 3.0) == []
    assert clients.online(node.identity.node_id, 3.1 + ONLINE_WINDOW_S) is None


def test_local_endpoints_keep_only_usable_addresses_and_at_most_eight(clients: Clients) -> None:
    node = Node(("198.18.1.2", 9993))
    node.handshake(clients, 1.0)
    client = clients.by_static[node.identity.x25519_public]
    wanted = [("0.0.0.0", 1), ("127.0.0.1", 2), ("224.0.0.1", 3), ("198.19.1.2", 0)] + [("198.19.1.2", p) for p in range(1, 12)]
    clients.set_local_endpoints(client, wanted)
    assert client.local_endpoints == [("198.19.1.2", p) for p in range(1, MAX_LOCAL_ENDPOINTS + 1)]
    assert client.endpoints[0] == node.endpoint


def test_a_greeting_is_one_initiation_until_it_is_answered(clients: Clients) -> None:
    node = Identity.generate()
    assert clients.greeting(node.public, 1.0) is not None
    assert clients.greeting(node.public, 1.5) is None


def test_a_reported_version_is_shown_printable_and_bounded() -> None:
    assert printable_version("0.1.0") == "0.1.0"
    assert printable_version("1.0\x1b[31m\nevil") == "1.0[31mevil"
    assert len(printable_version("9" * 1000)) == MAX_VERSION_CHARS
