"""Paths to peers, sans-IO: direct UDP when it works, the controller's relay when it does not.

A peer starts on its direct endpoint (from the config). A handshake that
gets no direct answer within RELAY_AFTER_S also goes through the relay, and
the controller is asked to make both sides probe each other at once (UDP
hole punching: each side's packet opens its own NAT for the other's). A path
is proven by an authenticated answer to something sent on it (handshake
response, probe reply). While a peer carries frames it is probed every
second on the path in use; a direct path silent for DIRECT_DEAD_AFTER_S moves
to the relay, and from the relay direct candidates are re-probed every
DIRECT_RETRY_S, so a healed direct path takes over again. Relayed packets
stay end-to-end encrypted: the relay only reads the envelope.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from l2mesh.fragments import fragment_into
from l2mesh.ids import controller_of
from l2mesh.node.peers import Peer
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import EndpointHints, PathProbe, PathProbeReply
from l2mesh.wire.packets import MAX_RELAY_HOPS, RELAY_HEADER, RELAY_HEADER_BYTES, PacketType

if TYPE_CHECKING:
    from l2mesh.node.core import NodeCore

RELAY_AFTER_S = 2.0
DIRECT_DEAD_AFTER_S = 3.0
DIRECT_RETRY_S = 5.0
PUNCH_REQUEST_INTERVAL_S = 5.0
PROBE_ACTIVE_INTERVAL_S = 1.0  # on the path in use, while the peer carries frames
PROBE_IDLE_INTERVAL_S = 10.0  # controllers
ACTIVE_WINDOW_S = 30.0  # a peer that carried frames this recently is in use
# A peer that carried frames within this window keeps a probe every
# NAT_KEEPALIVE_S, which holds NAT mappings (they expire after 30-120 s);
# after it, the session is left to expire and is set up again on demand.
RECENT_WINDOW_S = 180.0
NAT_KEEPALIVE_S = 25.0
MAX_PROBES_IN_FLIGHT = 8
MAX_CANDIDATES = 8
LATENCY_SMOOTHING = 0.3
# While a peer is in use over a direct path, its other endpoints are probed this
# often; one whose round trip is below this fraction of the current one takes over.
CANDIDATE_PROBE_S = 30.0
BETTER_PATH_RATIO = 0.8
_RELAY = PacketType.RELAY


class Paths:
    def __init__(self, core: "NodeCore") -> None:
        self.core = core
        self.local_endpoints: list[Endpoint] = []

    # -- sending --------------------------------------------------------------------------------
    def relay_for(self, peer: Peer) -> Endpoint | None:
        """The controller endpoint that can relay to this peer (the controller of a network we share)."""
        links = self.core.membership.controllers
        for network_id in peer.networks:
            link = links.get(controller_of(network_id))
            if link is not None and link.peer is not None and link.peer.last_rx_s is not None:
                return link.endpoint
        return None

    def send_relayed(self, peer: Peer, packet: bytes | memoryview) -> bool:
        relay = self.relay_for(peer)
        if relay is None:
            self.core.drops["no_relay"] += 1
            return False
        core = self.core
        header = RELAY_HEADER.pack(_RELAY, 0, peer.node_id.to_bytes(5, "big"), core.node_id.to_bytes(5, "big"))
        if len(packet) + RELAY_HEADER_BYTES <= core.max_datagram_bytes or packet[0] != PacketType.TRANSPORT:
            core.transmit.send_datagram(header + bytes(packet), relay)
        else:
            # Same-size enveloped fragments: one segmented send, and the relay forwards them as one batch.
            length = fragment_into(packet, core.max_datagram_bytes, core.segment_buffer, header)
            core.transmit.send_segments(memoryview(core.segment_buffer)[:length], core.max_datagram_bytes, relay)
        return True

    def send_initiation(self, peer: Peer, initiation: bytes, now: float) -> None:
        """Send a handshake initiation on every path that might work right now."""
        core = self.core
        if peer.attempt_since_s is None:
            peer.attempt_since_s = now
        sent = False
        if peer.endpoint is not None:
            core.transmit.send_datagram(initiation, peer.endpoint)
            sent = True
        if peer.direct_proven_s is None:
            # Never reached directly: try every candidate (same initiation), ask for a punch.
            for endpoint in peer.candidates:
                if endpoint != peer.endpoint:
                    core.transmit.send_datagram(initiation, endpoint)
                    sent = True
            self.request_punch(peer, now)
        if peer.is_controller:
            if not sent:
                core.drops["no_path"] += 1
            return
        if peer.via_relay or now - peer.attempt_since_s >= RELAY_AFTER_S or not sent:
            if self.send_relayed(peer, initiation):
                sent = True
        if not sent:
            core.drops["no_path"] += 1

    def request_punch(self, peer: Peer, now: float) -> None:
        """Ask the controller to tell both of us to probe each other now (hole punching)."""
        if peer.is_controller or now < peer.next_punch_request_s:
            return
        peer.next_punch_request_s = now + PUNCH_REQUEST_INTERVAL_S
        controller = self._controller_peer_for(peer)
        if controller is None:
            return
        self.core.send_message(
            controller.node_id, EndpointHints.build({"node_id": peer.node_id, "punch": True, "endpoints": []}), now
        )

    def _controller_peer_for(self, peer: Peer) -> Peer | None:
        links = self.core.membership.controllers
        for network_id in peer.networks:
            link = links.get(controller_of(network_id))
            if link is not None and link.peer is not None:
                return link.peer
        return None

    def announce_local_endpoints(self, controller: Peer, now: float) -> None:
        if self.local_endpoints:
            message = EndpointHints.build(
                {"node_id": self.core.node_id, "punch": False, "endpoints": self.local_endpoints[:MAX_CANDIDATES]}
            )
            self.core.send_message(controller.node_id, message, now)

    # -- receiving ------------------------------------------------------------------------------
    def relay_received(self, data: memoryview, source: Endpoint, now: float) -> None:
        """An envelope from a controller's relay: unwrap and process the peer's packet inside."""
        core = self.core
        if len(data) <= RELAY_HEADER_BYTES:
            core.drops["relay_malformed"] += 1
            return
        _, hops, destination, origin = RELAY_HEADER.unpack_from(data)
        if int.from_bytes(destination, "big") != core.node_id or hops > MAX_RELAY_HOPS:
            core.drops["relay_not_for_us"] += 1
            return
        if not any(link.endpoint == source for link in core.membership.controllers.values()):
            core.drops["relay_from_stranger"] += 1
            return
        peer = core.peers.get(int.from_bytes(origin, "big"))
        if peer is None:
            core.drops["relay_from_unknown_peer"] += 1
            return
        core.dispatch(data[RELAY_HEADER_BYTES:], source, now, relayed_from=peer)

    def heard(self, peer: Peer, source: Endpoint, relayed: bool, now: float) -> None:
        """An authenticated packet from peer; not proof our direction works, so the path is not switched."""
        if relayed:
            peer.relay_rx_s = now
            return
        peer.direct_rx_s = now
        if peer.endpoint != source:
            # Roaming (NAT rebinding): the peer is now at this address.
            self.core.set_endpoint(peer, source)

    def proven(self, peer: Peer, source: Endpoint | None, now: float) -> None:
        """A round trip completed on a path (handshake response, probe reply): prefer direct when it works."""
        if source is None:
            peer.relay_rx_s = now
            peer.attempt_since_s = None
            if peer.direct_proven_s is None or now - (peer.direct_rx_s or -1e18) > DIRECT_DEAD_AFTER_S:
                self._use_relay(peer, now)
            return
        peer.direct_rx_s = now
        peer.direct_proven_s = now
        peer.attempt_since_s = None
        if peer.endpoint != source:
            self.core.set_endpoint(peer, source)
        if peer.via_relay:
            peer.via_relay = False
            peer.path_changes += 1

    def _use_relay(self, peer: Peer, now: float) -> None:
        if not peer.via_relay and not peer.is_controller and self.relay_for(peer) is not None:
            peer.via_relay = True
            peer.path_changes += 1
            peer.next_direct_retry_s = now + DIRECT_RETRY_S

    def hints_received(self, controller: Peer, message: bytes, now: float) -> None:
        core = self.core
        hints = core.parse_or_count(EndpointHints, message, "hints_malformed")
        if hints is None:
            return
        peer = core.peers.get(hints.node_id)
        if peer is None or peer.is_controller:
            return
        for endpoint in hints.endpoints:
            endpoint = tuple(endpoint)
            if endpoint not in peer.candidates and len(peer.candidates) < MAX_CANDIDATES:
                peer.candidates.append(endpoint)
        if not hints.punch:
            return
        # Punch: send now to each candidate, so our NAT opens for the peer's packets.
        session = peer.session
        if session is not None and session.established:
            for endpoint in peer.candidates:
                self.send_probe(peer, now, endpoint)
        else:
            core.renew_session(peer, now)

    # -- probes -----------------------------------------------------------------------------------
    def send_probe(self, peer: Peer, now: float, direct_to: Endpoint | None = None) -> None:
        """A probe on the path in use, or directly to one endpoint (to test it)."""
        session = peer.session
        if session is None or not session.established:
            return
        if len(peer.probes) >= MAX_PROBES_IN_FLIGHT:
            peer.probes.pop(next(iter(peer.probes)))
        probe_id = int.from_bytes(os.urandom(8), "big")
        peer.probes[probe_id] = now
        message = PathProbe.build({"probe_id": probe_id})
        if direct_to is None:
            self.core.send_message(peer.node_id, message, now)
            return
        packet = session.seal(message, now)
        if packet is not None:
            self.core.transmit.send_datagram(packet, direct_to)

    def probe_received(self, peer: Peer, message: bytes, source: Endpoint, relayed: bool, now: float) -> None:
        """Answer on the path the probe came by, so the answer proves that path both ways."""
        probe = self.core.parse_or_count(PathProbe, message, "probe_malformed")
        if probe is None:
            return
        reply = PathProbeReply.build({"probe_id": probe.probe_id, "observed": source})
        session = peer.session
        packet = session.seal(reply, now) if session is not None else None
        if packet is None:
            return
        if relayed:
            self.send_relayed(peer, packet)
        else:
            self.core.transmit.send_datagram(packet, source)

    def probe_reply_received(self, peer: Peer, message: bytes, source: Endpoint, relayed: bool, now: float) -> None:
        reply = self.core.parse_or_count(PathProbeReply, message, "probe_malformed")
        if reply is None:
            return
        sent_s = peer.probes.pop(reply.probe_id, None)
        if sent_s is None:
            return
        sample_ms = (now - sent_s) * 1000.0
        if relayed == peer.via_relay:
            peer.latency_ms = sample_ms if peer.latency_ms is None else peer.latency_ms + LATENCY_SMOOTHING * (sample_ms - peer.latency_ms)
        if peer.is_controller:
            self.core.observed_endpoint = tuple(reply.observed)
        if relayed:
            self.proven(peer, None, now)
            return
        known = peer.endpoint_rtt_ms.get(source)
        peer.endpoint_rtt_ms[source] = sample_ms if known is None else known + LATENCY_SMOOTHING * (sample_ms - known)
        current_ms = peer.endpoint_rtt_ms.get(peer.endpoint) if peer.endpoint is not None else None
        if (
            peer.via_relay
            or source == peer.endpoint
            or current_ms is None
            or peer.endpoint_rtt_ms[source] < current_ms * BETTER_PATH_RATIO
        ):
            # Direct beats the relay; among direct endpoints, the clearly faster one wins.
            self.proven(peer, source, now)
        else:
            peer.direct_rx_s = now

    # -- timers -------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for peer in self.core.peers.values():
            session = peer.session
            if session is None or not session.established:
                continue
            active = now - peer.last_frame_s <= ACTIVE_WINDOW_S
            if not peer.via_relay and active and peer.direct_proven_s is not None:
                last_direct = peer.direct_rx_s or -1e18
                if now - last_direct > DIRECT_DEAD_AFTER_S and now - peer.direct_proven_s > DIRECT_DEAD_AFTER_S:
                    self._use_relay(peer, now)
            recent = now - peer.last_frame_s <= RECENT_WINDOW_S
            if now >= peer.next_probe_s and (recent or peer.is_controller):
                if peer.is_controller:
                    interval_s = PROBE_IDLE_INTERVAL_S
                elif active:
                    interval_s = PROBE_ACTIVE_INTERVAL_S
                else:
                    interval_s = NAT_KEEPALIVE_S
                peer.next_probe_s = now + interval_s
                self.send_probe(peer, now)
            if (
                active
                and not peer.via_relay
                and len(peer.candidates) > 1
                and now >= peer.next_candidate_probe_s
            ):
                peer.next_candidate_probe_s = now + CANDIDATE_PROBE_S
                for endpoint in peer.candidates:
                    if endpoint != peer.endpoint:
                        self.send_probe(peer, now, endpoint)
            if peer.via_relay and now >= peer.next_direct_retry_s:
                peer.next_direct_retry_s = now + DIRECT_RETRY_S
                for endpoint in peer.candidates or ([peer.endpoint] if peer.endpoint else []):
                    self.send_probe(peer, now, endpoint)
                self.request_punch(peer, now)
