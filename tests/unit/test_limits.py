"""Per-source limits where input arrives (issue 16): in each sans-IO core, a flood from one source is cut
at its rate and counted as <what>_rate_limited, another source is unaffected, and the limiters' tables
stay bounded however many sources a flood spoofs."""

from __future__ import annotations

import logging
from collections import Counter

from l2mesh import __version__
from l2mesh.controller import multicast as controller_multicast
from l2mesh.controller.core import NETCONF_REQUEST_BURST, PATH_PROBE_BURST
from l2mesh.edge.drop_log import DropLog
from l2mesh.identity import Identity
from l2mesh.node.networks import ANNOUNCEMENT_BURST
from l2mesh.node.paths import PROBE_ANSWER_BURST, PUNCH_BURST
from l2mesh.ratelimit import KeyedLimit, is_limit_drop
from l2mesh.relaying import RELAY_BURST_S, RENDEZVOUS_BURST_PER_ASKER, RendezvousBudget
from l2mesh.root.core import PATH_PROBE_BURST as ROOT_PATH_PROBE_BURST
from l2mesh.root.core import REGISTER_BURST
from l2mesh.session_server import (
    IDENTITY_REQUEST_BURST_PER_SOURCE,
    IDENTITY_REQUESTS_TOTAL_PER_S,
    MAX_IDENTITY_REQUEST_SOURCES,
    IdentityDesk,
)
from l2mesh.switch.multicast import group_fields, group_key
from l2mesh.wire.messages import (
    NETCONF_PROOF_CONTEXT,
    EndpointHints,
    MessageKind,
    MulticastLike,
    MulticastSubscriptions,
    NetconfRequest,
    PathProbe,
)
from l2mesh.wire.packets import IdentityRequest
from tests.unit.harness import Member, World, controller_of
from tests.unit.root_world import RootWorld

FLOOD = 100
MDNS = group_key(b"\x01\x00\x5e\x00\x00\xfb")


# -- the limiter itself ------------------------------------------------------------------------------------


def test_a_keyed_limit_cuts_one_key_at_its_burst_then_its_rate_and_leaves_other_keys_alone() -> None:
    drops: Counter[str] = Counter()
    limit = KeyedLimit("thing_rate_limited", 2.0, 5.0, drops)
    assert sum(limit.take("flooder", 0.0) for _ in range(FLOOD)) == 5
    assert drops == {"thing_rate_limited": FLOOD - 5}
    assert limit.take("other", 0.0)
    assert sum(limit.take("flooder", 1.0) for _ in range(FLOOD)) == 2  # one second at 2/s
    assert is_limit_drop("thing_rate_limited") and not is_limit_drop("relay_malformed")


def test_a_keyed_limit_forgets_the_oldest_keys_and_bounds_the_total_under_a_spoofed_flood() -> None:
    drops: Counter[str] = Counter()
    limit = KeyedLimit("thing_rate_limited", 1.0, 1.0, drops, max_keys=64, total_per_s=100.0)
    passed = sum(limit.take(("198.18.0.0", source), 0.0) for source in range(10_000))
    assert passed == 100 and drops["thing_rate_limited"] == 10_000 - 100
    assert len(limit.per_key) == 64


# -- identity requests (controller and root: IdentityDesk) ------------------------------------------------


def desk() -> tuple[IdentityDesk, Identity, Counter[str]]:
    identity, drops = Identity.generate(), Counter[str]()
    return IdentityDesk(identity, frozenset({identity.node_id}), drops), identity, drops


def test_identity_requests_from_one_source_are_cut_at_its_burst_and_another_source_is_answered() -> None:
    identity_desk, identity, drops = desk()
    request = memoryview(IdentityRequest.build({"node_id": identity.node_id}))
    answered = sum(identity_desk.answer(request, ("198.18.1.2", port), 1.0) is not None for port in range(FLOOD))
    assert answered == IDENTITY_REQUEST_BURST_PER_SOURCE
    assert drops == {"identity_request_rate_limited": FLOOD - answered}
    assert identity_desk.answer(request, ("198.18.2.2", 9993), 1.0) is not None


def test_identity_requests_from_spoofed_sources_are_bounded_in_total_and_in_remembered_sources() -> None:
    identity_desk, identity, drops = desk()
    request = memoryview(IdentityRequest.build({"node_id": identity.node_id}))
    sources = [f"198.18.{n // 250}.{n % 250 + 1}" for n in range(5000)]
    answered = sum(identity_desk.answer(request, (source, 9993), 1.0) is not None for source in sources)
    assert answered == IDENTITY_REQUESTS_TOTAL_PER_S
    assert drops["identity_request_rate_limited"] == len(sources) - answered
    assert len(identity_desk._limit.per_key) <= MAX_IDENTITY_REQUEST_SOURCES


# -- the controller core -------------------------------------------------------------------------------------


def two_members(world: World) -> tuple[int, Member, Member]:
    controller = controller_of(world)
    network_id = controller.create_network(pools=["10.147.17.0/24"])
    members = [world.add_member(), world.add_member()]
    for member in members:
        member.join(network_id, controller)
        controller.authorize(network_id, member)
    world.run(1.0)
    assert all(m.status() == "OK" for m in members)
    return network_id, members[0], members[1]


def send_to(world: World, sender: Member, node_id: int, message: bytes, times: int = 1) -> None:
    for _ in range(times):
        sender.core.send_message(node_id, message, world.now)
    world.settle()


def netconf_request(member: Member, network_id: int) -> bytes:
    """What a member sends for a whole config (as membership.py builds it)."""
    identity = member.identity
    proof = identity.sign(NETCONF_PROOF_CONTEXT + identity.x25519_public + network_id.to_bytes(8, "big"))
    return NetconfRequest.build(
        {"network_id": network_id, "have_revision": 0, "ed25519": identity.ed25519_public, "proof": proof, "client_version": __version__}
    )


def test_a_member_asking_for_its_config_in_a_loop_is_answered_at_the_limit_and_another_member_as_usual(world: World) -> None:
    network_id, flooder, other = two_members(world)
    controller = controller_of(world)
    world.run(2.0)  # the join's requests have refilled the bucket
    before = controller.sent.get("netconf", 0)
    send_to(world, flooder, controller.node_id, netconf_request(flooder, network_id), FLOOD)
    assert controller.sent["netconf"] - before == NETCONF_REQUEST_BURST
    assert controller.drops["netconf_request_rate_limited"] == FLOOD - NETCONF_REQUEST_BURST
    send_to(world, other, controller.node_id, netconf_request(other, network_id))
    assert controller.sent["netconf"] - before == NETCONF_REQUEST_BURST + 1
    assert controller.drops["netconf_request_rate_limited"] == FLOOD - NETCONF_REQUEST_BURST
    assert flooder.status() == "OK"


def test_path_probes_to_the_controller_are_answered_at_the_limit_per_session(world: World) -> None:
    _, flooder, other = two_members(world)
    controller = controller_of(world)
    world.run(30.0)
    dropped = controller.drops.get("path_probe_rate_limited", 0)
    send_to(world, flooder, controller.node_id, PathProbe.build({"probe_id": 7}), FLOOD)
    assert controller.drops["path_probe_rate_limited"] - dropped == FLOOD - PATH_PROBE_BURST
    send_to(world, other, controller.node_id, PathProbe.build({"probe_id": 8}))
    assert controller.drops["path_probe_rate_limited"] - dropped == FLOOD - PATH_PROBE_BURST


def test_multicast_likes_are_cut_per_member_and_network(world: World) -> None:
    network_id, flooder, other = two_members(world)
    controller = controller_of(world)
    like = MulticastLike.build({"network_id": network_id, "ttl_s": 180, "complete": True, "groups": [group_fields(MDNS)]})
    world.run(10.0)
    send_to(world, flooder, controller.node_id, like, FLOOD)
    assert controller.drops["multicast_like_rate_limited"] == FLOOD - controller_multicast.LIKE_BURST
    send_to(world, other, controller.node_id, like)
    assert controller.drops["multicast_like_rate_limited"] == FLOOD - controller_multicast.LIKE_BURST
    assert set(controller.core.multicast.networks[network_id].groups.subscribers(MDNS, world.now)) >= {flooder.node_id, other.node_id}


def test_rendezvous_requests_are_bounded_per_asker_across_peers_as_well_as_per_pair() -> None:
    drops: Counter[str] = Counter()
    budget = RendezvousBudget(drops)
    granted = sum(budget.take(1, peer, 1.0) for peer in range(2, 2 + 1000))
    assert granted == RENDEZVOUS_BURST_PER_ASKER
    assert drops == {"rendezvous_per_asker_rate_limited": 1000 - granted}
    assert budget.take(5000, 5001, 1.0)  # another asker
    assert budget.take(5000, 5001, 1.0) and not budget.take(5000, 5001, 1.0)  # the pair's bucket holds two
    assert drops["rendezvous_rate_limited"] == 1


# -- the root core --------------------------------------------------------------------------------------------


def test_registrations_at_a_root_are_cut_per_session_and_another_node_registers() -> None:
    world = RootWorld()
    flooder, other = world.node(1), world.node(2, register=False)
    answers = sum(len(world.ask(flooder, flooder.client.register(world.now))) for _ in range(FLOOD))
    assert answers == REGISTER_BURST - 1  # world.node's own registration took one
    assert world.drops["register_rate_limited"] == FLOOD - answers
    assert [kind for kind, _ in world.ask(other, other.client.register(world.now))] == [MessageKind.ROOT_REGISTERED]


def test_path_probes_to_a_root_are_cut_per_session() -> None:
    world = RootWorld()
    flooder, other = world.node(1), world.node(2)
    answers = sum(len(world.ask(flooder, flooder.client.probe(n, world.now))) for n in range(FLOOD))
    assert answers == ROOT_PATH_PROBE_BURST
    assert world.drops["path_probe_rate_limited"] == FLOOD - answers
    assert [kind for kind, _ in world.ask(other, other.client.probe(1, world.now))] == [MessageKind.PATH_PROBE_REPLY]


def test_relay_traffic_over_a_roots_tcp_stream_meets_the_same_per_origin_budget_and_other_origins_are_unaffected() -> None:
    world = RootWorld(relay_limit_mbps=8)  # 1 MB/s, a bucket of RELAY_BURST_S of it
    streamed, udp, target = world.node(1, stream=True), world.node(2), world.node(3)
    packet = streamed.client.envelope(target.node_id, bytes(988))
    burst_packets = int(1_000_000 * RELAY_BURST_S) // len(packet)
    run = packet * 10  # what one read of the stream delivers, forwarded as one segmented send when within budget
    for _ in range(burst_packets // 10 + 5):
        world.core.segments_received(memoryview(run), len(packet), streamed.endpoint, world.now, stream=True)
    for _ in range(5):
        world.send(streamed, packet)
    assert world.drops["relay_rate_limited"] == 5 + 5
    assert sum(len(data) // len(packet) for data in world.sent_to(target)) == burst_packets // 10 * 10
    world.send(udp, udp.client.envelope(target.node_id, bytes(988)))
    assert len(world.sent_to(target)) == 1 and world.drops["relay_rate_limited"] == 10


# -- the node core --------------------------------------------------------------------------------------------


def three_members(world: World) -> tuple[int, Member, Member, Member]:
    controller = controller_of(world)
    network_id = controller.create_network(pools=["10.147.17.0/24"])
    members = [world.add_member() for _ in range(3)]
    for member in members:
        member.join(network_id, controller)
        controller.authorize(network_id, member)
    world.run(1.0)
    target = members[1]
    for member in (members[0], members[2]):
        member.send(member.frame_to(target))  # sessions between them
    world.run(1.0)
    return network_id, members[0], target, members[2]


def test_a_peer_flooding_path_probes_is_answered_at_the_limit_and_another_peer_as_usual(world: World) -> None:
    _, flooder, target, other = three_members(world)
    world.run(10.0)
    send_to(world, flooder, target.node_id, PathProbe.build({"probe_id": 7}), FLOOD)
    dropped = target.drops.get("path_probe_rate_limited", 0)
    assert dropped == FLOOD - PROBE_ANSWER_BURST
    send_to(world, other, target.node_id, PathProbe.build({"probe_id": 8}))
    assert target.drops["path_probe_rate_limited"] == dropped


def test_a_peer_flooding_multicast_announcements_is_cut_and_another_peers_are_used(world: World) -> None:
    network_id, flooder, target, other = three_members(world)
    announcement = MulticastSubscriptions.build(
        {"network_id": network_id, "ttl_s": 180, "complete": True, "groups": [group_fields(MDNS)]}
    )
    send_to(world, flooder, target.node_id, announcement, FLOOD)
    assert target.drops["multicast_announcement_rate_limited"] == FLOOD - ANNOUNCEMENT_BURST
    send_to(world, other, target.node_id, announcement)
    assert target.drops["multicast_announcement_rate_limited"] == FLOOD - ANNOUNCEMENT_BURST
    groups = target.core.networks[network_id].switch.groups
    assert other.node_id in groups.subscribers(MDNS, world.now)


def test_punch_hints_for_one_peer_are_cut_and_hints_for_another_peer_still_act(world: World) -> None:
    _, flooder, target, other = three_members(world)
    world.run(10.0)  # the punches of their first contact are long refilled
    paths = target.core.paths

    def punch(node_id: int) -> bytes:
        return EndpointHints.build({"node_id": node_id, "punch": True, "endpoints": [("198.18.77.2", 9993)]})

    acted = sum(bool(paths.hints_received(punch(flooder.node_id), world.now)) for _ in range(FLOOD))
    assert acted == PUNCH_BURST
    assert target.drops["punch_hints_rate_limited"] == FLOOD - PUNCH_BURST
    assert paths.hints_received(punch(other.node_id), world.now)


# -- logged once per cause (the edges' DropLog) ------------------------------------------------------------------


def test_each_limit_is_logged_once_however_long_the_flood_and_other_drops_are_not(caplog) -> None:
    drop_log = DropLog(logging.getLogger("l2mesh.test"), "the counters")
    drops: Counter[str] = Counter()
    with caplog.at_level(logging.WARNING, logger="l2mesh.test"):
        for second in range(10):
            drops["netconf_request_rate_limited"] += 1000
            drops["relay_malformed"] += 1
            drop_log.check(float(second), drops)
        drops["stream_too_many_from_source"] += 1
        drop_log.check(10.0, drops, Counter({"path_probe_rate_limited": 1}))
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3
    assert "netconf_request_rate_limited" in logged[0] and "logged once" in logged[0]
    assert not any("relay_malformed" in line for line in logged)
