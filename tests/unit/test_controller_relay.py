"""The controller's relay: it forwards envelopes between authorized members only, and a run of
same-envelope segments (UDP GRO) in one segmented send."""

from __future__ import annotations

from pathlib import Path

from l2mesh.controller.changes import Committed
from l2mesh.controller.clients import Client
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.directory import Directory
from l2mesh.controller.model import Member
from l2mesh.edge.controller.sqlite_storage import SqliteStorage
from l2mesh.identity import Identity
from l2mesh.wire.packets import RELAY_HEADER, PacketType

SEGMENT = 1444


class Recording:
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []
        self.segmented: list[tuple[bytes, int, tuple[str, int]]] = []

    def send_datagram(self, data, address) -> None:
        self.datagrams.append((bytes(data), address))

    def send_segments(self, data, segment_bytes, address) -> None:
        self.segmented.append((bytes(data), segment_bytes, address))


def relay_world(tmp_path: Path, authorize_b: bool = True):
    controller = Identity.generate()
    storage = SqliteStorage(tmp_path / "c.db")
    network = storage.create_network(controller.node_id, {"name": "n"})
    transmit = Recording()
    core = ControllerCore(controller, Directory.load(storage), transmit)
    members = {}
    for name, endpoint, authorized in (("a", ("198.18.1.2", 9993), True), ("b", ("198.18.2.2", 9993), authorize_b)):
        identity = Identity.generate()
        core.committed(Committed(members=(Member(network.network_id, identity.node_id, identity.public, authorized=authorized),)))
        client = Client(core.clients.table.session_for(identity.x25519_public), endpoint, identity.node_id, identity.public, {network.network_id})
        core.clients.by_static[identity.x25519_public] = client
        core.clients.by_node[identity.node_id] = client
        members[name] = (identity, client)
    return core, transmit, members


def envelope(src: Identity, dst: Identity) -> bytes:
    return RELAY_HEADER.pack(PacketType.RELAY, 0, dst.node_id.to_bytes(5, "big"), src.node_id.to_bytes(5, "big"))


def test_a_run_of_one_envelope_is_forwarded_in_one_segmented_send(tmp_path: Path) -> None:
    core, transmit, members = relay_world(tmp_path)
    (a, client_a), (b, client_b) = members["a"], members["b"]
    run = b"".join(envelope(a, b) + bytes([i]) * (SEGMENT - 12) for i in range(5)) + envelope(a, b) + b"tail"
    assert core.segments_received(memoryview(run), SEGMENT, client_a.endpoint, 1.0) is True
    assert transmit.segmented == [(run, SEGMENT, client_b.endpoint)]
    assert core.relay.relayed_packets == 6


def test_a_run_with_different_envelopes_is_left_to_the_per_datagram_path(tmp_path: Path) -> None:
    core, transmit, members = relay_world(tmp_path)
    (a, client_a), (b, _) = members["a"], members["b"]
    run = envelope(a, b) + bytes(SEGMENT - 12) + envelope(b, a) + b"x"
    assert core.segments_received(memoryview(run), SEGMENT, client_a.endpoint, 1.0) is False
    assert transmit.segmented == []


def test_relay_refuses_a_spoofed_sender_address_and_an_unauthorized_target(tmp_path: Path) -> None:
    core, transmit, members = relay_world(tmp_path, authorize_b=False)
    (a, client_a), (b, _) = members["a"], members["b"]
    packet = memoryview(envelope(a, b) + b"ciphertext")
    core.datagram_received(packet, ("198.18.9.9", 1), 1.0)  # not where a's session is
    core.datagram_received(packet, client_a.endpoint, 1.0)  # b is not authorized
    assert transmit.datagrams == []
    assert core.drops["relay_spoofed_or_unknown_source"] == 1
    assert core.drops["relay_not_authorized"] == 1
