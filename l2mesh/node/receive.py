"""The receive path: datagrams opened by their sessions, frames checked by the switch and written to the TAP.

Everything hostile is counted and dropped here, never raised. What is not
a frame (control messages, finished handshakes, relay envelopes, identity
answers) goes back to the core as a note, for membership and paths to
decide on; frames, the hot path, never leave this module.
"""

from __future__ import annotations

# mypyc looks up a compiled dataclass's field types among the module's globals, where builtins it does not
# know (memoryview) are not: without this import, the compiled module fails to import (KeyError)
from builtins import memoryview
from collections import Counter
from dataclasses import dataclass

from l2mesh.crypto.timers import SessionLimits
from l2mesh.fragments import Reassembler
from l2mesh.node.network_state import NetworkState
from l2mesh.node.paths import Paths
from l2mesh.node.peer_table import PeerTable
from l2mesh.node.peers import Peer
from l2mesh.node.send import SendPath
from l2mesh.ratelimit import KeyedRateLimiter
from l2mesh.session import HandshakeRefused, SessionError
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import ParseError
from l2mesh.wire.messages import FRAME_HEADER, FRAME_HEADER_BYTES, VNET_HEADER_BYTES, MessageKind
from l2mesh.wire.packets import PacketType

_TRANSPORT = PacketType.TRANSPORT
_FRAGMENT = PacketType.FRAGMENT
_FRAME = MessageKind.FRAME
_FRAME_OFFLOAD = MessageKind.FRAME_OFFLOAD
_KEEPALIVE = MessageKind.KEEPALIVE
_OFFLOAD_PAYLOAD_AT = FRAME_HEADER_BYTES + VNET_HEADER_BYTES
_unpack_frame_header = FRAME_HEADER.unpack_from


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """An authenticated inner message that is not a frame, and the path it came by."""

    peer: Peer
    message: bytes
    source: Endpoint
    relayed: bool


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """Our initiation was answered: the path it came back on (None: the relay) is proven."""

    peer: Peer
    source: Endpoint | None


@dataclass(frozen=True, slots=True)
class HandshakeAnswered:
    """We answered a peer's initiation: a new session that the peer started, by the relay or directly."""

    peer: Peer
    relayed: bool


@dataclass(frozen=True, slots=True)
class KeysConfirmed:
    """The first packet on keys a controller started: we may now send on them (as responder, not before)."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class Unsealed:
    """A packet outside any session (a relay envelope, a controller's identity) for the core to route."""

    data: memoryview
    source: Endpoint


Note = ControlMessage | HandshakeCompleted | HandshakeAnswered | KeysConfirmed | Unsealed


class ReceivePath:
    def __init__(
        self,
        peers: PeerTable,
        networks: dict[int, NetworkState],
        paths: Paths,
        send: SendPath,
        drops: Counter[str],
        limits: SessionLimits,
    ) -> None:
        self.peers = peers
        self.sessions = peers.sessions
        self.networks = networks
        self.paths = paths
        self.send = send
        self.transmit = send.transmit
        self.drops = drops
        self.reassembler = Reassembler()
        self._unknown_index_hints = KeyedRateLimiter(limits.unknown_index_hints_per_s, 1.0)

    def datagram(self, data: memoryview, source: Endpoint, now: float) -> Note | None:
        """One UDP datagram; a malformed or hostile one is counted and dropped, never raised."""
        if not data:
            self.drops["empty_datagram"] += 1
            return None
        kind = data[0]
        if kind == _TRANSPORT:
            return self.transport(data, source, now, None)
        if kind == _FRAGMENT:
            whole = self.reassembler.add(data, source, now)
            return self.transport(memoryview(whole), source, now, None) if whole is not None else None
        if kind == PacketType.RELAY or kind == PacketType.IDENTITY_RESPONSE:
            return Unsealed(data, source)
        return self.dispatch(data, source, now, None)

    def whole_packet(self, packet: bytes, source: Endpoint, now: float) -> Note | None:
        """A transport packet reassembled from fragments that came directly (Reassembler.take_whole)."""
        return self.transport(memoryview(packet), source, now, None)

    def dispatch(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> Note | None:
        """A session packet that arrived directly (relayed_from None) or inside a relay envelope."""
        kind = data[0] if data else -1
        if kind == _TRANSPORT:
            return self.transport(data, source, now, relayed_from)
        if kind == _FRAGMENT:
            key = source if relayed_from is None else ("relay", relayed_from.node_id)
            whole = self.reassembler.add(data, key, now)
            return self.transport(memoryview(whole), source, now, relayed_from) if whole is not None else None
        if kind == PacketType.HANDSHAKE_INIT:
            return self._initiation(data, source, now, relayed_from)
        if kind == PacketType.HANDSHAKE_RESPONSE:
            return self._response(data, source, now, relayed_from)
        if kind == PacketType.COOKIE_REPLY:
            try:
                self.sessions.handle_cookie_reply(data, now)  # our next retry carries mac2
            except (SessionError, ParseError):
                self.drops["cookie_reply_rejected"] += 1
            return None
        self.drops["unknown_packet_type"] += 1
        return None

    def _heard(self, peer: Peer, source: Endpoint, relayed: bool, now: float) -> None:
        if relayed:
            peer.relay_rx_s = now
            return
        roamed_to = self.paths.heard_directly(peer, source, now)
        if roamed_to is not None:
            self.peers.set_endpoint(peer, roamed_to)

    def transport(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> Note | None:
        """A transport packet (data[0] is TRANSPORT), direct (relayed_from None) or out of a relay envelope."""
        try:
            session, plaintext = self.sessions.open(data, now)
        except SessionError:
            self.drops["transport_rejected"] += 1
            self._maybe_peer_lost_keys(relayed_from.node_id if relayed_from is not None else self.peers.node_at(source), now)
            return None
        peer = self.peers.by_static.get(session.remote_static)
        if peer is None or (relayed_from is not None and relayed_from is not peer):
            self.drops["transport_from_unknown_peer"] += 1
            return None
        if relayed_from is None and source == peer.endpoint:
            peer.direct_rx_s = now
        else:
            self._heard(peer, source, relayed_from is not None, now)
        peer.last_rx_s = now
        peer.rx_packets += 1
        peer.rx_bytes += len(data)
        if peer.queue:
            self.send.flush_queue(peer, now)
        if not plaintext:
            self.drops["empty_message"] += 1
            return None
        kind = plaintext[0]
        if kind != _KEEPALIVE:
            session.last_data_received_s = now
        if kind == _FRAME or kind == _FRAME_OFFLOAD:
            # Both start with the network id; an offloaded frame keeps its virtio header before the frame.
            frame_at = FRAME_HEADER_BYTES if kind == _FRAME else _OFFLOAD_PAYLOAD_AT
            if len(plaintext) <= frame_at:
                self.drops["frame_message_too_short"] += 1
                return None
            network_id = _unpack_frame_header(plaintext)[1]
            state = self.networks.get(network_id)
            if state is None or network_id not in peer.networks:
                self.drops["frame_for_unshared_network"] += 1
                return None
            frame = plaintext[frame_at:]
            if state.switch.accept_from_peer(peer.node_id, frame, now):
                if kind == _FRAME:
                    self.transmit.write_frame(network_id, frame)
                else:
                    self.transmit.write_offload_frame(network_id, plaintext[FRAME_HEADER_BYTES:])
            return None
        if peer.awaiting_confirmation and session.next is None:
            # Only control traffic gets here, so the frame path pays nothing for this check.
            peer.awaiting_confirmation = False
            return KeysConfirmed(peer)
        if kind == _KEEPALIVE:
            return None
        return ControlMessage(peer, bytes(plaintext), source, relayed_from is not None)

    def _maybe_peer_lost_keys(self, node_id: int | None, now: float) -> None:
        """Undecryptable traffic from a peer (by its address, or its relay envelope): it probably restarted.

        Waiting for our keys to expire would cut the peer off for minutes;
        a new handshake (rate-limited, since the hint is unauthenticated)
        heals it in one round trip.
        """
        if node_id is None or not self._unknown_index_hints.take(node_id, now):
            return
        peer = self.peers.peer(node_id, now)  # an idle member (we restarted, or forgot it): traffic starts
        if peer is not None:
            self.send.renew_session(peer, now)

    def _initiation(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> Note | None:
        rate_key = source[0] if relayed_from is None else ("relay", relayed_from.node_id)
        try:
            result = self.sessions.handle_initiation(data, now, rate_key, address=source if relayed_from is None else rate_key)
        except HandshakeRefused as refused:
            self.drops[refused.reason] += 1
            if refused.cookie_reply is not None:
                if relayed_from is None:
                    self.transmit.send_datagram(refused.cookie_reply, source)
                else:
                    self.send.send_relayed(relayed_from, refused.cookie_reply)
            return None
        except (SessionError, ParseError):
            self.drops["initiation_rejected"] += 1
            return None
        peer = self.peers.peer_by_static(result.session.remote_static, now)  # an idle member's: traffic starts
        if peer is None or (relayed_from is not None and relayed_from is not peer):
            self.drops["relayed_handshake_mismatch"] += 1
            return None
        peer.session = result.session
        peer.last_rx_s = now
        assert result.response is not None
        # Answer on the path the initiation came by.
        self._heard(peer, source, relayed_from is not None, now)
        if relayed_from is None:
            self.transmit.send_datagram(result.response, source)
        else:
            self.send.send_relayed(peer, result.response)
        return HandshakeAnswered(peer, relayed_from is not None)

    def _response(self, data: memoryview, source: Endpoint, now: float, relayed_from: Peer | None) -> Note | None:
        try:
            result = self.sessions.handle_response(data, now)
        except HandshakeRefused as refused:
            self.drops[refused.reason] += 1
            return None
        except (SessionError, ParseError):
            self.drops["response_rejected"] += 1
            return None
        peer = self.peers.by_static.get(result.session.remote_static)
        if peer is None or (relayed_from is not None and relayed_from is not peer):
            self.drops["response_from_unknown_peer"] += 1
            return None
        peer.session = result.session
        peer.last_rx_s = now
        # A handshake round trip proves the path it took.
        return HandshakeCompleted(peer, None if relayed_from is not None else source)
