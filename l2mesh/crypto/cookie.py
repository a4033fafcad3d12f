"""Cheap screening of handshake initiations (mac1, mac2, cookie replies), after WireGuard's cookie MACs; sans-IO.

Every handshake packet ends in mac1 and mac2 (l2mesh/wire/packets.py).
mac1 is keyed by HASH("mac1----" || the receiver's static public key): a
responder checks it with one keyed BLAKE2s before any Diffie-Hellman, so
whoever does not know its public key gets no work done. A party that does
know the key can still make it do a DH per initiation; so while the
responder is under load (more than UNDER_LOAD_INITIATIONS_PER_S initiations
with a good mac1 in the last second) it also wants mac2, keyed by a cookie:
MAC(secret, the source address), the secret renewed every
COOKIE_SECRET_LIFETIME_S. An initiation without a good mac2 is answered by
a CookieReply (the cookie encrypted to whoever knows the responder's key and
the initiation's mac1, nothing else); the initiator's next retry carries
mac2 and gets through. A flood from spoofed addresses never receives its
cookies, and one from a real address meets the per-source rate limit.

HASH is BLAKE2s-256 and MAC keyed BLAKE2s-128 (hashlib), the cookie AEAD
XChaCha20-Poly1305 (libsodium, through pynacl). The caller passes `now`
(monotonic seconds).
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import os
from collections.abc import Callable, Hashable

import nacl.bindings
import nacl.exceptions
from nacl._sodium import ffi, lib

from l2mesh.wire.errors import parse_exact
from l2mesh.wire.packets import AEAD_TAG_BYTES, COOKIE_BYTES, COOKIE_REPLY_HEADER, MAC_BYTES, XNONCE_BYTES, CookieReply, PacketType

MAC1_LABEL = b"mac1----"
COOKIE_LABEL = b"cookie--"
# How long the responder uses one cookie secret, and an initiator one cookie (as WireGuard's).
COOKIE_SECRET_LIFETIME_S = 120.0
COOKIE_LIFETIME_S = 120.0
# One initiation costs a responder ~550 us of DH and hashing on the 2-core
# test machine (SessionTable.handle_initiation; a mac1 check ~1.4 us, a
# cookie reply ~10 us: benchmarks/README.md, flood.py). 200 a second is then
# ~11% of a core, more than steady re-keying needs (10,000 members re-keying
# with a controller every 2 minutes: 83/s); past that, require cookies. A
# burst past it (a controller's restart) costs real peers one cookie round
# trip: their next retry, 0.5 s later, carries mac2.
UNDER_LOAD_INITIATIONS_PER_S = 200
# Stay under load this long after the rate drops (WireGuard: 1 s), so a flood
# does not flip the responder in and out of load between its bursts.
UNDER_LOAD_WINDOW_S = 1.0
ZERO_MAC = bytes(MAC_BYTES)


def _hash(label: bytes, static_public: bytes) -> bytes:
    return hashlib.blake2s(label + static_public).digest()


def _mac(key: bytes, data: bytes | memoryview) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=MAC_BYTES).digest()


def _seal_cookie(key: bytes, nonce: bytes, cookie: bytes, mac1: bytes) -> bytes:
    """XChaCha20-Poly1305 straight through libsodium: pynacl's checked wrapper costs more than the cipher."""
    out = ffi.new("unsigned char[]", COOKIE_BYTES + AEAD_TAG_BYTES)
    lib.crypto_aead_xchacha20poly1305_ietf_encrypt(out, ffi.NULL, cookie, COOKIE_BYTES, mac1, MAC_BYTES, ffi.NULL, nonce, key)
    return bytes(ffi.buffer(out))


def address_bytes(address: Hashable) -> bytes:
    """What a cookie is bound to: an (ip, port) source as its packed bytes, anything else (a relay's key) by repr."""
    if address.__class__ is tuple and len(address) == 2:  # type: ignore[arg-type]
        host, port = address  # type: ignore[misc]
        if host.__class__ is str and port.__class__ is int and 0 <= port < 65536:
            try:
                # IPv4 by hand: ipaddress costs more than the cookie reply itself (a flood's hot path).
                packed = bytes(map(int, host.split("."))) if host.count(".") == 3 else ipaddress.ip_address(host).packed
                return packed + port.to_bytes(2, "big")
            except ValueError:
                pass
    return repr(address).encode()


class Screen(enum.Enum):
    """What a responder does with a handshake packet before any DH."""

    PASS = enum.auto()
    BAD_MAC1 = enum.auto()
    NEEDS_COOKIE = enum.auto()  # under load, and no good mac2: answer with cookie_reply()


class CookieChecker:
    """The responder's side: checks mac1 (always) and mac2 (under load); makes cookie replies."""

    def __init__(
        self,
        static_public: bytes,
        random_bytes: Callable[[int], bytes] = os.urandom,
        under_load_initiations_per_s: float = UNDER_LOAD_INITIATIONS_PER_S,
    ) -> None:
        self._load_threshold = under_load_initiations_per_s * UNDER_LOAD_WINDOW_S
        self._mac1_key = _hash(MAC1_LABEL, static_public)
        self._cookie_key = _hash(COOKIE_LABEL, static_public)
        self._random_bytes = random_bytes
        self._secret = random_bytes(32)
        self._secret_made_s: float | None = None
        self._last_cookie: tuple[Hashable, bytes] = (None, b"")
        # Initiations with a good mac1 in the current window and the one before it.
        self._window_start_s = -1e18
        self._window_count = 0
        self._previous_count = 0

    def mac1_ok(self, packet: bytes | memoryview) -> bool:
        """mac1 (the 32 bytes before the end: mac1, mac2) matches our key; one keyed hash, no DH."""
        end = len(packet) - 2 * MAC_BYTES
        return end > 0 and _mac(self._mac1_key, packet[:end]) == bytes(packet[end : end + MAC_BYTES])

    def screen(self, packet: bytes | memoryview, now: float, address: Hashable) -> Screen:
        """Check an initiation from address: mac1, and mac2 when under load."""
        if not self.mac1_ok(packet):
            return Screen.BAD_MAC1
        if not self._count_and_check_load(now):
            return Screen.PASS
        end = len(packet) - MAC_BYTES
        if _mac(self._cookie(now, address), packet[:end]) == bytes(packet[end:]):
            return Screen.PASS
        return Screen.NEEDS_COOKIE

    def under_load(self, now: float) -> bool:
        self._roll_window(now)
        return self._loaded()

    def cookie_reply(self, packet: bytes | memoryview, now: float, address: Hashable) -> bytes:
        """A CookieReply to an initiation (mac1 already checked) from address."""
        end = len(packet) - 2 * MAC_BYTES
        nonce = self._random_bytes(XNONCE_BYTES)
        encrypted = _seal_cookie(self._cookie_key, nonce, self._cookie(now, address), bytes(packet[end : end + MAC_BYTES]))
        # CookieReply's layout, packed by hand: construct costs more than the rest of the reply (a flood's hot path).
        return COOKIE_REPLY_HEADER.pack(PacketType.COOKIE_REPLY, int.from_bytes(packet[4:8], "little")) + nonce + encrypted

    def _count_and_check_load(self, now: float) -> bool:
        self._roll_window(now)
        self._window_count += 1
        return self._loaded()

    def _loaded(self) -> bool:
        return max(self._window_count, self._previous_count) > self._load_threshold

    def _roll_window(self, now: float) -> None:
        elapsed_s = now - self._window_start_s
        if elapsed_s < UNDER_LOAD_WINDOW_S:
            return
        self._previous_count = self._window_count if elapsed_s < 2 * UNDER_LOAD_WINDOW_S else 0
        self._window_count = 0
        self._window_start_s = now

    def _cookie(self, now: float, address: Hashable) -> bytes:
        if self._secret_made_s is None or now - self._secret_made_s >= COOKIE_SECRET_LIFETIME_S:
            if self._secret_made_s is not None:
                self._secret = self._random_bytes(32)
            self._secret_made_s = now
            self._last_cookie = (None, b"")
        # screen() then cookie_reply() ask for the same address's cookie: compute it once.
        last_address, cookie = self._last_cookie
        if address != last_address:
            cookie = _mac(self._secret, address_bytes(address))
            self._last_cookie = (address, cookie)
        return cookie


class CookieGenerator:
    """The sender's side towards one remote static key: appends mac1/mac2, takes the cookies it is given."""

    __slots__ = ("_mac1_key", "_cookie_key", "_cookie", "_cookie_set_s")

    def __init__(self, remote_static: bytes) -> None:
        self._mac1_key = _hash(MAC1_LABEL, remote_static)
        self._cookie_key = _hash(COOKIE_LABEL, remote_static)
        self._cookie: bytes | None = None
        self._cookie_set_s = 0.0

    def add_macs(self, body: bytes, now: float) -> bytes:
        """body (a handshake packet up to its macs) with mac1 and mac2 appended; mac2 zeros without a fresh cookie."""
        with_mac1 = body + _mac(self._mac1_key, body)
        if self._cookie is None or now - self._cookie_set_s >= COOKIE_LIFETIME_S:
            self._cookie = None
            return with_mac1 + ZERO_MAC
        return with_mac1 + _mac(self._cookie, with_mac1)

    def take_reply(self, reply: bytes | memoryview, sent_mac1: bytes, now: float) -> bool:
        """Store the cookie of a CookieReply to the initiation that carried sent_mac1; False when it does not open.

        ParseError when the reply is malformed.
        """
        packet = parse_exact(CookieReply, reply)
        try:
            cookie = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                packet.encrypted_cookie, sent_mac1, packet.nonce, self._cookie_key
            )
        except nacl.exceptions.CryptoError:
            return False
        if len(cookie) != COOKIE_BYTES:
            return False
        self._cookie, self._cookie_set_s = cookie, now
        return True


def mac1_of(packet: bytes) -> bytes:
    """The mac1 a handshake packet carries (what a cookie reply to it must be bound to)."""
    return packet[-2 * MAC_BYTES : -MAC_BYTES]


__all__ = [
    "COOKIE_LIFETIME_S",
    "COOKIE_SECRET_LIFETIME_S",
    "UNDER_LOAD_INITIATIONS_PER_S",
    "CookieChecker",
    "CookieGenerator",
    "Screen",
    "address_bytes",
    "mac1_of",
]
