"""Paths to peers, sans-IO: direct UDP when it works, a relay (a root, or the controller) when it does not.

A peer starts on its direct endpoint (from the config, or from our roots).
A handshake that gets no direct answer within RELAY_AFTER_S also goes
through a relay, and the rendezvous (a root that knows the peer, else the
controller) is asked to make both sides probe each other at once (UDP hole
punching: each side's packet opens its own NAT for the other's). The relay
is the live root with the lowest latency that knows the peer (roots.py),
else the controller of a network we share; a controller itself is relayed
only through roots (when it sits behind a NAT that only they get through). A path
is proven by an authenticated answer to something sent on it (handshake
response, probe reply). While a peer carries frames it is probed every
second on the path in use; a direct path silent for DIRECT_DEAD_AFTER_S moves
to the relay, and from the relay direct candidates are re-probed every
DIRECT_RETRY_S, so a healed direct path takes over again. Relayed packets
stay end-to-end encrypted: the relay only reads the envelope.

Paths owns the path fields of each Peer (peers.py) and answers with
decisions (decisions.py) for the core to carry out: what to send where,
which endpoint to use, when to handshake again.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping

from l2mesh.ids import controller_of
from l2mesh.node.decisions import RenewSession, Send, SendDatagram, SendMessage, SendOnPath, SendRelayed, UseEndpoint
from l2mesh.node.membership import ControllerLink
from l2mesh.node.peer_table import PeerTable
from l2mesh.node.peers import Peer
from l2mesh.node.roots import Roots
from l2mesh.ratelimit import KeyedLimit
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import EndpointHints, PathProbe, PathProbeReply
from l2mesh.wire.packets import MAX_RELAY_HOPS, RELAY_HEADER, RELAY_HEADER_BYTES

RELAY_AFTER_S = 2.0
DIRECT_DEAD_AFTER_S = 3.0
DIRECT_RETRY_S = 5.0
PUNCH_REQUEST_INTERVAL_S = 5.0
PROBE_ACTIVE_INTERVAL_S = 1.0  # on the path in use, while the peer carries frames
PROBE_IDLE_INTERVAL_S = 10.0  # controllers
# A controller with several instances: probed this often, so a dead one is left within seconds (membership.failover).
CONTROLLER_INSTANCES_PROBE_S = 1.0
ROOT_PROBE_S = 1.0  # roots: a dead one is left within ROOT_DEAD_AFTER_S (roots.py)
RELAYED_LOOKUP_S = 30.0  # a relayed peer: ask the roots again where it is registered
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
# Probes a peer may make us answer: it sends one a second on the path in use, plus bursts of one per
# candidate (MAX_CANDIDATES) when punching or retrying direct paths.
PROBE_ANSWERS_PER_PEER_PER_S = 5.0
PROBE_ANSWER_BURST = 30.0
# Punch hints (a relay telling us a peer wants to meet) make us probe or handshake at once:
# the relays send at most one a second per pair, from each of our roots and controllers.
PUNCHES_PER_PEER_PER_S = 1.0
PUNCH_BURST = 5.0


class Paths:
    def __init__(
        self, node_id: int, peers: PeerTable, controllers: Mapping[int, ControllerLink], roots: Roots, drops: Counter[str]
    ) -> None:
        self.node_id = node_id
        self.peers = peers
        self.controllers = controllers  # membership's links, read only: who can relay and rendezvous
        self.roots = roots
        self.drops = drops
        self.now_s = 0.0  # as of the last call that knew the time: relay choice needs no finer
        self.local_endpoints: list[Endpoint] = []
        self.observed_endpoint: Endpoint | None = None  # our address as the controller sees it
        self._probe_answers = KeyedLimit("path_probe_rate_limited", PROBE_ANSWERS_PER_PEER_PER_S, PROBE_ANSWER_BURST, drops)
        self._punches = KeyedLimit("punch_hints_rate_limited", PUNCHES_PER_PEER_PER_S, PUNCH_BURST, drops)

    # -- relays ------------------------------------------------------------------------------------
    def relay_for(self, peer: Peer) -> Endpoint | None:
        """Where to send envelopes for this peer: the best root that knows it, else a controller we share."""
        choice = self._relay_choice(peer)
        if choice is None:
            return None
        peer.relay_id = choice[0]
        return choice[1]

    def _relay_choice(self, peer: Peer) -> tuple[int, Endpoint] | None:
        if peer.is_root:
            return None
        root = self.roots.relay_for(peer.node_id, self.now_s)
        if root is not None:
            assert root.node_id is not None
            return root.node_id, root.endpoint
        if peer.is_controller:
            return None
        for network_id in peer.networks:
            link = self.controllers.get(controller_of(network_id))
            if link is None or link.endpoint is None:
                continue
            controller = self.peers.by_id.get(link.node_id)
            if controller is not None and controller.is_controller and controller.last_rx_s is not None:
                return link.node_id, link.endpoint
        return None

    def relay_origin(self, data: memoryview, source: Endpoint, now: float) -> Peer | None:
        """The peer that sent this relay envelope, if it is for us and came from one of our controllers."""
        if len(data) <= RELAY_HEADER_BYTES:
            self.drops["relay_malformed"] += 1
            return None
        _, hops, destination, origin = RELAY_HEADER.unpack_from(data)
        if int.from_bytes(destination, "big") != self.node_id or hops > MAX_RELAY_HOPS:
            self.drops["relay_not_for_us"] += 1
            return None
        if not any(link.endpoint == source for link in self.controllers.values()) and not self.roots.is_root_endpoint(source):
            self.drops["relay_from_stranger"] += 1
            return None
        # An idle member may start traffic through the relay (a handshake, or packets on keys we lost by restarting).
        peer = self.peers.peer(int.from_bytes(origin, "big"), now)
        if peer is None:
            self.drops["relay_from_unknown_peer"] += 1
        return peer

    def _rendezvous_for(self, peer: Peer) -> int | None:
        """Who can tell both of us to punch now: a root that knows the peer, else a controller we share."""
        root = self.roots.relay_for(peer.node_id, self.now_s)
        if root is not None:
            return root.node_id
        if peer.is_controller:
            return None
        for network_id in peer.networks:
            link = self.controllers.get(controller_of(network_id))
            if link is not None and link.identity is not None:
                return link.node_id
        return None

    # -- handshakes and punching -------------------------------------------------------------------------
    def initiation_plan(self, peer: Peer, initiation: bytes, now: float) -> list[Send]:
        """Where a handshake initiation goes: every path that might work right now."""
        self.now_s = now
        if peer.attempt_since_s is None:
            peer.attempt_since_s = now
        plan: list[Send] = []
        if peer.direct_proven_s is None and not peer.is_root:
            plan.extend(self.roots.lookup(peer.node_id, now))
        if peer.endpoint is not None:
            plan.append(SendDatagram(initiation, peer.endpoint))
        if peer.direct_proven_s is None:
            # Never reached directly: try every candidate (same initiation), ask for a punch.
            plan.extend(SendDatagram(initiation, endpoint) for endpoint in peer.candidates if endpoint != peer.endpoint)
            plan.extend(self.request_punch(peer, now))
        sent = any(isinstance(step, SendDatagram) for step in plan)
        if peer.is_root:
            return plan
        if peer.via_relay or now - peer.attempt_since_s >= RELAY_AFTER_S or not sent:
            if self.relay_for(peer) is not None:
                plan.append(SendRelayed(peer.node_id, initiation))
                sent = True
            else:
                self.drops["no_relay"] += 1
        if not sent:
            self.drops["no_path"] += 1
        return plan

    def request_punch(self, peer: Peer, now: float) -> list[Send]:
        """Ask the controller to tell both of us to probe each other now (hole punching)."""
        if peer.is_root or now < peer.next_punch_request_s:
            return []
        peer.next_punch_request_s = now + PUNCH_REQUEST_INTERVAL_S
        rendezvous_id = self._rendezvous_for(peer)
        if rendezvous_id is None:
            return []
        return [SendMessage(rendezvous_id, EndpointHints.build({"node_id": peer.node_id, "punch": True, "endpoints": []}))]

    def announce_local_endpoints(self, controller_id: int) -> list[Send]:
        if not self.local_endpoints:
            return []
        message = EndpointHints.build(
            {"node_id": self.node_id, "punch": False, "endpoints": self.local_endpoints[:MAX_CANDIDATES]}
        )
        return [SendMessage(controller_id, message)]

    def hints_received(self, message: bytes, now: float) -> list[Send | RenewSession]:
        """A controller's or root's endpoint hints for a peer; with punch set, open our NAT towards it now."""
        hints = parse_or_none(EndpointHints, message)
        if hints is None:
            self.drops["hints_malformed"] += 1
            return []
        if hints.punch and not self._punches.take(hints.node_id, now):
            return []
        # Endpoints for an idle member wait for traffic (its config and our roots tell them then); a punch
        # request means it is trying to reach us: traffic starts.
        peer = self.peers.peer(hints.node_id, now) if hints.punch else self.peers.by_id.get(hints.node_id)
        if peer is None or peer.is_root:
            return []
        self.add_candidates(peer, [tuple(e) for e in hints.endpoints])  # type: ignore[misc]
        if not hints.punch:
            return []
        session = peer.session
        if session is None or not session.established:
            if peer.is_controller:
                # We cannot reach it yet: our initiations to its new candidates open our NAT for it.
                return [RenewSession(peer.node_id)] if session is None or session.pending is None else []
            return [RenewSession(peer.node_id)]
        plan: list[Send | RenewSession] = []
        for endpoint in peer.candidates:
            plan.extend(self.probe(peer, now, endpoint))
        return plan

    @staticmethod
    def add_candidates(peer: Peer, endpoints: list[Endpoint]) -> None:
        for endpoint in endpoints:
            if endpoint not in peer.candidates and len(peer.candidates) < MAX_CANDIDATES:
                peer.candidates.append(endpoint)

    # -- what was heard ---------------------------------------------------------------------------------
    def heard_directly(self, peer: Peer, source: Endpoint, now: float) -> Endpoint | None:
        """An authenticated packet straight from peer: the endpoint to move to if the peer roamed (NAT
        rebinding), else None.

        Another of the peer's known addresses answering (a probe of a
        candidate) is not roaming while the path in use works: the probes'
        round trips choose between working paths (probe_reply_received).
        """
        peer.direct_rx_s = now
        if peer.endpoint == source:
            return None
        in_use_works = (
            not peer.via_relay and peer.direct_proven_s is not None and now - peer.direct_proven_s <= DIRECT_DEAD_AFTER_S
        )
        if in_use_works and source in peer.candidates:
            return None
        return source

    def answered_through_relay(self, peer: Peer, now: float) -> None:
        """We answered a handshake the peer sent through the relay: its direct packets do not reach us (or it
        would not be relaying), so unless our direct path to it is known to work, ours go by the relay too."""
        self.proven(peer, None, now)

    def proven(self, peer: Peer, source: Endpoint | None, now: float) -> list[UseEndpoint]:
        """A round trip completed on a path (handshake response, probe reply; None: the relay): prefer direct when it works."""
        if source is None:
            peer.relay_rx_s = now
            peer.attempt_since_s = None
            if peer.direct_proven_s is None or now - (peer.direct_rx_s or -1e18) > DIRECT_DEAD_AFTER_S:
                self._use_relay(peer, now)
            return []
        peer.direct_rx_s = now
        peer.direct_proven_s = now
        peer.attempt_since_s = None
        if peer.via_relay:
            peer.via_relay = False
            peer.path_changes += 1
        return [UseEndpoint(peer.node_id, source)] if peer.endpoint != source else []

    def _use_relay(self, peer: Peer, now: float) -> None:
        self.now_s = now
        if not peer.via_relay and not peer.is_root and self.relay_for(peer) is not None:
            peer.via_relay = True
            peer.path_changes += 1
            peer.next_direct_retry_s = now + DIRECT_RETRY_S

    # -- probes -----------------------------------------------------------------------------------
    def probe(self, peer: Peer, now: float, direct_to: Endpoint | None = None) -> list[Send]:
        """A probe on the path in use, or directly to one endpoint (to test it)."""
        session = peer.session
        if session is None or not session.established:
            return []
        probes = peer.probes
        if probes is None:
            probes = peer.probes = {}
        elif len(probes) >= MAX_PROBES_IN_FLIGHT:
            probes.pop(next(iter(probes)))
        probe_id = int.from_bytes(os.urandom(8), "big")
        probes[probe_id] = now
        message = PathProbe.build({"probe_id": probe_id})
        if direct_to is None:
            return [SendMessage(peer.node_id, message)]
        return [SendOnPath(peer.node_id, message, direct_to)]

    def probe_received(self, peer: Peer, message: bytes, source: Endpoint, relayed: bool) -> list[Send]:
        """Answer on the path the probe came by, so the answer proves that path both ways."""
        probe = parse_or_none(PathProbe, message)
        if probe is None:
            self.drops["probe_malformed"] += 1
            return []
        if not self._probe_answers.take(peer.node_id, self.now_s):  # refills at tick granularity: fine for a bound
            return []
        reply = PathProbeReply.build({"probe_id": probe.probe_id, "observed": source})
        return [SendOnPath(peer.node_id, reply, None if relayed else source)]

    def probe_reply_received(self, peer: Peer, message: bytes, source: Endpoint, relayed: bool, now: float) -> list[UseEndpoint]:
        reply = parse_or_none(PathProbeReply, message)
        if reply is None:
            self.drops["probe_malformed"] += 1
            return []
        sent_s = peer.probes.pop(reply.probe_id, None) if peer.probes is not None else None
        if sent_s is None:
            return []
        sample_ms = (now - sent_s) * 1000.0
        if relayed == peer.via_relay:
            peer.latency_ms = sample_ms if peer.latency_ms is None else peer.latency_ms + LATENCY_SMOOTHING * (sample_ms - peer.latency_ms)
        if peer.is_controller or peer.is_root:
            self.observed_endpoint = tuple(reply.observed)
        if relayed:
            return self.proven(peer, None, now)
        rtt_ms = peer.endpoint_rtt_ms
        if rtt_ms is None:
            rtt_ms = peer.endpoint_rtt_ms = {}
        known = rtt_ms.get(source)
        rtt_ms[source] = sample_ms if known is None else known + LATENCY_SMOOTHING * (sample_ms - known)
        current_ms = rtt_ms.get(peer.endpoint) if peer.endpoint is not None else None
        if peer.via_relay or source == peer.endpoint or current_ms is None or rtt_ms[source] < current_ms * BETTER_PATH_RATIO:
            # Direct beats the relay; among direct endpoints, the clearly faster one wins.
            return self.proven(peer, source, now)
        peer.direct_rx_s = now
        return []

    # -- timers -------------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Send]:
        self.now_s = now
        plan: list[Send] = []
        for peer in self.peers.by_id.values():  # peers in use, controllers and roots: idle members have no Peer
            session = peer.session
            if session is None or not session.established:
                continue
            active = now - peer.last_frame_s <= ACTIVE_WINDOW_S
            if not peer.via_relay and active and peer.direct_proven_s is not None:
                last_direct = peer.direct_rx_s or -1e18
                if now - last_direct > DIRECT_DEAD_AFTER_S and now - peer.direct_proven_s > DIRECT_DEAD_AFTER_S:
                    self._use_relay(peer, now)
            recent = now - peer.last_frame_s <= RECENT_WINDOW_S
            if now >= peer.next_probe_s and (recent or peer.is_controller or peer.is_root):
                if peer.is_root:
                    interval_s = ROOT_PROBE_S
                elif peer.is_controller:
                    link = self.controllers.get(peer.node_id)
                    several = link is not None and len(link.instances) > 1
                    interval_s = CONTROLLER_INSTANCES_PROBE_S if several else PROBE_IDLE_INTERVAL_S
                elif active:
                    interval_s = PROBE_ACTIVE_INTERVAL_S
                else:
                    interval_s = NAT_KEEPALIVE_S
                peer.next_probe_s = now + interval_s
                plan.extend(self.probe(peer, now))
            if active and not peer.via_relay and len(peer.candidates) > 1 and now >= peer.next_candidate_probe_s:
                peer.next_candidate_probe_s = now + CANDIDATE_PROBE_S
                for endpoint in peer.candidates:
                    if endpoint != peer.endpoint:
                        plan.extend(self.probe(peer, now, endpoint))
            if peer.via_relay and now >= peer.next_lookup_s:
                peer.next_lookup_s = now + RELAYED_LOOKUP_S
                plan.extend(self.roots.lookup(peer.node_id, now))
            if peer.via_relay and now >= peer.next_direct_retry_s:
                peer.next_direct_retry_s = now + DIRECT_RETRY_S
                for endpoint in peer.candidates or ([peer.endpoint] if peer.endpoint else []):
                    plan.extend(self.probe(peer, now, endpoint))
                plan.extend(self.request_punch(peer, now))
        return plan
