"""The node's protocol core, sans-IO: datagrams, TAP frames and time in; datagrams, TAP frames and events out.

NodeCore wires the parts together and is what the edge (l2mesh.edge.node.daemon)
talks to: frame_from_tap(), datagram_received() and tick() in; output through
a Transmit (send a datagram, write a frame to a TAP); rarer news (a network
config changed) left in `events`. The parts, each in its own file:

    peer_table.py   the peers we trust and their sessions
    send.py         frames from TAPs, messages sealed and put on their paths
    receive.py      datagrams opened, frames checked and written to TAPs
    networks.py     configs applied or refused, multicast subscriptions, bridges
    membership.py   joining, asking controllers for configs   (returns decisions)
    paths.py        direct, punched or relayed paths to peers  (returns decisions)
    roots.py        registering with roots, asking where nodes are  (returns decisions)

Membership, Paths and Roots hold no reference back to the core: they return
decisions (decisions.py), which apply() below carries out.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from l2mesh.crypto.timers import DEFAULT_LIMITS, SessionLimits
from l2mesh.fragments import DEFAULT_MAX_DATAGRAM_BYTES
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.netconf import NetworkConfig
from l2mesh.node.decisions import (
    AnnounceEndpoints,
    ApplyConfig,
    Decision,
    DenyNetwork,
    ForgetPeer,
    LookupNode,
    MarkNetworkOk,
    NodeLocated,
    RenewSession,
    SendDatagram,
    SendMessage,
    SendOnPath,
    SendRelayed,
    TrustController,
    TrustRoot,
    UseEndpoint,
)
from l2mesh.node.events import (
    BroadcastStorm,
    ControllerIdentityLearned,
    LoopStateChanged,
    NetworkConfigured,
    NetworkRemoved,
    NetworkStatus,
    NetworkStatusChanged,
    RootPinned,
)
from l2mesh.node.membership import ControllerContact, Membership
from l2mesh.node.network_state import NetworkState
from l2mesh.node.networks import GROUP_REFRESH_S, GROUP_TTL_S, Networks
from l2mesh.node.paths import Paths
from l2mesh.node.peer_table import PeerTable
from l2mesh.node.peers import Peer
from l2mesh.node.ping import Pings
from l2mesh.node.roots import Roots
from l2mesh.node.receive import (
    ControlMessage,
    HandshakeAnswered,
    HandshakeCompleted,
    KeysConfirmed,
    Note,
    ReceivePath,
)
from l2mesh.node.send import KEEPALIVE_MESSAGE, SendPath, Transmit
from l2mesh.session import SessionAction
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import MessageKind
from l2mesh.wire.packets import RELAY_HEADER_BYTES, PacketType

_SENDS = (SendMessage, SendDatagram, SendOnPath, SendRelayed)
_FRAGMENT = int(PacketType.FRAGMENT)
_TRANSPORT = int(PacketType.TRANSPORT)

__all__ = [
    "BroadcastStorm",
    "ControllerIdentityLearned",
    "GROUP_REFRESH_S",
    "GROUP_TTL_S",
    "LoopStateChanged",
    "NetworkConfigured",
    "NetworkRemoved",
    "NetworkState",
    "NetworkStatus",
    "NetworkStatusChanged",
    "NodeCore",
    "Transmit",
]


class NodeCore:
    def __init__(
        self,
        identity: Identity,
        transmit: Transmit,
        limits: SessionLimits = DEFAULT_LIMITS,
        max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.wall_clock_s = wall_clock_s  # for config expiry only; timers use the `now` passed in
        self.transmit = transmit
        self.drops: Counter[str] = Counter()
        self.events: deque[object] = deque()
        self.networks: dict[int, NetworkState] = {}
        self.peer_table = PeerTable(identity.x25519_private, limits)
        self.peers = self.peer_table.by_id
        self.table = self.peer_table.sessions
        self.membership = Membership(identity, self.networks, self.drops, wall_clock_s)
        self.roots = Roots(identity, self.peer_table, self.drops)
        self.paths = Paths(self.node_id, self.peer_table, self.membership.controllers, self.roots, self.drops)
        self.send = SendPath(self.node_id, self.peer_table, self.networks, self.paths, transmit, self.drops, max_datagram_bytes)
        self.nets = Networks(self.node_id, self.networks, self.peer_table, self.send, self.events, self.drops)
        self.receive = ReceivePath(self.peer_table, self.networks, self.paths, self.send, self.drops, limits)
        self.reassembler = self.receive.reassembler
        self.pings = Pings()
        # The per-frame entry points, bound once: the edge calls them for every frame.
        self.frame_from_tap = self.send.frame_from_tap
        self.vnet_frame_from_tap = self.send.vnet_frame_from_tap
        self._now_s = 0.0

    @property
    def observed_endpoint(self) -> Endpoint | None:
        """Our address as the controller (or a root) sees it."""
        return self.paths.observed_endpoint

    # -- networks -----------------------------------------------------------------------------------
    def join(
        self,
        network_id: int,
        controller_endpoint: Endpoint | None,
        now: float,
        controller_identity: PublicIdentity | None = None,
        cached_signed: bytes | None = None,
    ) -> None:
        self.nets.state(network_id)
        self.apply(self.membership.join(network_id, controller_endpoint, now, controller_identity, cached_signed), now)

    def add_root(self, endpoint: Endpoint, expected_id: int | None, identity: PublicIdentity | None, now: float) -> None:
        """A root to register with and relay through (identity None: fetch its keys, check them against
        expected_id if given, and pin them)."""
        self.apply(self.roots.add(endpoint, expected_id, identity, now), now)

    def leave(self, network_id: int) -> None:
        self.nets.remove(network_id)
        self.apply(self.membership.leave(network_id), self._now_s)

    def apply_netconf(self, config: NetworkConfig, signed: bytes | None = None) -> bool:
        """Install a network config (the static-file seam, or a cached one). False if it is stale."""
        return self.nets.apply_config(config, signed, self._now_s)

    def remove_network(self, network_id: int) -> None:
        self.nets.remove(network_id)

    def set_local_groups(self, network_id: int, groups: frozenset[bytes], now: float) -> None:
        self.nets.set_local_groups(network_id, groups, now)

    def send_message(self, node_id: int, plaintext: bytes, now: float) -> None:
        self.send.send_message(node_id, plaintext, now)

    def ping(self, node_id: int, now: float) -> int | None:
        """Probe node_id on the path in use (behind a handshake when there is no session): the ping's id,
        whose answer pings.take() gives; None when node_id is no peer (not in a network we share, nor a
        controller or root of ours)."""
        if self.peer_table.peer(node_id, now) is None:
            return None
        probe_id, message = self.pings.start(node_id, now)
        self.send.send_message(node_id, message, now)
        return probe_id

    # -- datagrams ----------------------------------------------------------------------------------------
    def datagram_received(self, data: memoryview, source: Endpoint, now: float) -> None:
        """One UDP datagram; a malformed or hostile one is counted and dropped, never raised."""
        note = self.receive.datagram(data, source, now)
        if note is not None:
            self._note(note, now)

    def segments_received(self, run: memoryview, segment_bytes: int, source: Endpoint, now: float) -> bool:
        """A UDP_GRO run (datagrams of segment_bytes, the last maybe shorter): whole fragment sets in
        it are joined at once, everything else goes datagram by datagram. True: the run is taken."""
        receive = self.receive
        take_whole = receive.reassembler.take_whole
        offset, size = 0, len(run)
        while offset < size:
            kind = run[offset]
            # Only a fragment can start a set; a run of small frames skips the call (it is per datagram).
            whole = take_whole(run, offset, segment_bytes, source) if kind == _FRAGMENT else None
            if whole is not None:
                packet, consumed = whole
                note = receive.whole_packet(packet, source, now)
                offset += consumed
            else:
                end = offset + segment_bytes
                if end > size:
                    end = size
                # A run of small frames goes to the transport path directly, past datagram()'s dispatch.
                if kind == _TRANSPORT:
                    note = receive.transport(run[offset:end], source, now, None)
                else:
                    note = receive.datagram(run[offset:end], source, now)
                offset = end
            if note is not None:
                self._note(note, now)
        return True

    def _note(self, note: Note, now: float) -> None:
        if isinstance(note, ControlMessage):
            self._control(note, now)
        elif isinstance(note, HandshakeCompleted):
            peer = note.peer
            self.apply(self.paths.proven(peer, note.source, now), now)
            if peer.is_controller:
                self.apply(self.membership.controller_session_renewed(peer.node_id, now), now)
            if peer.is_root:
                self.roots.session_renewed(peer.node_id)
            self.send.flush_or_confirm(peer, now)
        elif isinstance(note, HandshakeAnswered):
            if note.relayed:
                self.paths.answered_through_relay(note.peer, now)
            if note.peer.is_controller:
                note.peer.awaiting_confirmation = True
        elif isinstance(note, KeysConfirmed):
            self.apply(self.membership.controller_session_renewed(note.peer.node_id, now), now)
            if note.peer.is_root:
                self.roots.session_renewed(note.peer.node_id)
        elif note.data[0] == PacketType.RELAY:
            origin = self.paths.relay_origin(note.data, note.source, now)
            if origin is not None:
                inner = self.receive.dispatch(note.data[RELAY_HEADER_BYTES:], note.source, now, origin)
                if inner is not None:
                    self._note(inner, now)
        elif note.data[0] == PacketType.IDENTITY_RESPONSE:
            pinned = self.roots.identity_response(note.data, note.source)
            if pinned is None:
                pinned = self.membership.identity_response(note.data, note.source, now)
            self.apply(pinned, now)
        else:
            self.drops["unexpected_packet_type"] += 1

    def _control(self, note: ControlMessage, now: float) -> None:
        peer, message = note.peer, note.message
        kind = message[0]
        if kind == MessageKind.MULTICAST_SUBSCRIPTIONS:
            self.nets.subscriptions_received(peer, message, now)
        elif (kind == MessageKind.MULTICAST_GATHER_REPLY or kind == MessageKind.MULTICAST_SUBSCRIBERS_CHANGED) and peer.is_controller:
            self.nets.gathered_received(peer, message, now)
        elif kind == MessageKind.PATH_PROBE:
            self.apply(self.paths.probe_received(peer, message, note.source, note.relayed), now)
        elif kind == MessageKind.PATH_PROBE_REPLY:
            if self.pings.outstanding and self.pings.reply_received(
                peer.node_id, message, note.source, note.relayed, peer.relay_id, now
            ):
                return
            self.apply(self.paths.probe_reply_received(peer, message, note.source, note.relayed, now), now)
        elif kind == MessageKind.ENDPOINT_HINTS and (peer.is_controller or peer.is_root):
            self.apply(self.paths.hints_received(message, now), now)
        elif kind == MessageKind.ROOT_REGISTERED and peer.is_root:
            self.roots.registered(peer.node_id, message)
        elif kind == MessageKind.ROOT_LOOKUP_REPLY and peer.is_root:
            self.apply(self.roots.lookup_reply(peer.node_id, message, now), now)
        elif kind == MessageKind.NETCONF_RESPONSE and peer.is_controller:
            self.apply(self.membership.netconf_response(peer.node_id, message, now), now)
        elif kind == MessageKind.NETCONF_DELTA and peer.is_controller:
            self.apply(self.membership.netconf_delta(peer.node_id, message, now), now)
        else:
            self.drops["unhandled_message"] += 1

    # -- decisions ------------------------------------------------------------------------------------------
    def apply(self, decisions: Iterable[Decision], now: float) -> None:
        """Carry out what membership and paths decided, in order."""
        for decision in decisions:
            if isinstance(decision, _SENDS):
                self.send.send((decision,), now)
            elif isinstance(decision, UseEndpoint):
                peer = self.peers.get(decision.node_id)
                if peer is not None:
                    self.peer_table.set_endpoint(peer, decision.endpoint)
            elif isinstance(decision, RenewSession):
                peer = self.peers.get(decision.node_id)
                if peer is not None:
                    self.send.renew_session(peer, now, decision.restart)
            elif isinstance(decision, AnnounceEndpoints):
                self.send.send(self.paths.announce_local_endpoints(decision.controller_id), now)
            elif isinstance(decision, ApplyConfig):
                self.nets.apply_config(decision.config, decision.signed, now, decision.changes)
            elif isinstance(decision, DenyNetwork):
                self.nets.deny(decision.network_id, decision.status)
            elif isinstance(decision, MarkNetworkOk):
                self.nets.mark_ok(decision.network_id)
            elif isinstance(decision, TrustController):
                self._trust_controller(decision)
            elif isinstance(decision, TrustRoot):
                self._trust_root(decision)
            elif isinstance(decision, LookupNode):
                self.send.send(self.roots.lookup(decision.node_id, now), now)
            elif isinstance(decision, NodeLocated):
                self._located(decision, now)
            elif isinstance(decision, ForgetPeer):
                peer = self.peers.get(decision.node_id)
                if peer is not None:
                    self.peer_table.forget(peer)

    def _trust_controller(self, decision: TrustController) -> None:
        peer = self.peers.get(decision.node_id)
        if peer is None or peer.identity != decision.identity:
            if peer is not None:
                self.peer_table.forget(peer)
            peer = Peer(decision.node_id, decision.identity, is_controller=True)
            self.peer_table.add(peer)
        if decision.endpoint is not None:
            if decision.endpoint not in peer.candidates:
                peer.candidates.append(decision.endpoint)
            if peer.endpoint is None:
                self.peer_table.set_endpoint(peer, decision.endpoint)
        peer.is_controller = True
        if decision.learned:
            self.events.append(ControllerIdentityLearned(decision.node_id, decision.identity))

    def _trust_root(self, decision: TrustRoot) -> None:
        peer = self.peers.get(decision.node_id)
        if peer is None or peer.identity != decision.identity:
            if peer is not None:
                self.peer_table.forget(peer)
            peer = Peer(decision.node_id, decision.identity, candidates=[decision.endpoint], is_root=True)
            self.peer_table.add(peer)
        self.peer_table.set_endpoint(peer, decision.endpoint)
        peer.is_root = True
        if decision.learned:
            self.events.append(RootPinned(decision.node_id, decision.identity, decision.endpoint))

    def _located(self, located: NodeLocated, now: float) -> None:
        """Where a root says a node is: a controller we look for, or new candidates for a peer."""
        self.apply(self.membership.controller_located(located.node_id, located.identity, located.endpoints, now), now)
        peer = self.peers.get(located.node_id)
        if peer is None or peer.identity != located.identity:
            return
        self.paths.add_candidates(peer, located.endpoints)
        if peer.endpoint is None and located.endpoints:
            self.peer_table.set_endpoint(peer, located.endpoints[0])

    # -- timers ------------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        send = self.send
        for session, action in self.table.poll(now):
            peer = self.peer_table.by_static.get(session.remote_static)
            if peer is None:
                continue
            if action & SessionAction.EXPIRED:
                peer.session = None
                continue
            if action & SessionAction.HANDSHAKE_FAILED:
                self.drops["handshake_failed_queue_dropped"] += peer.drop_queue()
            if action & SessionAction.SEND_INITIATION:
                send.send_initiation(peer, session, now)
            if action & SessionAction.SEND_KEEPALIVE:
                send.send_message(peer.node_id, KEEPALIVE_MESSAGE, now)
        self.peer_table.forget_idle(now)
        self._now_s = now
        self.receive.reassembler.expire(now)
        self.apply(self.membership.tick(now), now)
        contacts = {
            node_id: ControllerContact(peer.last_rx_s, None if peer.via_relay else peer.endpoint)
            for node_id in self.membership.controllers if (peer := self.peers.get(node_id)) is not None
        }
        self.apply(self.membership.failover(now, contacts), now)
        self.apply(self.roots.tick(now, self.paths.local_endpoints), now)
        self.apply(self.paths.tick(now), now)
        self.nets.tick(now)

    # -- introspection ------------------------------------------------------------------------------------------
    def counters(self) -> dict[str, object]:
        return {
            "drops": dict(self.drops + self.receive.reassembler.drops),
            "networks": {f"{nid:016x}": state.switch.counters() for nid, state in self.networks.items()},
        }
