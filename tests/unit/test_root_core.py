"""The root's core: identity answers, registration (proven keys, TTL, several addresses per id, bounds),
look-ups (only what was registered, rate-limited), rendezvous, path probes, and unidentified sessions."""

from __future__ import annotations

import json

from l2mesh.root import registry as registry_module
from l2mesh.root.registry import REGISTRATION_TTL_S
from l2mesh.session_server import UNIDENTIFIED_CLIENT_S
from l2mesh.wire.errors import parse_exact
from l2mesh.wire.messages import Frame, MessageKind
from l2mesh.wire.packets import ANY_NODE_ID, IdentityResponse
from tests.root_client import RootClient
from tests.unit.root_world import RootWorld


def test_identity_requests_for_the_roots_id_or_any_id_are_answered_others_refused() -> None:
    world = RootWorld()
    asker = ("198.18.1.2", 9993)
    for node_id in (world.identity.node_id, ANY_NODE_ID, world.identity.node_id ^ 1):
        world.core.datagram_received(memoryview(RootClient.identity_request(node_id)), asker, world.now)
    answers = [data for data, address in world.transmit.datagrams if address == asker]
    assert len(answers) == 2
    keys = parse_exact(IdentityResponse, answers[0])
    assert (keys.x25519, keys.ed25519) == (world.identity.x25519_public, world.identity.ed25519_public)
    assert world.drops["identity_request_refused"] == 1


def test_identity_requests_are_rate_limited_per_source_ip() -> None:
    world = RootWorld()
    for port in range(1, 31):
        world.core.datagram_received(memoryview(RootClient.identity_request(ANY_NODE_ID)), ("198.18.1.2", port), world.now)
    assert 5 <= len(world.transmit.datagrams) <= 12
    assert world.drops["identity_request_rate_limited"] == 30 - len(world.transmit.datagrams)


def test_registration_is_answered_with_ttl_and_observed_and_a_lookup_returns_keys_and_endpoints() -> None:
    world = RootWorld()
    a = world.node(1, register=False)
    answers = world.ask(a, a.client.register(world.now, [("192.168.1.5", 9993), ("127.0.0.1", 9993)]))
    assert [kind for kind, _ in answers] == [MessageKind.ROOT_REGISTERED]
    assert (answers[0][1].ttl_s, answers[0][1].observed) == (REGISTRATION_TTL_S, a.endpoint)
    b = world.node(2)
    reply = world.lookup(b, a.node_id)
    assert reply.registered and reply.node_id == a.node_id
    assert (reply.x25519, reply.ed25519) == (a.client.identity.x25519_public, a.client.identity.ed25519_public)
    # Observed first, then the usable local addresses (loopback is of no use to anyone else).
    assert list(reply.endpoints) == [a.endpoint, ("192.168.1.5", 9993)]


def test_a_lookup_of_an_unknown_node_says_not_registered_with_nothing_else() -> None:
    world = RootWorld()
    a = world.node(1)
    reply = world.lookup(a, 0x1234567890)
    assert (reply.registered, reply.x25519, reply.ed25519, list(reply.endpoints)) == (False, bytes(32), bytes(32), [])


def test_a_registration_without_a_valid_proof_is_refused() -> None:
    world = RootWorld()
    a = world.node(1, register=False)
    assert world.ask(a, a.client.register(world.now, proof_for=world.identity.node_id ^ 1)) == []
    assert world.drops["register_without_proof"] == 1
    assert world.core.status()["registrations"] == 0


def test_a_registration_lives_its_ttl_unless_renewed() -> None:
    world = RootWorld()
    a, b, c = world.node(1), world.node(2), world.node(3)
    for _ in range(4):  # renewed every 25 s, as nodes do
        world.now += 25
        world.ask(a, a.client.register(world.now))
    world.now += 25
    assert world.lookup(b, a.node_id).registered
    assert not world.lookup(b, c.node_id).registered  # c never renewed: gone after its TTL
    world.core.tick(world.now)
    assert world.core.status()["registrations"] == 1


def test_processes_sharing_one_identity_register_from_each_address_and_are_all_looked_up() -> None:
    world = RootWorld()
    first = world.node(1, local_endpoints=[("10.0.0.1", 9994)])
    world.now += 1
    second = world.node(2, identity=first.client.identity, local_endpoints=[("10.0.0.2", 9994)])
    asker = world.node(3)
    reply = world.lookup(asker, first.node_id)
    # Observed addresses of every live registration first (most recently heard first), then the local ones.
    assert list(reply.endpoints) == [second.endpoint, first.endpoint, ("10.0.0.2", 9994), ("10.0.0.1", 9994)]
    assert world.core.status()["registrations"] == 3 and world.core.status()["registered_nodes"] == 2


def test_processes_sharing_one_identity_each_keep_their_own_session_and_renew_their_registration() -> None:
    # Keyed by static key alone, the second handshake took the first process's session: its renewals
    # no longer opened (or their answers went to the other address) and its registration lapsed.
    world = RootWorld()
    first = world.node(1)
    world.now += 1
    second = world.node(2, identity=first.client.identity)
    for _ in range(3):
        world.now += 30
        for node in (first, second):
            answers = world.ask(node, node.client.register(world.now, None))
            assert [kind for kind, _ in answers] == [MessageKind.ROOT_REGISTERED]
    assert world.core.status()["registrations"] == 2 and world.core.status()["sessions"] == 2
    assert not any(reason.startswith("rejected") for reason in world.drops)


def test_registrations_per_node_are_bounded_the_least_recently_heard_giving_way() -> None:
    world = RootWorld()
    shared = world.node(1)
    for number in range(2, 2 + registry_module.MAX_REGISTRATIONS_PER_NODE):
        world.now += 1
        world.node(number, identity=shared.client.identity)
    asker = world.node(99)
    endpoints = list(world.lookup(asker, shared.node_id).endpoints)
    assert len(endpoints) == registry_module.MAX_REGISTRATIONS_PER_NODE
    assert shared.endpoint not in endpoints


def test_the_registry_refuses_past_its_total_bound(monkeypatch) -> None:
    monkeypatch.setattr(registry_module, "MAX_REGISTRATIONS", 2)
    world = RootWorld()
    world.node(1), world.node(2)
    late = world.node(3, register=False)
    assert world.ask(late, late.client.register(world.now)) == []
    assert world.drops["registry_full"] == 1


def test_lookups_are_rate_limited_per_session_and_the_drops_counted() -> None:
    world = RootWorld()
    a = world.node(1)
    for _ in range(100):
        world.send(a, a.client.lookup(a.node_id, world.now))
    answered = len(world.messages(a))
    assert 40 <= answered <= 60
    assert world.drops["lookup_rate_limited"] == 100 - answered


def test_a_meeting_request_sends_both_sides_each_others_endpoints_once_per_pair_and_second() -> None:
    world = RootWorld()
    a, b = world.node(1, local_endpoints=[("192.168.1.5", 9993)]), world.node(2)
    answers = world.ask(a, a.client.meet(b.node_id, world.now))
    assert [(k, m.node_id, m.punch, list(m.endpoints)) for k, m in answers] == [
        (MessageKind.ENDPOINT_HINTS, b.node_id, True, [b.endpoint])
    ]
    [(kind, to_b)] = world.messages(b)
    assert (to_b.node_id, to_b.punch, list(to_b.endpoints)) == (a.node_id, True, [a.endpoint, ("192.168.1.5", 9993)])
    for _ in range(5):  # the pair's bucket holds two: one more passes, then one per second
        world.send(a, a.client.meet(b.node_id, world.now))
    assert len(world.messages(a)) == 1 and world.drops["rendezvous_rate_limited"] == 4
    world.now += 1.0
    assert len(world.ask(a, a.client.meet(b.node_id, world.now))) == 1


def test_a_meeting_with_an_unregistered_node_or_from_an_unregistered_one_is_refused() -> None:
    world = RootWorld()
    a, b = world.node(1), world.node(2, register=False)
    assert world.ask(a, a.client.meet(b.node_id, world.now)) == []
    assert world.ask(b, b.client.meet(a.node_id, world.now)) == []
    assert world.drops["rendezvous_target_unregistered"] == 1 and world.drops["endpoint_hints_refused"] == 1


def test_a_path_probe_is_answered_with_the_address_it_came_from() -> None:
    world = RootWorld()
    a = world.node(1)
    [(kind, reply)] = world.ask(a, a.client.probe(77, world.now))
    assert (kind, reply.probe_id, reply.observed) == (MessageKind.PATH_PROBE_REPLY, 77, a.endpoint)
    assert world.ask(a, a.client.keepalive(world.now)) == []


def test_other_messages_are_dropped_and_counted() -> None:
    world = RootWorld()
    a = world.node(1)
    frame = Frame.build({"network_id": 1, "frame": bytes(60)})
    assert world.ask(a, a.client.seal(frame, world.now)) == []
    assert world.drops["unhandled_message"] == 1


def test_a_session_that_never_registers_is_dropped_after_the_unidentified_grace() -> None:
    world = RootWorld()
    world.node(1, register=False)
    world.node(2)
    assert world.core.status()["sessions"] == 2
    world.now += UNIDENTIFIED_CLIENT_S + 1
    world.core.tick(world.now)
    assert world.core.status()["sessions"] == 1


def test_status_is_json() -> None:
    world = RootWorld()
    world.node(1)
    status = json.loads(json.dumps(world.core.status()))
    assert status["id"] == f"{world.identity.node_id:010x}" and status["registrations"] == 1
    assert set(status) >= {"sessions", "relayed_packets", "relayed_bytes", "drops"}
