"""The send path: frames from a TAP through the switch to peers, and every inner message sealed and put on
its path (direct, fragmented, or in a relay envelope), or queued behind a handshake.

Per-frame work avoids building objects: one switch lookup, one header
concatenation, one AEAD call, one system call (or one segmented send).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from l2mesh.buffers import untouched_buffer
from l2mesh.fragments import fragment_into
from l2mesh.node.decisions import Send, SendDatagram, SendMessage, SendOnPath, SendRelayed
from l2mesh.node.network_state import NetworkState
from l2mesh.node.paths import Paths
from l2mesh.node.peer_table import PeerTable
from l2mesh.node.peers import Peer
from l2mesh.session import Session
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import VNET_HEADER_BYTES, MessageKind
from l2mesh.wire.packets import MAX_FRAGMENTS, RELAY_HEADER, RELAY_HEADER_BYTES, PacketType

KEEPALIVE_MESSAGE = bytes([MessageKind.KEEPALIVE])


class Transmit(Protocol):
    """How the core's output leaves it; the edge implements this with non-blocking system calls."""

    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None: ...

    def write_frame(self, network_id: int, frame: bytes | memoryview) -> None: ...

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None:
        """Datagrams of segment_bytes each (the last may be shorter), laid end to end in data."""

    def write_offload_frame(self, network_id: int, vnet_frame: bytes | memoryview) -> None:
        """A virtio_net_hdr followed by a frame (a TCP super-frame, or a checksum to complete)."""


class SendPath:
    def __init__(
        self,
        node_id: int,
        peers: PeerTable,
        networks: dict[int, NetworkState],
        paths: Paths,
        transmit: Transmit,
        drops: Counter[str],
        max_datagram_bytes: int,
    ) -> None:
        self.node_id = node_id
        self.peers = peers
        self.networks = networks
        self.paths = paths
        self.transmit = transmit
        self.drops = drops
        self.max_datagram_bytes = max_datagram_bytes
        # Reused: sent before the next frame. Its pages become resident when a frame needs fragments.
        self.segment_buffer = memoryview(untouched_buffer(MAX_FRAGMENTS * max_datagram_bytes))

    # -- frames from a TAP ---------------------------------------------------------------------------
    def _route(self, state: NetworkState, frame: bytes | memoryview, now: float) -> int | tuple[int, ...] | None:
        """Where the switch sends a frame; frames it answers itself (ARP, ND) are written back to the TAP."""
        switch = state.switch
        destination = switch.route_from_tap(frame, now)
        if destination is None and switch.local_replies:
            for reply in switch.local_replies:
                self.transmit.write_frame(state.network_id, reply)
            switch.local_replies.clear()
        return destination

    def frame_from_tap(self, network_id: int, frame: bytes, now: float) -> None:
        state = self.networks.get(network_id)
        if state is None:
            self.drops["frame_for_unknown_network"] += 1
            return
        destination = self._route(state, frame, now)
        if destination is not None:
            self.send_frame(destination, state.frame_header + frame, now)

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
        destination = self._route(state, memoryview(data)[VNET_HEADER_BYTES:], now)
        if destination is not None:
            self.send_frame(destination, state.offload_header + data, now)

    def send_frame(self, destination: int | tuple[int, ...], plaintext: bytes, now: float) -> None:
        if destination.__class__ is int:
            self.send_message(destination, plaintext, now, True)  # type: ignore[arg-type]
        else:
            for node_id in destination:  # type: ignore[union-attr]
                self.send_message(node_id, plaintext, now, True)

    # -- messages --------------------------------------------------------------------------------------
    def send_message(self, node_id: int, plaintext: bytes, now: float, is_frame: bool = False) -> None:
        """Encrypt an inner message to a peer and send it, or queue it behind a handshake."""
        peer = self.peers.by_id.get(node_id)
        if peer is None:
            peer = self.peers.peer(node_id, now)  # an idle member: traffic starts
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
        self.put_on_path(peer, packet)

    def put_on_path(self, peer: Peer, packet: bytes | memoryview) -> None:
        """A session packet to the peer on the path in use."""
        peer.tx_packets += 1
        peer.tx_bytes += len(packet)
        if peer.via_relay:
            self.send_relayed(peer, packet)
            return
        endpoint = peer.endpoint
        if endpoint is None:
            self.drops["no_path"] += 1
            return
        if len(packet) <= self.max_datagram_bytes:
            self.transmit.send_datagram(packet, endpoint)
        else:
            length = fragment_into(packet, self.max_datagram_bytes, self.segment_buffer)
            self.transmit.send_segments(self.segment_buffer[:length], self.max_datagram_bytes, endpoint)

    def send_relayed(self, peer: Peer, packet: bytes | memoryview) -> bool:
        relay = self.paths.relay_for(peer)
        if relay is None:
            self.drops["no_relay"] += 1
            return False
        header = RELAY_HEADER.pack(PacketType.RELAY, 0, peer.node_id.to_bytes(5, "big"), self.node_id.to_bytes(5, "big"))
        if len(packet) + RELAY_HEADER_BYTES <= self.max_datagram_bytes or packet[0] != PacketType.TRANSPORT:
            self.transmit.send_datagram(header + bytes(packet), relay)
        else:
            # Same-size enveloped fragments: one segmented send, and the relay forwards them as one batch.
            length = fragment_into(packet, self.max_datagram_bytes, self.segment_buffer, header)
            self.transmit.send_segments(self.segment_buffer[:length], self.max_datagram_bytes, relay)
        return True

    def send_on_path(self, peer: Peer, message: bytes, endpoint: Endpoint | None, now: float) -> None:
        """Seal with the current session and send on exactly this path (None: the relay)."""
        session = peer.session
        packet = session.seal(message, now) if session is not None and session.established else None
        if packet is None:
            return
        if endpoint is None:
            self.send_relayed(peer, packet)
        else:
            self.transmit.send_datagram(packet, endpoint)

    # -- handshakes ---------------------------------------------------------------------------------------
    def _queue_and_handshake(self, peer: Peer, plaintext: bytes, now: float) -> None:
        if not peer.enqueue(bytes(plaintext)):
            self.drops["queue_full"] += 1
        session = self.peers.session_of(peer)
        if session.pending is None:
            self.send_initiation(peer, session, now)

    def send_initiation(self, peer: Peer, session: Session, now: float) -> None:
        self.send(self.paths.initiation_plan(peer, session.create_initiation(now), now), now)

    def renew_session(self, peer: Peer, now: float, restart: bool = False) -> None:
        """Start a new handshake now (the peer seems to have lost our keys); restart: even if one is pending."""
        session = self.peers.session_of(peer)
        if session.pending is None or restart:
            self.send_initiation(peer, session, now)

    def flush_queue(self, peer: Peer, now: float) -> None:
        session, queue = peer.session, peer.queue
        if session is None or queue is None:
            return
        while queue:
            packet = session.seal(queue[0], now)
            if packet is None:
                return
            queue.popleft()
            self.put_on_path(peer, packet)
        peer.queue = None  # most peers never queue again: no empty deque kept per peer

    def flush_or_confirm(self, peer: Peer, now: float) -> None:
        """After our handshake completed: send what waited, or a keepalive so the responder may send at once."""
        if peer.queue:
            self.flush_queue(peer, now)
        else:
            self.send_message(peer.node_id, KEEPALIVE_MESSAGE, now)

    # -- decisions -------------------------------------------------------------------------------------------
    def send(self, plan: Iterable[Send], now: float) -> None:
        """Carry out the sending decisions of paths and membership."""
        for step in plan:
            if isinstance(step, SendMessage):
                self.send_message(step.node_id, step.message, now)
            elif isinstance(step, SendDatagram):
                self.transmit.send_datagram(step.data, step.endpoint)
            else:
                peer = self.peers.by_id.get(step.node_id)
                if peer is None:
                    self.drops["no_such_peer"] += 1
                elif isinstance(step, SendOnPath):
                    self.send_on_path(peer, step.message, step.endpoint, now)
                elif isinstance(step, SendRelayed):
                    self.send_relayed(peer, step.packet)
