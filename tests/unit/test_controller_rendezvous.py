"""l2mesh.controller.relay, the decisions alone: rendezvous between members, the relay's byte budget,
and a deauthorize ending relaying at once (no cache outlives a change)."""

from __future__ import annotations

from collections import Counter

from l2mesh.controller.changes import Committed
from l2mesh.controller.clients import ONLINE_WINDOW_S, Client
from l2mesh.controller.directory import Directory
from l2mesh.controller.model import Member, Network
from l2mesh.controller.relay import RELAY_BURST_S, Relay
from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.session import SessionTable
from l2mesh.wire.messages import EndpointHints
from l2mesh.wire.packets import RELAY_HEADER, PacketType

CONTROLLER = Identity.generate()
NETWORK = Network(make_network_id(CONTROLLER.node_id, 1), "lab")


class World:
    def __init__(self, authorize_b: bool = True, limit_mbps: int = 5000) -> None:
        self.relay = Relay(limit_mbps, Counter())
        self.directory = Directory()
        self.a, self.b = Identity.generate(), Identity.generate()
        table = SessionTable(CONTROLLER.x25519_private)
        self.by_node: dict[int, Client] = {}
        for identity, endpoint, authorized in ((self.a, ("198.18.1.2", 9993), True), (self.b, ("198.18.2.2", 9993), authorize_b)):
            client = Client(table.session_for(identity.x25519_public), endpoint, identity.node_id, identity.public, networks={NETWORK.network_id})
            client.last_seen_s = 1.0
            self.by_node[identity.node_id] = client
            self.authorize(identity, authorized)

    def authorize(self, identity: Identity, authorized: bool) -> None:
        member = Member(NETWORK.network_id, identity.node_id, identity.public, authorized=authorized)
        self.directory.apply(Committed(networks=(NETWORK,), members=(member,)))

    def client(self, identity: Identity) -> Client:
        return self.by_node[identity.node_id]

    def envelope(self, size: int = 100) -> memoryview:
        header = RELAY_HEADER.pack(PacketType.RELAY, 0, self.b.node_id.to_bytes(5, "big"), self.a.node_id.to_bytes(5, "big"))
        return memoryview(header + bytes(size - len(header)))

    def target(self, now: float = 1.0, size: int = 100):
        return self.relay.target(self.envelope(size), self.client(self.a).endpoint, now, 1, self.by_node, self.directory)


def test_an_envelope_between_authorized_online_members_goes_to_the_targets_endpoint_and_is_counted() -> None:
    world = World()
    assert world.target() == world.client(world.b).endpoint
    assert (world.relay.relayed_packets, world.relay.relayed_bytes) == (1, 100)


def test_a_deauthorize_applied_to_the_directory_stops_the_very_next_envelope() -> None:
    world = World()
    assert world.target() is not None
    world.authorize(world.b, False)
    assert world.target() is None and world.relay.drops["relay_not_authorized"] == 1
    world.authorize(world.b, True)
    assert world.target() is not None


def test_an_offline_target_gets_nothing() -> None:
    world = World()
    assert world.target(now=1.0 + ONLINE_WINDOW_S + 0.1) is None
    assert world.relay.drops["relay_target_offline"] == 1


def test_a_sender_over_its_budget_is_dropped_until_the_bucket_refills() -> None:
    world = World(limit_mbps=8)  # 1 MB/s, a bucket of RELAY_BURST_S of it
    burst_bytes = int(1_000_000 * RELAY_BURST_S)
    assert world.target(size=burst_bytes) is not None
    assert world.target(size=1000) is None and world.relay.drops["relay_rate_limited"] == 1
    assert world.target(now=1.0 + RELAY_BURST_S, size=1000) is not None


def test_a_rendezvous_tells_both_members_to_probe_each_others_endpoints_at_most_twice_in_a_burst() -> None:
    world = World()
    a, b = world.client(world.a), world.client(world.b)
    b.local_endpoints = [("198.19.2.2", 9993)]
    hints = world.relay.rendezvous(a, world.b.node_id, 1.0, world.by_node, world.directory)
    assert [one for one, _ in hints] == [a, b]
    to_a = EndpointHints.parse(hints[0][1])
    assert (to_a.node_id, to_a.punch, [tuple(e) for e in to_a.endpoints]) == (world.b.node_id, True, [b.endpoint, ("198.19.2.2", 9993)])
    assert EndpointHints.parse(hints[1][1]).node_id == world.a.node_id
    assert world.relay.rendezvous(b, world.a.node_id, 1.0, world.by_node, world.directory)  # the bucket holds two
    assert world.relay.rendezvous(a, world.b.node_id, 1.0, world.by_node, world.directory) == []
    assert world.relay.drops["rendezvous_rate_limited"] == 1


def test_no_rendezvous_with_an_unauthorized_or_offline_member() -> None:
    world = World(authorize_b=False)
    a = world.client(world.a)
    assert world.relay.rendezvous(a, world.b.node_id, 1.0, world.by_node, world.directory) == []
    assert world.relay.rendezvous(a, 0x1000000009, 1.0, world.by_node, world.directory) == []
    assert world.relay.drops == {"rendezvous_refused": 1, "rendezvous_target_offline": 1}
