"""Membership and Paths on their own: narrow inputs in, decisions out, no core behind them."""

from __future__ import annotations

from collections import Counter

from l2mesh.crypto.timers import DEFAULT_LIMITS
from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.node.decisions import (
    AnnounceEndpoints,
    DenyNetwork,
    ForgetPeer,
    SendDatagram,
    SendMessage,
    SendOnPath,
    SendRelayed,
    TrustController,
)
from l2mesh.node.events import NetworkStatus
from l2mesh.node.membership import Membership
from l2mesh.node.network_state import NetworkState
from l2mesh.node.paths import RELAY_AFTER_S, Paths
from l2mesh.node.peer_table import PeerTable
from l2mesh.node.peers import Peer
from l2mesh.node.roots import Roots
from l2mesh.wire.messages import EndpointHints, MessageKind, NetconfResponse, PathProbe, PathProbeReply
from l2mesh.wire.packets import IdentityRequest, IdentityResponse, PacketType

ME = Identity.generate()
CONTROLLER = Identity.generate()
NET = make_network_id(CONTROLLER.node_id, 7)
CONTROLLER_AT = ("198.18.0.1", 9994)


def membership_with_network() -> tuple[Membership, dict[int, NetworkState], Counter[str]]:
    networks = {NET: NetworkState(NET, ME.node_id)}
    drops: Counter[str] = Counter()
    return Membership(ME, networks, drops, lambda: 1_000_000.0), networks, drops


def identity_answer(identity: Identity) -> memoryview:
    return memoryview(IdentityResponse.build({"x25519": identity.x25519_public, "ed25519": identity.ed25519_public}))


def test_joining_an_unknown_controller_asks_for_its_keys_first() -> None:
    membership, _, _ = membership_with_network()
    decisions = membership.join(NET, CONTROLLER_AT, 0.0)
    assert decisions == [SendDatagram(IdentityRequest.build({"node_id": CONTROLLER.node_id}), CONTROLLER_AT)]
    # Asked again only after the retry interval, not on every tick.
    assert membership.tick(0.5) == []
    assert [type(d) for d in membership.tick(1.0)] == [SendDatagram]


def test_controller_keys_are_trusted_only_from_the_address_asked_then_the_config_is_requested() -> None:
    membership, _, drops = membership_with_network()
    membership.join(NET, CONTROLLER_AT, 0.0)
    assert membership.identity_response(identity_answer(CONTROLLER), ("198.18.66.6", 9994), 0.1) == []
    assert drops["identity_response_unexpected"] == 1
    impostor = Identity.generate()  # keys that do not hash to the id inside the network id
    assert membership.identity_response(identity_answer(impostor), CONTROLLER_AT, 0.1) == []
    trust, request = membership.identity_response(identity_answer(CONTROLLER), CONTROLLER_AT, 0.2)
    assert trust == TrustController(CONTROLLER.node_id, CONTROLLER.public, CONTROLLER_AT, learned=True)
    assert isinstance(request, SendMessage) and request.node_id == CONTROLLER.node_id
    assert request.message[0] == MessageKind.NETCONF_REQUEST


def test_a_cached_controller_identity_is_used_at_once_and_not_reported_as_new() -> None:
    membership, _, _ = membership_with_network()
    decisions = membership.join(NET, CONTROLLER_AT, 0.0, controller_identity=CONTROLLER.public)
    assert decisions[0] == TrustController(CONTROLLER.node_id, CONTROLLER.public, CONTROLLER_AT, learned=False)
    assert isinstance(decisions[1], SendMessage)


def test_access_denied_denies_the_network_and_leaving_the_last_network_forgets_the_controller() -> None:
    membership, networks, _ = membership_with_network()
    membership.join(NET, CONTROLLER_AT, 0.0, controller_identity=CONTROLLER.public)
    denied = NetconfResponse.build(
        {"network_id": NET, "status": "ACCESS_DENIED", "revision": 0, "chunk_index": 0, "chunk_count": 1, "signed_config": b""}
    )
    assert membership.netconf_response(CONTROLLER.node_id, denied, 0.1) == [DenyNetwork(NET, NetworkStatus.ACCESS_DENIED)]
    # From any other node it is refused.
    assert membership.netconf_response(ME.node_id, denied, 0.1) == []
    del networks[NET]
    assert membership.leave(NET) == [ForgetPeer(CONTROLLER.node_id)]
    assert membership.controllers == {}


def test_an_unanswered_request_renews_the_controller_session() -> None:
    membership, _, _ = membership_with_network()
    membership.join(NET, CONTROLLER_AT, 0.0, controller_identity=CONTROLLER.public)
    kinds = [type(d).__name__ for d in membership.tick(3.0)]
    assert "RenewSession" in kinds


def test_a_renewed_controller_session_asks_again_then_announces_endpoints() -> None:
    membership, _, _ = membership_with_network()
    membership.join(NET, CONTROLLER_AT, 0.0, controller_identity=CONTROLLER.public)
    decisions = membership.controller_session_renewed(CONTROLLER.node_id, 5.0)
    # In this order: the controller drops endpoint hints from a session that has not named its node yet.
    assert isinstance(decisions[0], SendMessage)
    assert decisions[-1] == AnnounceEndpoints(CONTROLLER.node_id)


# -- paths -------------------------------------------------------------------------------------------


def paths_with_peer(candidates: list[tuple[str, int]]) -> tuple[Paths, Peer, Counter[str]]:
    table = PeerTable(ME.x25519_private, DEFAULT_LIMITS)
    membership, _, drops = membership_with_network()
    membership.join(NET, CONTROLLER_AT, 0.0, controller_identity=CONTROLLER.public)
    controller = Peer(CONTROLLER.node_id, CONTROLLER.public, is_controller=True, last_rx_s=0.0)
    table.add(controller)
    other = Identity.generate()
    peer = Peer(other.node_id, other.public, candidates=list(candidates), networks=(NET,))
    table.add(peer)
    table.set_endpoint(peer, candidates[0])
    return Paths(ME.node_id, table, membership.controllers, Roots(ME, table, drops), drops), peer, drops


def test_a_first_initiation_goes_to_every_candidate_and_asks_for_a_punch() -> None:
    candidates = [("198.18.2.2", 9993), ("198.19.2.2", 9993)]
    paths, peer, _ = paths_with_peer(candidates)
    plan = paths.initiation_plan(peer, b"init", 0.0)
    assert [SendDatagram(b"init", c) for c in candidates] == [d for d in plan if isinstance(d, SendDatagram)]
    punch = [d for d in plan if isinstance(d, SendMessage)]
    assert len(punch) == 1 and punch[0].node_id == CONTROLLER.node_id
    hints = EndpointHints.parse(punch[0].message)
    assert hints.punch and hints.node_id == peer.node_id
    assert not any(isinstance(d, SendRelayed) for d in plan)
    # Still unanswered after RELAY_AFTER_S: the relay carries it too.
    later = paths.initiation_plan(peer, b"init2", RELAY_AFTER_S)
    assert SendRelayed(peer.node_id, b"init2") in later


def test_a_probe_is_answered_on_the_path_it_came_by() -> None:
    paths, peer, drops = paths_with_peer([("198.18.2.2", 9993)])
    probe = PathProbe.build({"probe_id": 42})
    source = ("198.18.9.9", 4444)
    (direct,) = paths.probe_received(peer, probe, source, relayed=False)
    assert isinstance(direct, SendOnPath) and direct.endpoint == source
    assert PathProbeReply.parse(direct.message).observed == source
    (relayed,) = paths.probe_received(peer, probe, source, relayed=True)
    assert relayed.endpoint is None
    assert paths.probe_received(peer, b"\x00garbage", source, relayed=False) == []
    assert drops["probe_malformed"] == 1


def test_a_relay_envelope_is_accepted_only_for_us_from_our_controller() -> None:
    from l2mesh.wire.packets import RELAY_HEADER

    paths, peer, drops = paths_with_peer([("198.18.2.2", 9993)])
    envelope = RELAY_HEADER.pack(PacketType.RELAY, 0, ME.node_id.to_bytes(5, "big"), peer.node_id.to_bytes(5, "big")) + b"x"
    assert paths.relay_origin(memoryview(envelope), CONTROLLER_AT, 0.0) is peer
    assert paths.relay_origin(memoryview(envelope), ("198.18.66.6", 9994), 0.0) is None
    assert drops["relay_from_stranger"] == 1
    not_ours = RELAY_HEADER.pack(PacketType.RELAY, 0, peer.node_id.to_bytes(5, "big"), ME.node_id.to_bytes(5, "big")) + b"x"
    assert paths.relay_origin(memoryview(not_ours), CONTROLLER_AT, 0.0) is None
    assert drops["relay_not_for_us"] == 1
