"""A member's side of the control plane, sans-IO: joining networks, asking their controllers for configs.

The network id names the controller (its node id); the controller's public
keys are fetched from the address the user gave and accepted only if they
hash to that id. Configs are requested over a normal Noise session with the
controller, accepted only when signed by its key, issued to this node and
not older than the one held; they are refreshed periodically (which also
keeps NAT mappings open), while pushes from the controller apply at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l2mesh import __version__
from l2mesh.identity import PublicIdentity
from l2mesh.ids import controller_of
from l2mesh.netconf import NetconfError, NetworkConfig, verify_signed_config
from l2mesh.node.peers import Peer
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import (
    MAX_NETCONF_CHUNKS,
    NETCONF_PROOF_CONTEXT,
    NetconfRequest,
    NetconfResponse,
    NetconfStatus,
)
from l2mesh.wire.packets import IdentityRequest, IdentityResponse

if TYPE_CHECKING:
    from l2mesh.node.core import NodeCore

NETCONF_REFRESH_S = 25.0  # also the keepalive that holds NAT mappings towards the controller
NETCONF_RETRY_S = 2.0  # while REQUESTING
IDENTITY_RETRY_S = 1.0
# A request unanswered this long means the controller lost our session
# (it restarted): open a new one rather than wait for session timers.
NETCONF_ANSWER_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ControllerIdentityLearned:
    """The edge caches it, so a restart works while the controller is down."""

    node_id: int
    identity: PublicIdentity


@dataclass
class ControllerLink:
    node_id: int
    endpoint: Endpoint
    peer: Peer | None = None
    next_identity_request_s: float = 0.0
    awaiting_answer_since_s: float | None = None


@dataclass
class PendingChunks:
    revision: int
    count: int
    chunks: dict[int, bytes] = field(default_factory=dict)


class Membership:
    def __init__(self, core: "NodeCore") -> None:
        self.core = core
        self.controllers: dict[int, ControllerLink] = {}
        self._chunks: dict[int, PendingChunks] = {}

    # -- joining ---------------------------------------------------------------------------------
    def join(
        self,
        network_id: int,
        controller_endpoint: Endpoint,
        now: float,
        controller_identity: PublicIdentity | None = None,
        cached_signed: bytes | None = None,
    ) -> None:
        core = self.core
        state = core.network_state(network_id)
        state.controller_endpoint = controller_endpoint
        controller_id = controller_of(network_id)
        link = self.controllers.get(controller_id)
        if link is None:
            link = self.controllers[controller_id] = ControllerLink(controller_id, controller_endpoint)
        elif link.endpoint != controller_endpoint:
            link.endpoint = controller_endpoint
            if link.peer is not None:
                core.set_endpoint(link.peer, controller_endpoint)
        if link.peer is None and controller_identity is not None and controller_identity.node_id == controller_id:
            self._install_controller(link, controller_identity, announce=False)
        if cached_signed and link.peer is not None:
            # Forward on the config we hold while the controller is away.
            try:
                config = verify_signed_config(cached_signed, link.peer.identity, network_id, core.node_id, core.wall_clock_s())
            except NetconfError:
                core.drops["cached_netconf_rejected"] += 1
            else:
                core.apply_netconf(config, cached_signed)
        state.next_request_s = now
        self._request(state.network_id, now)

    def leave(self, network_id: int) -> None:
        self._chunks.pop(network_id, None)
        controller_id = controller_of(network_id)
        self.core.remove_network(network_id)
        if not any(controller_of(n) == controller_id for n in self.core.networks):
            link = self.controllers.pop(controller_id, None)
            if link is not None and link.peer is not None:
                self.core.forget_peer(link.peer)

    def _install_controller(self, link: ControllerLink, identity: PublicIdentity, announce: bool = True) -> None:
        core = self.core
        peer = core.peers.get(link.node_id)
        if peer is None or peer.identity != identity:
            if peer is not None:
                core.forget_peer(peer)
            peer = Peer(link.node_id, identity, candidates=[link.endpoint], is_controller=True)
            core.add_peer(peer)
            core.set_endpoint(peer, link.endpoint)
        peer.is_controller = True
        link.peer = peer
        if announce:
            core.events.append(ControllerIdentityLearned(link.node_id, identity))

    # -- requests ------------------------------------------------------------------------------------
    def _request(self, network_id: int, now: float) -> None:
        core = self.core
        state = core.networks.get(network_id)
        if state is None or state.controller_endpoint is None:
            return
        link = self.controllers.get(controller_of(network_id))
        if link is None:
            return
        if link.peer is None:
            if now >= link.next_identity_request_s:
                core.transmit.send_datagram(IdentityRequest.build({"node_id": link.node_id}), link.endpoint)
                link.next_identity_request_s = now + IDENTITY_RETRY_S
            state.next_request_s = now + IDENTITY_RETRY_S
            return
        have = state.config.revision if state.config is not None else 0
        request = NetconfRequest.build(
            {
                "network_id": network_id,
                "have_revision": have,
                "ed25519": core.identity.ed25519_public,
                "proof": core.identity.sign(
                    NETCONF_PROOF_CONTEXT + core.identity.x25519_public + network_id.to_bytes(8, "big")
                ),
                "client_version": __version__,
            }
        )
        core.send_message(link.node_id, request, now)
        if state.config is not None:
            core.paths.announce_local_endpoints(link.peer, now)
        if link.awaiting_answer_since_s is None:
            link.awaiting_answer_since_s = now
        state.requests_sent += 1
        state.next_request_s = now + (NETCONF_REFRESH_S if state.config is not None else NETCONF_RETRY_S)

    def tick(self, now: float) -> None:
        wall_s = self.core.wall_clock_s()
        for network_id, state in list(self.core.networks.items()):
            if state.config is not None and state.config.expired(wall_s):
                # Unrefreshed for days: who is authorized may have changed; stop forwarding on it.
                self.core.deny_network(network_id, "REQUESTING")
            if state.controller_endpoint is not None and now >= state.next_request_s:
                self._request(network_id, now)
        for link in self.controllers.values():
            since = link.awaiting_answer_since_s
            if link.peer is not None and since is not None and now - since >= NETCONF_ANSWER_TIMEOUT_S:
                link.awaiting_answer_since_s = now
                self.core.renew_session(link.peer, now)

    def controller_session_renewed(self, peer: Peer, now: float) -> None:
        """A new session with a controller: it may have restarted, so ask again for every network it governs."""
        link = self.controllers.get(peer.node_id)
        if link is None or link.peer is not peer:
            return
        self.core.paths.announce_local_endpoints(peer, now)
        for network_id in list(self.core.networks):
            if controller_of(network_id) == peer.node_id:
                self._request(network_id, now)

    # -- answers -------------------------------------------------------------------------------------
    def identity_response(self, data: memoryview, source: Endpoint, now: float) -> None:
        response = self.core.parse_or_count(IdentityResponse, data, "identity_response_malformed")
        if response is None:
            return
        identity = PublicIdentity(response.x25519, response.ed25519)
        link = self.controllers.get(identity.node_id)
        # Only keys that hash to the id named by the network id, from the address we asked, are accepted.
        if link is None or link.peer is not None or source != link.endpoint:
            self.core.drops["identity_response_unexpected"] += 1
            return
        self._install_controller(link, identity)
        for network_id in list(self.core.networks):
            if controller_of(network_id) == link.node_id:
                self._request(network_id, now)

    def netconf_response(self, peer: Peer, message: bytes, now: float) -> None:
        core = self.core
        response = core.parse_or_count(NetconfResponse, message, "netconf_response_malformed")
        if response is None:
            return
        network_id = response.network_id
        link = self.controllers.get(peer.node_id)
        if link is not None:
            link.awaiting_answer_since_s = None
        state = core.networks.get(network_id)
        if state is None or controller_of(network_id) != peer.node_id:
            core.drops["netconf_from_wrong_controller"] += 1
            return
        try:
            status = NetconfStatus[str(response.status)]
        except KeyError:
            core.drops["netconf_unknown_status"] += 1
            return
        if status is not NetconfStatus.OK:
            self._chunks.pop(network_id, None)
            core.deny_network(network_id, status.name)
            state.next_request_s = now + NETCONF_REFRESH_S
            return
        if response.chunk_count == 1 and not response.signed_config:
            # "Not modified": the config we hold is current.
            if state.config is not None:
                core.mark_network_ok(network_id)
            return
        signed = self._collect(network_id, response)
        if signed is None:
            return
        try:
            config = verify_signed_config(signed, peer.identity, network_id, core.node_id, core.wall_clock_s())
        except NetconfError:
            core.drops["netconf_rejected"] += 1
            return
        core.apply_netconf(config, signed)
        state.next_request_s = now + NETCONF_REFRESH_S

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


__all__ = ["ControllerIdentityLearned", "Membership", "NetworkConfig"]
