"""A member's side of the control plane, sans-IO: joining networks, asking their controllers for configs.

The network id names the controller (its node id); the controller's public
keys are fetched from the address the user gave (or, joining by network id
alone, from our roots, which also say where it is registered) and accepted
only if they hash to that id. Configs are requested over a normal Noise session with the
controller, accepted only when signed by its key, issued to this node and
not older than the one held; they are refreshed periodically (which also
keeps NAT mappings open), while pushes from the controller apply at once.
After the first config, changes mostly come as deltas (netconf_delta.py):
applied onto the revision they name, checked against their digest, and
when they do not fit (a gap, a diverged copy) we ask again.

Membership reads the networks' states (held by the core) and answers with
decisions (decisions.py): send this request, trust this controller, apply
this config, deny this network.

A controller may run as several instances sharing one identity (issue 12).
Configs list every live instance's endpoint, and the roots return every
instance registered under the id; while we know more than one, the one in
use is probed every second (paths.py), and when it has been silent for
CONTROLLER_SILENT_S we move to the next one in the list (failover()).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from l2mesh import __version__
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import controller_of
from l2mesh.netconf import NetconfError, NetworkConfig, verify_signed_config
from l2mesh.netconf_delta import DeltaBase, MemberChanges, apply_delta, verify_signed_delta
from l2mesh.node.decisions import (
    AnnounceEndpoints,
    ApplyConfig,
    Decision,
    DenyNetwork,
    ForgetPeer,
    LookupNode,
    MarkNetworkOk,
    RenewSession,
    SendDatagram,
    SendMessage,
    TrustController,
    UseEndpoint,
)
from l2mesh.node.events import NetworkStatus
from l2mesh.node.network_state import NetworkState
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import (
    MAX_NETCONF_CHUNKS,
    NETCONF_PROOF_CONTEXT,
    NetconfDelta,
    NetconfRequest,
    NetconfResponse,
    NetconfStatus,
)
from l2mesh.wire.packets import IdentityRequest, IdentityResponse

NETCONF_REFRESH_S = 25.0  # also the keepalive that holds NAT mappings towards the controller
NETCONF_RETRY_S = 2.0  # while REQUESTING
IDENTITY_RETRY_S = 1.0
# A request unanswered this long means the controller lost our session
# (it restarted): open a new one rather than wait for session timers.
NETCONF_ANSWER_TIMEOUT_S = 3.0
# Deltas keep the config in memory current, but the edge caches only whole
# signed configs (to forward on while the controller is away after a
# restart): one is fetched again when the cached one is this old, well
# before it expires (NETCONF_TTL_S).
NETCONF_FULL_REFRESH_S = 3 * 24 * 3600.0
# The instance in use unheard this long, with others known: move to the next. Probes come every
# second (paths.CONTROLLER_INSTANCES_PROBE_S), so this is two lost answers and some slack.
CONTROLLER_SILENT_S = 2.5
MAX_CONTROLLER_INSTANCES = 32


@dataclass
class ControllerLink:
    """A controller we joined a network of: where it is, and its keys once verified."""

    node_id: int
    endpoint: Endpoint | None  # None until our roots say where it is (joined by network id alone)
    identity: PublicIdentity | None = None
    next_identity_request_s: float = 0.0
    awaiting_answer_since_s: float | None = None
    # Every instance we know of (configs, roots), the one in use among them; a move waits for an answer.
    instances: list[Endpoint] = field(default_factory=list)
    moved_s: float = -1e18

    def learn_instances(self, endpoints: list[Endpoint], replace: bool) -> None:
        """Instances from a config (replace: its list is the live set) or from the roots (added)."""
        known = [] if replace else self.instances
        self.instances = list(dict.fromkeys([*known, *endpoints]))[:MAX_CONTROLLER_INSTANCES]

    def next_instance(self) -> Endpoint | None:
        """The instance after the one in use, in list order (so a dead pair is not tried back and forth)."""
        others = [e for e in self.instances if e != self.endpoint]
        if not others:
            return None
        if self.endpoint not in self.instances:
            return others[0]
        at = self.instances.index(self.endpoint)
        return self.instances[(at + 1) % len(self.instances)]


class ControllerContact(NamedTuple):
    """A controller peer as the core holds it: when it last sent us anything authenticated, and where it is."""

    heard_s: float | None
    endpoint: Endpoint | None


@dataclass
class Joined:
    """A network joined through its controller (not a static config): when to ask for its config next."""

    controller_endpoint: Endpoint | None  # None: found through the roots
    next_request_s: float = 0.0
    requests_sent: int = 0
    signed_wall_s: float = 0.0  # wall time of the last whole signed config (the one the edge caches)


@dataclass
class PendingChunks:
    revision: int
    count: int
    chunks: dict[int, bytes] = field(default_factory=dict)


class Membership:
    def __init__(
        self,
        identity: Identity,
        networks: Mapping[int, NetworkState],
        drops: Counter[str],
        wall_clock_s: Callable[[], float],
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.networks = networks  # the core's, read only: which config each network holds
        self.drops = drops
        self.wall_clock_s = wall_clock_s
        self.controllers: dict[int, ControllerLink] = {}
        self.joined: dict[int, Joined] = {}
        self._chunks: dict[int, PendingChunks] = {}
        # What deltas need of the config each network holds (its digest sum, its member ids), kept across deltas.
        self._delta_bases: dict[int, DeltaBase] = {}
        self.failovers = 0  # moves to another controller instance (failover())

    # -- joining ---------------------------------------------------------------------------------
    def join(
        self,
        network_id: int,
        controller_endpoint: Endpoint | None,
        now: float,
        controller_identity: PublicIdentity | None = None,
        cached_signed: bytes | None = None,
    ) -> list[Decision]:
        """Join through the controller at controller_endpoint, or wherever our roots find it (None).

        The core holds a state for network_id already.
        """
        decisions: list[Decision] = []
        joined = self.joined.get(network_id)
        if joined is None:
            joined = self.joined[network_id] = Joined(controller_endpoint)
        if controller_endpoint is not None or joined.controller_endpoint is None:
            joined.controller_endpoint = controller_endpoint
        controller_id = controller_of(network_id)
        link = self.controllers.get(controller_id)
        if link is None:
            link = self.controllers[controller_id] = ControllerLink(controller_id, controller_endpoint)
        elif controller_endpoint is not None and link.endpoint != controller_endpoint:
            link.endpoint = controller_endpoint
            if link.identity is not None:
                decisions.append(UseEndpoint(controller_id, controller_endpoint))
        if link.identity is None and controller_identity is not None and controller_identity.node_id == controller_id:
            decisions.append(self._trust(link, controller_identity, learned=False))
        held = self._held(network_id)
        if cached_signed and link.identity is not None:
            # Forward on the config we hold while the controller is away.
            try:
                config = verify_signed_config(cached_signed, link.identity, network_id, self.node_id, self.wall_clock_s())
            except NetconfError:
                self.drops["cached_netconf_rejected"] += 1
            else:
                if held is None or config.revision >= held.revision:
                    held = config
                joined.signed_wall_s = max(joined.signed_wall_s, config.timestamp_s)
                link.learn_instances(list(config.controllers), replace=False)
                decisions.append(ApplyConfig(config, cached_signed))
        joined.next_request_s = now
        decisions.extend(self._request(network_id, now, held))
        return decisions

    def leave(self, network_id: int) -> list[Decision]:
        """Forget a network (the core has removed its state); its controller too, if it governs no other."""
        self._chunks.pop(network_id, None)
        self._delta_bases.pop(network_id, None)
        self.joined.pop(network_id, None)
        controller_id = controller_of(network_id)
        if any(controller_of(n) == controller_id for n in self.networks):
            return []
        link = self.controllers.pop(controller_id, None)
        if link is not None and link.identity is not None:
            return [ForgetPeer(controller_id)]
        return []

    def controller_endpoint(self, network_id: int) -> Endpoint | None:
        """Where we reach the network's controller: as given, or as our roots found it."""
        link = self.controllers.get(controller_of(network_id))
        if link is not None and link.endpoint is not None:
            return link.endpoint
        joined = self.joined.get(network_id)
        return joined.controller_endpoint if joined is not None else None

    def controller_located(self, node_id: int, identity: PublicIdentity, endpoints: list[Endpoint], now: float) -> list[Decision]:
        """Our roots say where a controller is registered (keys verified against its id by roots.py)."""
        link = self.controllers.get(node_id)
        if link is None:
            return []
        if link.identity is None:
            if link.endpoint is None and endpoints:
                link.endpoint = endpoints[0]
            return [self._trust(link, identity, learned=True), *self._request_all_of(node_id, now)]
        if link.identity != identity:
            self.drops["controller_keys_mismatch"] += 1
            return []
        link.learn_instances(endpoints, replace=False)  # every instance registered under the id
        # Move only while it does not answer where we reach it (it restarted elsewhere, another instance).
        if endpoints and link.endpoint not in endpoints and link.awaiting_answer_since_s is not None:
            link.endpoint = endpoints[0]
            return [UseEndpoint(node_id, endpoints[0])]
        return []

    def _trust(self, link: ControllerLink, identity: PublicIdentity, learned: bool) -> TrustController:
        link.identity = identity
        return TrustController(link.node_id, identity, link.endpoint, learned)

    def _held(self, network_id: int) -> NetworkConfig | None:
        state = self.networks.get(network_id)
        return state.config if state is not None else None

    # -- requests ------------------------------------------------------------------------------------
    def _request(self, network_id: int, now: float, held: NetworkConfig | None) -> list[Decision]:
        joined = self.joined.get(network_id)
        link = self.controllers.get(controller_of(network_id))
        if joined is None or link is None:
            return []
        if link.identity is None:
            decisions: list[Decision] = []
            if now >= link.next_identity_request_s:
                if link.endpoint is not None:
                    decisions.append(SendDatagram(IdentityRequest.build({"node_id": link.node_id}), link.endpoint))
                else:
                    decisions.append(LookupNode(link.node_id))
                link.next_identity_request_s = now + IDENTITY_RETRY_S
            joined.next_request_s = now + IDENTITY_RETRY_S
            return decisions
        request = NetconfRequest.build(
            {
                "network_id": network_id,
                # 0 asks for a whole config: none held, or the cached one is due.
                "have_revision": held.revision if held is not None and not self._whole_config_due(joined) else 0,
                "ed25519": self.identity.ed25519_public,
                "proof": self.identity.sign(
                    NETCONF_PROOF_CONTEXT + self.identity.x25519_public + network_id.to_bytes(8, "big")
                ),
                "client_version": __version__,
            }
        )
        decisions = [SendMessage(link.node_id, request)]
        if held is not None:
            decisions.append(AnnounceEndpoints(link.node_id))
        if link.awaiting_answer_since_s is None:
            link.awaiting_answer_since_s = now
        joined.requests_sent += 1
        joined.next_request_s = now + (NETCONF_REFRESH_S if held is not None else NETCONF_RETRY_S)
        return decisions

    def _whole_config_due(self, joined: Joined) -> bool:
        return self.wall_clock_s() - joined.signed_wall_s >= NETCONF_FULL_REFRESH_S

    def _request_all_of(self, controller_id: int, now: float) -> list[Decision]:
        decisions: list[Decision] = []
        for network_id in list(self.networks):
            if controller_of(network_id) == controller_id:
                decisions.extend(self._request(network_id, now, self._held(network_id)))
        return decisions

    def tick(self, now: float) -> list[Decision]:
        decisions: list[Decision] = []
        wall_s = self.wall_clock_s()
        for network_id, state in list(self.networks.items()):
            held = state.config
            if held is not None and held.expired(wall_s):
                # Unrefreshed for days: who is authorized may have changed; stop forwarding on it.
                decisions.append(DenyNetwork(network_id, NetworkStatus.REQUESTING))
                held = None
            joined = self.joined.get(network_id)
            if joined is not None and now >= joined.next_request_s:
                decisions.extend(self._request(network_id, now, held))
        for link in self.controllers.values():
            since = link.awaiting_answer_since_s
            if link.identity is not None and since is not None and now - since >= NETCONF_ANSWER_TIMEOUT_S:
                link.awaiting_answer_since_s = now
                decisions.extend((LookupNode(link.node_id), RenewSession(link.node_id)))
        return decisions

    def failover(self, now: float, contacts: Mapping[int, ControllerContact]) -> list[Decision]:
        """Move off a controller instance silent for CONTROLLER_SILENT_S to the next one we know of.

        contacts: how each controller peer stands (the core's peers). A move is given the same
        time to answer before the next, and asks the roots again who is registered.
        """
        decisions: list[Decision] = []
        for link in self.controllers.values():
            if link.identity is None or len(link.instances) < 2:
                continue
            contact = contacts.get(link.node_id)
            if contact is not None and contact.endpoint is not None:
                # The instance that answered our handshake (several may, to the candidates the roots gave).
                link.endpoint = contact.endpoint
            heard_s = contact.heard_s if contact is not None else None
            if heard_s is None and link.moved_s < 0:
                link.moved_s = now  # never heard yet (starting up): the first one gets its chance too
                continue
            if now - max(heard_s if heard_s is not None else -1e18, link.moved_s) < CONTROLLER_SILENT_S:
                continue
            target = link.next_instance()
            if target is None:
                continue
            link.endpoint, link.moved_s = target, now
            link.awaiting_answer_since_s = now
            self.failovers += 1
            decisions += [UseEndpoint(link.node_id, target), RenewSession(link.node_id, restart=True), LookupNode(link.node_id)]
        return decisions

    def controller_session_renewed(self, controller_id: int, now: float) -> list[Decision]:
        """A new session with a controller: it may have restarted, so ask again for every network it governs."""
        link = self.controllers.get(controller_id)
        if link is None or link.identity is None:
            return []
        # Requests first: a controller takes endpoints only from a member that has named itself with one.
        return [*self._request_all_of(controller_id, now), AnnounceEndpoints(controller_id)]

    # -- answers -------------------------------------------------------------------------------------
    def identity_response(self, data: memoryview, source: Endpoint, now: float) -> list[Decision]:
        response = parse_or_none(IdentityResponse, data)
        if response is None:
            self.drops["identity_response_malformed"] += 1
            return []
        identity = PublicIdentity(response.x25519, response.ed25519)
        link = self.controllers.get(identity.node_id)
        # Only keys that hash to the id named by the network id, from the address we asked, are accepted.
        if link is None or link.identity is not None or source != link.endpoint:
            self.drops["identity_response_unexpected"] += 1
            return []
        return [self._trust(link, identity, learned=True), *self._request_all_of(link.node_id, now)]

    def netconf_response(self, controller_id: int, message: bytes, now: float) -> list[Decision]:
        response = parse_or_none(NetconfResponse, message)
        if response is None:
            self.drops["netconf_response_malformed"] += 1
            return []
        network_id = response.network_id
        link = self.controllers.get(controller_id)
        if link is not None:
            link.awaiting_answer_since_s = None
        state = self.networks.get(network_id)
        if state is None or controller_of(network_id) != controller_id or link is None or link.identity is None:
            self.drops["netconf_from_wrong_controller"] += 1
            return []
        try:
            status = NetconfStatus[str(response.status)]
        except KeyError:
            self.drops["netconf_unknown_status"] += 1
            return []
        joined = self.joined.get(network_id)
        if status is not NetconfStatus.OK:
            self._chunks.pop(network_id, None)
            if joined is not None:
                joined.next_request_s = now + NETCONF_REFRESH_S
            return [DenyNetwork(network_id, NetworkStatus[status.name])]
        if response.chunk_count == 1 and not response.signed_config:
            # "Not modified": the config we hold is current.
            return [MarkNetworkOk(network_id)] if state.config is not None else []
        signed = self._collect(network_id, response)
        if signed is None:
            return []
        try:
            config = verify_signed_config(signed, link.identity, network_id, self.node_id, self.wall_clock_s())
        except NetconfError:
            self.drops["netconf_rejected"] += 1
            return []
        if joined is not None:
            joined.next_request_s = now + NETCONF_REFRESH_S
            joined.signed_wall_s = self.wall_clock_s()
        if config.controllers:
            link.learn_instances(list(config.controllers), replace=True)
        return [ApplyConfig(config, signed)]

    def netconf_delta(self, controller_id: int, message: bytes, now: float) -> list[Decision]:
        """What changed since a revision: applied to the config held if it is that revision, else we ask again."""
        parsed = parse_or_none(NetconfDelta, message)
        if parsed is None:
            self.drops["netconf_delta_malformed"] += 1
            return []
        network_id = parsed.network_id
        link = self.controllers.get(controller_id)
        state = self.networks.get(network_id)
        if state is None or controller_of(network_id) != controller_id or link is None or link.identity is None:
            self.drops["netconf_from_wrong_controller"] += 1
            return []
        link.awaiting_answer_since_s = None
        try:
            delta = verify_signed_delta(bytes(parsed.signed_delta), link.identity, network_id)
        except NetconfError:
            self.drops["netconf_delta_rejected"] += 1
            return []
        if (delta.from_revision, delta.to_revision) != (parsed.from_revision, parsed.to_revision):
            self.drops["netconf_delta_rejected"] += 1
            return []
        held = state.config
        if held is None:
            self.drops["netconf_delta_without_config"] += 1  # our request for a full one is out already
            return []
        if delta.to_revision < held.revision or (delta.to_revision == held.revision and delta.timestamp_s <= held.timestamp_s):
            self.drops["netconf_delta_stale"] += 1
            return []
        if delta.from_revision != held.revision:
            # We missed one: the controller answers our revision with what we lack (or a full config).
            self.drops["netconf_delta_gap"] += 1
            return self._request(network_id, now, held)
        try:
            old = self._delta_base(network_id, held)
            base = apply_delta(old, delta)
        except NetconfError:
            # Our copy is not what the controller thinks we hold: start again from a full config.
            self.drops["netconf_delta_diverged"] += 1
            return self._request(network_id, now, None)
        if base.config.expired(self.wall_clock_s()):
            self.drops["netconf_delta_expired"] += 1
            return []
        self._delta_bases[network_id] = base
        if delta.controllers:
            link.learn_instances(list(delta.controllers), replace=True)
        joined = self.joined.get(network_id)
        if joined is not None:
            joined.next_request_s = now + NETCONF_REFRESH_S
        # No signed full config to cache (the edge keeps the last one); what changed, to apply in time for it.
        return [ApplyConfig(base.config, None, MemberChanges.of(old, base.config, delta))]

    def _delta_base(self, network_id: int, held: NetworkConfig) -> DeltaBase:
        base = self._delta_bases.get(network_id)
        if base is not None and base.config is held:
            return base
        return DeltaBase.of(held)  # a full config since the last delta (or none yet)

    def _collect(self, network_id: int, response: Any) -> bytes | None:
        if response.chunk_count == 1:
            return bytes(response.signed_config)
        pending = self._chunks.get(network_id)
        if pending is None or pending.revision != response.revision or pending.count != response.chunk_count:
            if response.chunk_count > MAX_NETCONF_CHUNKS:
                return None
            pending = self._chunks[network_id] = PendingChunks(response.revision, response.chunk_count)
        pending.chunks[response.chunk_index] = bytes(response.signed_config)
        if len(pending.chunks) < pending.count:
            return None
        del self._chunks[network_id]
        return b"".join(pending.chunks[i] for i in range(pending.count))
