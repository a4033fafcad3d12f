"""Noise IK sessions between two static keys, sans-IO: bytes and the current time in, bytes and state out.

A SessionTable belongs to one node. It allocates receiver indexes, answers
handshake initiations from allowed static keys, opens transport packets and
expires idle sessions. A Session is the state shared with one remote static
key: the keypair in use, the one before it (for packets in flight across a
re-key) and an unconfirmed responder keypair. Nothing here touches a socket
or reads a clock; the caller passes `now` (monotonic seconds).
"""

from __future__ import annotations

import copy
import enum
import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from l2mesh.crypto.aead import AeadError, AeadScratch, TransportKey
from l2mesh.crypto.cookie import CookieChecker, CookieGenerator, Screen, mac1_of
from l2mesh.crypto.noise import HandshakeState, NoiseError, public_key
from l2mesh.crypto.replay import ReplayWindow
from l2mesh.crypto.timers import DEFAULT_LIMITS, SessionLimits
from l2mesh.ratelimit import KeyedRateLimiter, TokenBucket
from l2mesh.wire.errors import ParseError, parse_exact
from l2mesh.wire.packets import (
    TRANSPORT_HEADER,
    TRANSPORT_HEADER_BYTES,
    HANDSHAKE_INIT_BYTES,
    HANDSHAKE_RESPONSE_BYTES,
    MAC_BYTES,
    PROTOCOL_VERSION,
    CookieReply,
    HandshakeInit,
    HandshakeResponse,
    PacketType,
)

PROTOCOL_NAME = "Noise_IK_25519_ChaChaPoly_BLAKE2b"
# Binds the handshake to the protocol version: peers of different versions never share keys.
PROLOGUE = b"l2mesh v%d" % PROTOCOL_VERSION
_NO_MACS = {"mac1": bytes(MAC_BYTES), "mac2": bytes(MAC_BYTES)}
_TAI64_EPOCH = 2**62
_TRANSPORT = PacketType.TRANSPORT
_pack_header = TRANSPORT_HEADER.pack
_unpack_header = TRANSPORT_HEADER.unpack_from


class SessionError(Exception):
    """A handshake or transport packet was refused (the reason is the message); count it and drop it."""


class HandshakeRefused(SessionError):
    """A handshake packet turned away before any DH; reason is the drop counter's name.

    cookie_reply, when set, goes back to the initiation's source (by the path it came).
    """

    def __init__(self, reason: str, cookie_reply: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cookie_reply = cookie_reply


class SessionAction(enum.Flag):
    NONE = 0
    SEND_INITIATION = enum.auto()
    SEND_KEEPALIVE = enum.auto()
    HANDSHAKE_FAILED = enum.auto()
    EXPIRED = enum.auto()


def tai64n(wall_time_ns: int) -> bytes:
    seconds, nanoseconds = divmod(wall_time_ns, 1_000_000_000)
    return struct.pack(">QI", _TAI64_EPOCH + seconds, nanoseconds)


class Keypair:
    """Transport keys of one completed handshake, both directions."""

    __slots__ = (
        "session",
        "send_key",
        "receive_key",
        "local_index",
        "remote_index",
        "created_s",
        "initiator",
        "send_counter",
        "replay",
    )

    def __init__(
        self,
        session: "Session",
        send_key: bytes,
        receive_key: bytes,
        local_index: int,
        remote_index: int,
        created_s: float,
        initiator: bool,
    ) -> None:
        self.session = session
        self.send_key = TransportKey(send_key)
        self.receive_key = TransportKey(receive_key)
        self.local_index = local_index
        self.remote_index = remote_index
        self.created_s = created_s
        self.initiator = initiator
        self.send_counter = 0
        self.replay = ReplayWindow()


@dataclass
class PendingHandshake:
    noise: HandshakeState
    local_index: int
    first_sent_s: float
    next_retry_s: float
    retry_interval_s: float
    # The initiation's mac1: a cookie reply must be bound to it, and is taken once.
    mac1: bytes = b""


class Session:
    """Everything shared with one remote static key."""

    def __init__(self, table: "SessionTable", remote_static: bytes, key: Hashable = None) -> None:
        self.table = table
        self.remote_static = remote_static
        # Where the table files it: the static key, or (static key, endpoint) for a server that keeps one
        # session per address (several controller instances share one identity, see SessionTable).
        self.key: Hashable = remote_static if key is None else key
        self.current: Keypair | None = None
        self.previous: Keypair | None = None
        self.next: Keypair | None = None  # responder side, until the initiator's first packet confirms it
        self.pending: PendingHandshake | None = None
        self.latest_timestamp = b""
        self.last_sent_s = -1e18
        self.last_received_s = -1e18
        # Set by the caller for messages that are not keepalives: only those are
        # answered with a keepalive, or two idle peers would ping-pong forever.
        self.last_data_received_s = -1e18
        self.last_handshake_s: float | None = None
        self.established_count = 0
        self.cookies = CookieGenerator(remote_static)

    # -- sending -------------------------------------------------------
    def seal(self, plaintext: bytes | memoryview, now: float) -> memoryview | None:
        """A transport packet for plaintext (a view into shared scratch: send it now), or None when no usable keys."""
        keypair = self.current
        if keypair is None:
            return None
        counter = keypair.send_counter
        limits = self.table.limits
        if counter >= limits.reject_after_messages or now - keypair.created_s >= limits.reject_after_time_s:
            return None
        keypair.send_counter = counter + 1
        self.last_sent_s = now
        return self.table.scratch.seal(
            keypair.send_key, counter, _pack_header(_TRANSPORT, keypair.remote_index, counter), plaintext
        )

    @property
    def established(self) -> bool:
        return self.current is not None

    @property
    def spent(self) -> bool:
        """No keys left that could seal or open a packet, and no handshake under way."""
        return self.current is None and self.previous is None and self.next is None and self.pending is None

    def create_initiation(self, now: float) -> bytes:
        """A HandshakeInit packet; starts (or restarts) a handshake with a fresh ephemeral and index."""
        table = self.table
        if self.pending is not None:
            table._release_index(self.pending.local_index)
            first_sent_s = self.pending.first_sent_s
            retry_s = min(self.pending.retry_interval_s * 2, table.limits.handshake_retry_max_s)
        else:
            first_sent_s = now
            retry_s = table.limits.handshake_retry_initial_s
        noise = HandshakeState(
            PROTOCOL_NAME, True, PROLOGUE, static_private=table.static_private, remote_static=self.remote_static
        )
        local_index = table._allocate_index(self)
        message = noise.write_message(tai64n(table.wall_clock_ns()))
        body = HandshakeInit.build(
            {
                "sender_index": local_index,
                "ephemeral": message[:32],
                "encrypted_static": message[32:80],
                "encrypted_timestamp": message[80:],
                **_NO_MACS,
            }
        )[: -2 * MAC_BYTES]
        packet = self.cookies.add_macs(body, now)
        self.pending = PendingHandshake(noise, local_index, first_sent_s, now + retry_s, retry_s, mac1_of(packet))
        table.handshakes["initiated"] += 1
        return packet

    # -- timers ---------------------------------------------------------
    def poll(self, now: float) -> SessionAction:
        """What the caller should do now for this session (retransmit, re-key, keepalive) or that it expired."""
        limits = self.table.limits
        action = SessionAction.NONE
        for name in ("previous", "next", "current"):
            keypair = getattr(self, name)
            if keypair is not None and now - keypair.created_s >= limits.reject_after_time_s:
                self.table._drop_keypair(keypair)
                setattr(self, name, None)
        last_activity_s = max(self.last_sent_s, self.last_received_s)
        if self.pending is None and now - last_activity_s >= limits.idle_expiry_s:
            return SessionAction.EXPIRED
        if self.pending is not None:
            if now - self.pending.first_sent_s >= limits.handshake_give_up_s:
                self.table._release_index(self.pending.local_index)
                self.pending = None
                self.table.handshakes["failed"] += 1
                action |= SessionAction.HANDSHAKE_FAILED
            elif now >= self.pending.next_retry_s:
                action |= SessionAction.SEND_INITIATION
        elif self._wants_rekey(now):
            action |= SessionAction.SEND_INITIATION
        if (
            self.current is not None
            and self.last_data_received_s > self.last_sent_s
            and now - self.last_sent_s >= limits.keepalive_after_s
        ):
            action |= SessionAction.SEND_KEEPALIVE
        return action

    def _wants_rekey(self, now: float) -> bool:
        keypair = self.current
        limits = self.table.limits
        if keypair is None:
            return False
        if self.last_sent_s - self.last_received_s >= limits.new_handshake_after_silence_s:
            return True
        if keypair.send_counter >= limits.rekey_after_messages:
            return True
        rekey_at_s = limits.rekey_after_time_s + (0.0 if keypair.initiator else limits.responder_rekey_delay_s)
        # Only re-key sessions in use; an idle one simply expires.
        recently_used = now - max(self.last_sent_s, self.last_received_s) < limits.rekey_after_time_s
        return now - keypair.created_s >= rekey_at_s and recently_used

    # -- keypair rotation ------------------------------------------------
    def _install(self, keypair: Keypair, now: float) -> None:
        if self.previous is not None:
            self.table._drop_keypair(self.previous)
        self.previous = self.current
        self.current = keypair
        self.last_handshake_s = now
        self.established_count += 1

    def _install_unconfirmed(self, keypair: Keypair) -> None:
        if self.next is not None:
            self.table._drop_keypair(self.next)
        self.next = keypair

    def wipe(self) -> None:
        for keypair in (self.previous, self.current, self.next):
            if keypair is not None:
                self.table._drop_keypair(keypair)
        self.previous = self.current = self.next = None
        if self.pending is not None:
            self.table._release_index(self.pending.local_index)
            self.pending = None


@dataclass
class HandshakeResult:
    """A handshake step that succeeded: the session, and the response to send back (responder only)."""

    session: Session
    response: bytes | None = None


class SessionTable:
    def __init__(
        self,
        static_private: bytes,
        is_allowed: Callable[[bytes], bool] = lambda remote_static: True,
        limits: SessionLimits = DEFAULT_LIMITS,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.static_private = static_private
        self.static_public = public_key(static_private)
        self.is_allowed = is_allowed
        self.limits = limits
        self.wall_clock_ns = wall_clock_ns
        self.scratch = AeadScratch()
        self.cookies = CookieChecker(self.static_public)
        self.sessions: dict[Hashable, Session] = {}  # by Session.key
        # Handshakes by event, for metrics: initiated (each initiation sent, retries too), completed (ours
        # answered), answered (a peer's accepted), failed (given up after handshake_give_up_s).
        self.handshakes: Counter[str] = Counter()
        self._by_index: dict[int, Keypair | Session] = {}
        self._per_source = KeyedRateLimiter(limits.handshake_rate_per_source_per_s, limits.handshake_burst_per_source)
        self._total = TokenBucket(limits.handshake_rate_total_per_s, limits.handshake_rate_total_per_s)
        self._cookie_replies_per_source = KeyedRateLimiter(
            limits.cookie_replies_per_source_per_s, limits.cookie_reply_burst_per_source
        )
        self._cookie_replies_total = TokenBucket(limits.cookie_replies_total_per_s, limits.cookie_replies_total_per_s)

    def session_for(self, remote_static: bytes, endpoint: Hashable = None) -> Session:
        """The session with remote_static (at endpoint, when sessions are kept per address)."""
        key: Hashable = remote_static if endpoint is None else (remote_static, endpoint)
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = Session(self, remote_static, key)
        return session

    def remove(self, key: Hashable) -> None:
        """Forget a session by its key (Session.key: the static key unless kept per address)."""
        session = self.sessions.pop(key, None)
        if session is not None:
            session.wipe()

    # -- indexes ---------------------------------------------------------
    def _allocate_index(self, owner: Keypair | Session) -> int:
        while True:
            index = int.from_bytes(os.urandom(4), "little")
            if index not in self._by_index:
                self._by_index[index] = owner
                return index

    def _release_index(self, index: int) -> None:
        self._by_index.pop(index, None)

    def _drop_keypair(self, keypair: Keypair) -> None:
        if self._by_index.get(keypair.local_index) is keypair:
            del self._by_index[keypair.local_index]

    # -- receiving -------------------------------------------------------
    def handle_initiation(
        self,
        data: bytes | memoryview,
        now: float,
        source: Hashable = None,
        endpoint: Hashable = None,
        address: Hashable = None,
    ) -> HandshakeResult:
        """source: the rate-limit key; address: what a cookie is bound to (the full source endpoint; None: source).

        endpoint: keep the session apart from the same key's sessions at other
        addresses (None: one per key). A root keeps one per address, because
        controller instances sharing one identity register from several: one
        shared session would flip between them.

        HandshakeRefused (before any DH) for a bad length or mac1, for no good
        mac2 under load (with the cookie reply to send), or past the rate limits.
        """
        if len(data) != HANDSHAKE_INIT_BYTES:
            raise HandshakeRefused("handshake_malformed")
        screen = self.cookies.screen(data, now, source if address is None else address)
        if screen is Screen.BAD_MAC1:
            raise HandshakeRefused("handshake_bad_mac1")
        if screen is Screen.NEEDS_COOKIE:
            if not self._cookie_replies_per_source.take(source, now) or not self._cookie_replies_total.take(now):
                raise HandshakeRefused("handshake_cookie_rate_limited")
            raise HandshakeRefused("handshake_cookie_sent", self.cookies.cookie_reply(data, now, source if address is None else address))
        if not self._per_source.take(source, now) or not self._total.take(now):
            raise HandshakeRefused("handshake_rate_limited")
        packet = parse_exact(HandshakeInit, data)
        noise = HandshakeState(PROTOCOL_NAME, False, PROLOGUE, static_private=self.static_private)
        try:
            timestamp = noise.read_message(packet.ephemeral + packet.encrypted_static + packet.encrypted_timestamp)
        except NoiseError as exc:
            raise SessionError(f"handshake initiation: {exc}") from None
        remote_static = noise.remote_static
        assert remote_static is not None
        if not self.is_allowed(remote_static):
            raise SessionError("handshake from a static key that is not allowed")
        session = self.session_for(remote_static, endpoint)
        # TAI64N timestamps only grow: an older or repeated one is a replayed initiation.
        if timestamp <= session.latest_timestamp:
            raise SessionError("replayed handshake initiation")
        session.latest_timestamp = timestamp
        local_index = self._allocate_index(session)
        message = noise.write_message(b"")
        send, receive = noise.split()
        assert send.key is not None and receive.key is not None
        keypair = Keypair(session, send.key, receive.key, local_index, packet.sender_index, now, False)
        self._by_index[local_index] = keypair
        session._install_unconfirmed(keypair)
        session.last_received_s = now
        self.handshakes["answered"] += 1
        body = HandshakeResponse.build(
            {
                "sender_index": local_index,
                "receiver_index": packet.sender_index,
                "ephemeral": message[:32],
                "encrypted_empty": message[32:],
                **_NO_MACS,
            }
        )[: -2 * MAC_BYTES]
        return HandshakeResult(session, session.cookies.add_macs(body, now))

    def handle_response(self, data: bytes | memoryview, now: float) -> HandshakeResult:
        """Completes a handshake we started. HandshakeRefused (before any DH) for a bad length or mac1."""
        if len(data) != HANDSHAKE_RESPONSE_BYTES:
            raise HandshakeRefused("handshake_malformed")
        if not self.cookies.mac1_ok(data):
            raise HandshakeRefused("handshake_bad_mac1")
        packet = parse_exact(HandshakeResponse, data)
        owner = self._by_index.get(packet.receiver_index)
        pending = owner.pending if isinstance(owner, Session) else None
        if pending is None or pending.local_index != packet.receiver_index:
            raise SessionError("handshake response for no pending handshake")
        session = owner
        assert isinstance(session, Session)
        # Work on a copy: a forged response must not spoil the state the genuine one needs.
        noise = copy.deepcopy(pending.noise)
        try:
            noise.read_message(packet.ephemeral + packet.encrypted_empty)
        except NoiseError as exc:
            raise SessionError(f"handshake response: {exc}") from None
        send, receive = noise.split()
        assert send.key is not None and receive.key is not None
        local_index = pending.local_index
        session.pending = None
        keypair = Keypair(session, send.key, receive.key, local_index, packet.sender_index, now, True)
        self._by_index[local_index] = keypair
        session._install(keypair, now)
        session.last_received_s = now
        self.handshakes["completed"] += 1
        return HandshakeResult(session)

    def handle_cookie_reply(self, data: bytes | memoryview, now: float) -> Session:
        """Take the cookie a responder under load sent for our pending initiation; its next retry carries mac2.

        SessionError (or ParseError) for a reply to no pending handshake, a
        second reply to the same initiation, or one that does not open.
        """
        packet = parse_exact(CookieReply, data)
        owner = self._by_index.get(packet.receiver_index)
        pending = owner.pending if isinstance(owner, Session) else None
        if pending is None or pending.local_index != packet.receiver_index or not pending.mac1:
            raise SessionError("cookie reply for no pending handshake")
        assert isinstance(owner, Session)
        if not owner.cookies.take_reply(data, pending.mac1, now):
            raise SessionError("cookie reply does not open")
        pending.mac1 = b""  # one reply per initiation: a replayed one cannot reset the cookie
        return owner

    def open(self, data: memoryview, now: float) -> tuple[Session, memoryview]:
        """Decrypt a transport packet: (session, plaintext view into shared scratch)."""
        if len(data) < TRANSPORT_HEADER_BYTES + 16:
            raise SessionError("transport packet too short")
        _, receiver_index, counter = _unpack_header(data)
        keypair = self._by_index.get(receiver_index)
        if keypair is None or keypair.__class__ is not Keypair:
            raise SessionError("unknown receiver index")
        limits = self.limits
        if counter >= limits.reject_after_messages or now - keypair.created_s >= limits.reject_after_time_s:
            raise SessionError("expired keypair")
        if not keypair.replay.may_accept(counter):
            raise SessionError("replayed or too old counter")
        try:
            plaintext = self.scratch.open(keypair.receive_key, counter, data[TRANSPORT_HEADER_BYTES:])
        except AeadError:
            raise SessionError("transport authentication failed") from None
        keypair.replay.mark(counter)
        session = keypair.session
        session.last_received_s = now
        if keypair is session.next:
            # The initiator used the new keys: they are confirmed, switch to them.
            session.next = None
            session._install(keypair, now)
        return session, plaintext

    def poll(self, now: float) -> list[tuple[Session, SessionAction]]:
        """Timer work for every session; expired ones are removed here and reported."""
        out = []
        for key, session in list(self.sessions.items()):
            action = session.poll(now)
            if action & SessionAction.EXPIRED:
                self.remove(key)
            if action:
                out.append((session, action))
        return out


__all__ = [
    "HandshakeRefused",
    "HandshakeResult",
    "Keypair",
    "ParseError",
    "Session",
    "SessionAction",
    "SessionError",
    "SessionTable",
]
