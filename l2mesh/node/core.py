"""The node's protocol core, sans-IO: datagrams, TAP frames and time in; datagrams, TAP frames and events out.

NodeCore owns the session table, the peers, the per-network switches and the
fragment reassembler. The edge (daemon.py) calls frame_from_tap(),
datagram_received() and tick(); the core answers through a Transmit object
(send a datagram, write a frame to a TAP) and leaves rarer news (a network
config changed) in `events` for the edge to act on. The per-frame paths
avoid building objects: struct headers, one dict per hop, one AEAD call.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from l2mesh.crypto.timers import DEFAULT_LIMITS, SessionLimits
from l2mesh.fragments import DEFAULT_MAX_DATAGRAM_BYTES, Reassembler, fragment_into
from l2mesh.identity import Identity
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.node.membership import Membership
from l2mesh.node.paths import Paths
from l2mesh.node.peers import Peer
from l2mesh.wire.common import Endpoint
from l2mesh.ratelimit import KeyedRateLimiter
from l2mesh.session import Session, SessionAction, SessionError, SessionTable
from l2mesh.switch import MemberPort, NetworkSwitch
from l2mesh.switch.loops import HELLO_INTERVAL_S, build_hello, build_topology_change
from l2mesh.wire.errors import ParseError, parse_exact
from l2mesh.wire.messages import (
    FRAME_HEADER,
    FRAME_HEADER_BYTES,
    VNET_HEADER_BYTES,
    MessageKind,
    MulticastSubscriptions,
)
from l2mesh.wire.packets import MAX_FRAGMENTS, PacketType
from l2mesh.ids import member_mac

_TRANSPORT = PacketType.TRANSPORT
_FRAGMENT = PacketType.FRAGMENT
_FRAME = MessageKind.FRAME
_FRAME_OFFLOAD = MessageKind.FRAME_OFFLOAD
_OFFLOAD_PAYLOAD_AT = FRAME_HEADER_BYTES + VNET_HEADER_BYTES
_KEEPALIVE = MessageKind.KEEPALIVE
_KEEPALIVE_MESSAGE = bytes([_KEEPALIVE])
GROUP_TTL_S = 180  # subscriptions announced live this long unless refreshed
GROUP_REFRESH_S = 60.0
SWITCH_EXPIRE_INTERVAL_S = 5.0

_unpack_frame_header = FRAME_HEADER.unpack_from


class Transmit(Protocol):
    """How the core's output leaves it; the edge implements this with non-blocking system calls."""

    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None: ...

    def write_frame(self, network_id: int, frame: bytes | memoryview) -> None: ...

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None:
        """Datagrams of segment_bytes each (the last may be shorter), laid end to end in data."""

    def write_offload_frame(self, network_id: int, vnet_frame: bytes | memoryview) -> None:
        """A virtio_net_hdr followed by a frame (a TCP super-frame, or a checksum to complete)."""


class NetworkStatus(enum.Enum):
    REQUESTING = "REQUESTING"
    ACCESS_DENIED = "ACCESS_DENIED"
    NOT_FOUND = "NOT_FOUND"
    OK = "OK"


@dataclass(frozen=True)
class NetworkConfigured:
    """A network's config was applied (first time or changed): the edge sets up its TAP and addresses."""

    network_id: int
    config: NetworkConfig
    signed: bytes | None = None  # as the controller signed it, for the edge's cache


@dataclass(frozen=True)
class NetworkStatusChanged:
    """A network lost its config (ACCESS_DENIED, NOT_FOUND): the edge removes its managed addresses."""

    network_id: int
    status: "NetworkStatus"


@dataclass(frozen=True)
class NetworkRemoved:
    network_id: int


@dataclass(frozen=True)
class LoopStateChanged:
    """This bridge member started (or stopped) standing down for a bridge with a lower id on its LAN."""

    network_id: int
    blocked: bool
    neighbours: tuple[int, ...]


@dataclass(frozen=True)
class BroadcastStorm:
    """A source exceeded the multicast/broadcast rate on a network (reported once per source)."""

    network_id: int
    source: int


class NetworkState:
    def __init__(self, network_id: int, local_node_id: int) -> None:
        self.network_id = network_id
        self.status = NetworkStatus.REQUESTING
        self.config: NetworkConfig | None = None
        self.mac = member_mac(local_node_id, network_id)
        self.switch = NetworkSwitch(network_id, local_node_id, self.mac)
        self.frame_header = FRAME_HEADER.pack(_FRAME, network_id)
        self.offload_header = FRAME_HEADER.pack(_FRAME_OFFLOAD, network_id)
        self.local_groups: frozenset[bytes] = frozenset()  # multicast groups our TAP listens to
        self.next_group_refresh_s = 0.0
        self.storms_reported: set[int] = set()
        self.next_hello_s = 0.0
        self.loop_neighbours_before: set[int] = set()
        self.controller_endpoint: Endpoint | None = None  # None: configured locally (static seam)
        self.next_request_s = 0.0
        self.requests_sent = 0


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
        self.wall_clock_s = wall_clock_s  # for config expiry only; timers use the `now` passed in
        self.node_id = identity.node_id
        self.transmit = transmit
        self.max_datagram_bytes = max_datagram_bytes
        self.table = SessionTable(identity.x25519_private, self._is_allowed, limits)
        self.peers: dict[int, Peer] = {}
        self.peers_by_static: dict[bytes, Peer] = {}
        self.networks: dict[int, NetworkState] = {}
        self.peer_at: dict[Endpoint, Peer] = {}
        self.reassembler = Reassembler()
        self.segment_buffer = bytearray(MAX_FRAGMENTS * max_datagram_bytes)  # reused: sent before the next frame
        self._unknown_index_hints = KeyedRateLimiter(limits.unknown_index_hints_per_s, 1.0)
        self.events: deque[object] = deque()
        self.membership = Membership(self)
        self.paths = Paths(self)
        self.drops: Counter[str] = Counter()
        self.observed_endpoint: Endpoint | None = None  # our address as the controller sees it
        self._now_s = 0.0
        self._next_switch_expiry_s = 0.0

    # -- membership --------------------------------------------------------------------
    def _is_allowed(self, remote_static: bytes) -> bool:
        return remote_static in self.peers_by_static

    def network_state(self, network_id: int) -> NetworkState:
        state = self.networks.get(network_id)
        if state is None:
            state = self.networks[network_id] = NetworkState(network_id, self.node_id)
        return state

    def apply_netconf(self, config: NetworkConfig, signed: bytes | None = None) -> bool:
        """Install a network config (from the controller, or the static-file seam). False if it is stale."""
        state = self.network_state(config.network_id)
        current = state.config
        if current is not None and config.revision < current.revision:
            self.drops["stale_netconf"] += 1
            return False
        was_ok = state.status is NetworkStatus.OK
        state.config = config
        state.status = NetworkStatus.OK
        if was_ok and current is not None and _same_content(current, config):
            return True  # a refresh that changed nothing but timestamps
        switch = state.switch
        switch.broadcast_enabled = config.broadcast
        switch.broadcast_limit = config.multicast_limit
        old_members = set(switch.remote_ids)
        switch.set_members([_member_port(m, config.network_id) for m in config.members])
        self._sync_peers()
        newcomers = [n for n in switch.remote_ids if n not in old_members]
        if state.local_groups and newcomers:
            self._announce_groups(state, newcomers, self._now_s)
        self.events.append(NetworkConfigured(config.network_id, config, signed))
        return True

    def deny_network(self, network_id: int, status_name: str) -> None:
        """The controller refused us (or the network is gone): stop forwarding on it at once."""
        state = self.networks.get(network_id)
        if state is None:
            return
        status = NetworkStatus[status_name]
        changed = state.status is not status
        state.status = status
        state.config = None
        state.switch.set_members([])
        self._sync_peers()
        if changed:
            self.events.append(NetworkStatusChanged(network_id, status))

    def mark_network_ok(self, network_id: int) -> None:
        state = self.networks.get(network_id)
        if state is not None and state.config is not None:
            state.status = NetworkStatus.OK

    def join(self, network_id: int, controller_endpoint: Endpoint, now: float, **cached: object) -> None:
        self.membership.join(network_id, controller_endpoint, now, **cached)  # type: ignore[arg-type]

    def leave(self, network_id: int) -> None:
        self.membership.leave(network_id)

    def remove_network(self, network_id: int) -> None:
        if self.networks.pop(network_id, None) is not None:
            self._sync_peers()
            self.events.append(NetworkRemoved(network_id))

    def _sync_peers(self) -> None:
        """Make the peer set the union of members over all networks; peers no longer shared are cut off."""
        wanted: dict[int, tuple[NetworkConfig, list[int]]] = {}
        for network_id, state in self.networks.items():
            if state.config is None or state.status is not NetworkStatus.OK:
                continue
            for member in state.config.members:
                if member.node_id == self.node_id:
                    continue
                wanted.setdefault(member.node_id, (state.config, []))[1].append(network_id)
        for node_id in [n for n, p in self.peers.items() if n not in wanted and not p.is_controller]:
            self.forget_peer(self.peers[node_id])
        for node_id, (config, network_ids) in wanted.items():
            listed = config.member(node_id)
            assert listed is not None
            member = listed
            peer = self.peers.get(node_id)
            if peer is not None and peer.identity != member.identity:
                self.forget_peer(peer)
                peer = None
            if peer is None:
                peer = Peer(node_id, member.identity)
                self.add_peer(peer)
            peer.networks = set(network_ids)
            peer.candidates = list(member.endpoints)
            if peer.endpoint is None and peer.candidates:
                self.set_endpoint(peer, peer.candidates[0])

    def add_peer(self, peer: Peer) -> None:
        self.peers[peer.node_id] = peer
        self.peers_by_static[peer.identity.x25519_public] = peer

    def set_endpoint(self, peer: Peer, endpoint: Endpoint) -> None:
        if peer.endpoint is not None and self.peer_at.get(peer.endpoint) is peer:
            del self.peer_at[peer.endpoint]
        peer.endpoint = endpoint
        self.peer_at[endpoint] = peer

    def forget_peer(self, peer: Peer) -> None:
        if peer.endpoint is not None and self.peer_at.get(peer.endpoint) is peer:
            del self.peer_at[peer.endpoint]
        del self.peers[peer.node_id]
        self.peers_by_static.pop(peer.identity.x25519_public, None)
        self.table.remove(peer.identity.x25519_public)
        peer.session = None
        peer.queue.clear()

    # -- frames from a TAP ---------------------------------------------------------------
    def frame_from_tap(self, network_id: int, frame: bytes, now: float) -> None:
        state = self.networks.get(network_id)
        if state is None:
            self.drops["frame_for_unknown_network"] += 1
            return
        switch = state.switch
        destination = switch.route_from_tap(frame, now)
        if destination is None:
            if switch.local_replies:
                for reply in switch.local_replies:
                    self.transmit.write_frame(network_id, reply)
                switch.local_replies.clear()
            return
        self._send_frame(destination, state.frame_header + frame, now)

    def _send_frame(self, destination: int | tuple[int, ...], plaintext: bytes, now: float) -> None:
        if destination.__class__ is int:
            self.send_message(destination, plaintext, now, True)  # type: ignore[arg-type]
        else:
            for node_id in destination:  # type: ignore[union-attr]
                self.send_message(node_id, plaintext, now, True)

    def vnet_frame_from_tap(self, network_id: int, data: bytes, now: float) -> None:
        """A read from a TAP opened with IFF_VNET_HDR: a virtio_net_hdr, then the frame.

        With offloads on, the kernel leaves checksums and TCP segmentation to
        whoever writes the frame out: here, the peer's TAP. Such frames cross
        as FRAME_OFFLOAD with the header kept; plain ones as ordinary FRAMEs.
        """
        if not data[0] and not data[1]:
            self.frame_from_tap(network_id, data[VNET_HEADER_BYTES:], now)
            return
        state = self.networks.get(network_id)
        if state is None:
            self.drops["frame_for_unknown_network"] += 1
            return
        destination = state.switch.route_from_tap(memoryview(data)[VNET_HEADER_BYTES:], now)
        if destination is None:
            return
        self._send_frame(destination, state.offload_header + data, now)

    def send_message(self, node_id: int, plaintext: bytes, now: float, is_frame: bool = False) -> None:
        """Encrypt an inner message to a peer and send it, or queue it behind a handshake."""
        peer = self.peers.get(node_id)
        if peer is None:
            self.drops["no_such_peer"] += 1
            return
        if is_frame:
            peer.last_frame_s = now
        session = peer.session
        packet = session.seal(plaintext, now) if session is not None else None
        if packet is None:
            self._queue_and_handshake(peer, plaintext, now)
            return
        self._transmit(peer, packet)

    def _transmit(self, peer: Peer, packet: memoryview) -> None:
        peer.tx_packets += 1
        peer.tx_bytes += len(packet)
        if peer.via_relay:
            self.paths.send_relayed(peer, packet)
            return
        endpoint = peer.endpoint
        if endpoint is None:
            self.drops["no_path"] += 1
            return
        if len(packet) <= self.max_datagram_bytes:
            self.transmit.send_datagram(packet, endpoint)
        else:
            length = fragment_into(packet, self.max_datagram_bytes, self.segment_buffer)
            self.transmit.send_segments(memoryview(self.segment_buffer)[:length], self.max_datagram_bytes, endpoint)

    def _queue_and_handshake(self, peer: Peer, plaintext: bytes, now: float) -> None:
        if len(peer.queue) == peer.queue.maxlen:
            self.drops["queue_full"] += 1
        peer.queue.append(bytes(plaintext))
        session = self._session_of(peer)
        if session.pending is None:
            self._send_initiation(peer, session, now)

    def _session_of(self, peer: Peer) -> Session:
        if peer.session is None:
            peer.session = self.table.session_for(peer.identity.x25519_public)
        return peer.session

    def _send_initiation(self, peer: Peer, session: Session, now: float) -> None:
        self.paths.send_initiation(peer, session.create_initiation(now), now)

    def renew_session(self, peer: Peer, now: float) -> None:
        """Start a new handshake now (the peer seems to have lost our keys)."""
        session = self._session_of(peer)
        if session.pending is None:
            self._send_initiation(peer, session, now)

    def _flush_queue(self, peer: Peer, now: float) -> None:
        session = peer.session
        while peer.queue and session is not None:
            packet = session.seal(peer.queue[0], now)
            if packet is None:
                return
            peer.queue.popleft()
            self._transmit(peer, packet)

    # -- datagrams from the network --------------------------------------------------------
    def datagram_received(self, data: memoryview, source: Endpoint, now: float) -> None:
        """One UDP datagram; a malformed or hostile one is counted and dropped, never raised."""
        if not data:
            self.drops["empty_datagram"] += 1
            return
        kind = data[0]
        if kind == _TRANSPORT:
            self._transport_received(data, source, now, None)
        elif kind == _FRAGMENT:
            whole = self.reassembler.add(data, source, now)
            if whole is not None:
                self._transport_received(memoryview(whole), source, now, None)
        elif kind == PacketType.RELAY:
            self.paths.relay_received(data, source, now)
        elif kind == PacketType.IDENTITY_RESPONSE:
            self.membership.identity_response(data, source, now)
        else:
            self.dispatch(data, source, now, None)

    def dispatch(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> None:
        """A session packet that arrived directly (relayed_from None) or inside a relay envelope."""
        kind = data[0] if data else -1
        if kind == _TRANSPORT:
            self._transport_received(data, source, now, relayed_from)
        elif kind == _FRAGMENT:
            key = source if relayed_from is None else ("relay", relayed_from.node_id)
            whole = self.reassembler.add(data, key, now)
            if whole is not None:
                self._transport_received(memoryview(whole), source, now, relayed_from)
        elif kind == PacketType.HANDSHAKE_INIT:
            self._initiation_received(data, source, now, relayed_from)
        elif kind == PacketType.HANDSHAKE_RESPONSE:
            self._response_received(data, source, now, relayed_from)
        else:
            self.drops["unknown_packet_type"] += 1

    def _transport_received(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> None:
        try:
            session, plaintext = self.table.open(data, now)
        except SessionError:
            self.drops["transport_rejected"] += 1
            self._maybe_peer_lost_keys(relayed_from or self.peer_at.get(source), now)
            return
        peer = self.peers_by_static.get(session.remote_static)
        if peer is None or (relayed_from is not None and relayed_from is not peer):
            self.drops["transport_from_unknown_peer"] += 1
            return
        if relayed_from is None and source == peer.endpoint:
            peer.direct_rx_s = now
        else:
            self.paths.heard(peer, source, relayed_from is not None, now)
        peer.last_rx_s = now
        peer.rx_packets += 1
        peer.rx_bytes += len(data)
        if peer.queue:
            self._flush_queue(peer, now)
        if not plaintext:
            self.drops["empty_message"] += 1
            return
        kind = plaintext[0]
        if kind != _KEEPALIVE:
            session.last_data_received_s = now
        if kind == _FRAME or kind == _FRAME_OFFLOAD:
            # Both start with the network id; an offloaded frame keeps its virtio header before the frame.
            frame_at = FRAME_HEADER_BYTES if kind == _FRAME else _OFFLOAD_PAYLOAD_AT
            if len(plaintext) <= frame_at:
                self.drops["frame_message_too_short"] += 1
                return
            network_id = _unpack_frame_header(plaintext)[1]
            state = self.networks.get(network_id)
            if state is None or network_id not in peer.networks:
                self.drops["frame_for_unshared_network"] += 1
                return
            if state.switch.accept_from_peer(peer.node_id, plaintext[frame_at:], now):
                if kind == _FRAME:
                    self.transmit.write_frame(network_id, plaintext[frame_at:])
                else:
                    self.transmit.write_offload_frame(network_id, plaintext[FRAME_HEADER_BYTES:])
            return
        self._control_received(peer, bytes(plaintext), source, now, relayed_from is not None)

    def _maybe_peer_lost_keys(self, peer: Peer | None, now: float) -> None:
        """Undecryptable traffic from a peer (by its address, or its relay envelope): it probably restarted.

        Waiting for our keys to expire would cut the peer off for minutes;
        a new handshake (rate-limited, since the hint is unauthenticated)
        heals it in one round trip.
        """
        if peer is None or not self._unknown_index_hints.take(peer.node_id, now):
            return
        self.renew_session(peer, now)

    def _control_received(self, peer: Peer, message: bytes, source: Endpoint, now: float, relayed: bool) -> None:
        kind = message[0]
        if kind == MessageKind.KEEPALIVE:
            return
        if kind == MessageKind.MULTICAST_SUBSCRIPTIONS:
            self._subscriptions_received(peer, message, now)
            return
        if kind == MessageKind.PATH_PROBE:
            self.paths.probe_received(peer, message, source, relayed, now)
            return
        if kind == MessageKind.PATH_PROBE_REPLY:
            self.paths.probe_reply_received(peer, message, source, relayed, now)
            return
        if kind == MessageKind.ENDPOINT_HINTS and peer.is_controller:
            self.paths.hints_received(peer, message, now)
            return
        if kind == MessageKind.NETCONF_RESPONSE and peer.is_controller:
            self.membership.netconf_response(peer, message, now)
            return
        self.drops["unhandled_message"] += 1

    def _initiation_received(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> None:
        rate_key = source[0] if relayed_from is None else ("relay", relayed_from.node_id)
        try:
            result = self.table.handle_initiation(data, now, rate_key)
        except (SessionError, ParseError):
            self.drops["initiation_rejected"] += 1
            return
        peer = self.peers_by_static[result.session.remote_static]
        if relayed_from is not None and relayed_from is not peer:
            self.drops["relayed_handshake_mismatch"] += 1
            return
        peer.session = result.session
        peer.last_rx_s = now
        assert result.response is not None
        # Answer on the path the initiation came by.
        if relayed_from is None:
            self.paths.heard(peer, source, False, now)
            self.transmit.send_datagram(result.response, source)
        else:
            self.paths.heard(peer, source, True, now)
            self.paths.send_relayed(peer, result.response)
        if peer.is_controller:
            self.membership.controller_session_renewed(peer, now)

    def _response_received(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> None:
        try:
            result = self.table.handle_response(data, now)
        except (SessionError, ParseError):
            self.drops["response_rejected"] += 1
            return
        peer = self.peers_by_static.get(result.session.remote_static)
        if peer is None or (relayed_from is not None and relayed_from is not peer):
            self.drops["response_from_unknown_peer"] += 1
            return
        peer.session = result.session
        # A handshake round trip proves the path it took.
        self.paths.proven(peer, None if relayed_from is not None else source, now)
        peer.last_rx_s = now
        if peer.is_controller:
            self.membership.controller_session_renewed(peer, now)
        if peer.queue:
            self._flush_queue(peer, now)
        else:
            # Confirms the new keys to the responder, so it can send at once.
            self.send_message(peer.node_id, _KEEPALIVE_MESSAGE, now)

    # -- multicast subscriptions ----------------------------------------------------------------
    def set_local_groups(self, network_id: int, groups: frozenset[bytes], now: float) -> None:
        """The groups our TAP listens to (from the kernel); announced to every member when they change."""
        state = self.networks.get(network_id)
        if state is None or groups == state.local_groups:
            return
        state.local_groups = groups
        self._announce_groups(state, state.switch.remote_ids, now)

    def _announce_groups(self, state: NetworkState, node_ids: "tuple[int, ...] | list[int]", now: float) -> None:
        if state.status is not NetworkStatus.OK:
            return
        message = MulticastSubscriptions.build(
            {
                "network_id": state.network_id,
                "ttl_s": GROUP_TTL_S,
                "complete": True,
                "groups": [{"mac": g[:6], "adi": int.from_bytes(g[6:], "big")} for g in sorted(state.local_groups)],
            }
        )
        for node_id in node_ids:
            self.send_message(node_id, message, now)
        if len(node_ids) == len(state.switch.remote_ids):
            state.next_group_refresh_s = now + GROUP_REFRESH_S

    def parse_or_count(self, definition: Any, data: bytes | memoryview, drop_reason: str) -> Any:
        """The parsed message, or None after counting drop_reason: hostile bytes are counted, never raised."""
        try:
            return parse_exact(definition, data)
        except ParseError:
            self.drops[drop_reason] += 1
            return None

    def _subscriptions_received(self, peer: Peer, message: bytes, now: float) -> None:
        announcement = self.parse_or_count(MulticastSubscriptions, message, "subscriptions_malformed")
        if announcement is None:
            return
        state = self.networks.get(announcement.network_id)
        if state is None or announcement.network_id not in peer.networks:
            self.drops["subscriptions_for_unshared_network"] += 1
            return
        groups = {bytes(g.mac) + g.adi.to_bytes(4, "big") for g in announcement.groups}
        if not announcement.complete:
            groups |= state.switch.groups.groups_of(peer.node_id)
        state.switch.groups.replace(peer.node_id, groups, now + announcement.ttl_s)

    def _refresh_groups(self, now: float) -> None:
        for state in self.networks.values():
            if state.local_groups and now >= state.next_group_refresh_s:
                self._announce_groups(state, state.switch.remote_ids, now)
        # A peer with a new session may have restarted and forgotten our groups.
        for peer in self.peers.values():
            session = peer.session
            if session is None or session.established_count == peer.groups_sent_session or not session.established:
                continue
            peer.groups_sent_session = session.established_count
            for network_id in peer.networks:
                shared = self.networks.get(network_id)
                if shared is not None and shared.local_groups:
                    self._announce_groups(shared, [peer.node_id], now)

    # -- bridges ---------------------------------------------------------------------------------
    def _bridge_duties(self, state: NetworkState, now: float) -> None:
        switch = state.switch
        if not switch.local_is_bridge:
            return
        if now >= state.next_hello_s:
            state.next_hello_s = now + HELLO_INTERVAL_S
            self.transmit.write_frame(state.network_id, build_hello(state.mac, state.network_id, self.node_id))
        changed = switch.update_loop_state(now)
        if changed is not None:
            neighbours = tuple(sorted(set(switch.loop_guard.neighbours) | state.loop_neighbours_before))
            state.loop_neighbours_before = set(switch.loop_guard.neighbours)
            self.events.append(LoopStateChanged(state.network_id, changed, neighbours))
            # Everyone forgets what they learned behind the bridges of this segment.
            flush = build_topology_change(state.mac, state.network_id, self.node_id, list(neighbours))
            plaintext = state.frame_header + flush
            for node_id in switch.remote_ids:
                self.send_message(node_id, plaintext, now)
        elif switch.blocked:
            state.loop_neighbours_before = set(switch.loop_guard.neighbours)

    # -- timers ------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for session, action in self.table.poll(now):
            peer = self.peers_by_static.get(session.remote_static)
            if peer is None:
                continue
            if action & SessionAction.EXPIRED:
                peer.session = None
                continue
            if action & SessionAction.HANDSHAKE_FAILED:
                self.drops["handshake_failed_queue_dropped"] += len(peer.queue)
                peer.queue.clear()
            if action & SessionAction.SEND_INITIATION:
                self._send_initiation(peer, session, now)
            if action & SessionAction.SEND_KEEPALIVE:
                self.send_message(peer.node_id, _KEEPALIVE_MESSAGE, now)
        self._now_s = now
        self.reassembler.expire(now)
        self.membership.tick(now)
        self.paths.tick(now)
        self._refresh_groups(now)
        if now >= self._next_switch_expiry_s:
            self._next_switch_expiry_s = now + SWITCH_EXPIRE_INTERVAL_S
            for state in self.networks.values():
                state.switch.expire(now)
        for state in self.networks.values():
            self._bridge_duties(state, now)
            for source in state.switch.storming - state.storms_reported:
                state.storms_reported.add(source)
                self.events.append(BroadcastStorm(state.network_id, source))

    # -- introspection ------------------------------------------------------------------------
    def counters(self) -> dict[str, object]:
        return {
            "drops": dict(self.drops + self.reassembler.drops),
            "networks": {f"{nid:016x}": state.switch.counters() for nid, state in self.networks.items()},
        }


def _member_port(member: MemberConfig, network_id: int) -> MemberPort:
    ipv4s = tuple(
        ipaddress.ip_interface(ip).ip.packed for ip in member.ips if ipaddress.ip_interface(ip).version == 4
    )
    return MemberPort(member.node_id, member.mac(network_id), member.bridge, ipv4s)


def _same_content(a: NetworkConfig, b: NetworkConfig) -> bool:
    return a.with_changes(timestamp_s=0.0, expires_s=0.0) == b.with_changes(timestamp_s=0.0, expires_s=0.0)
