"""Noise protocol framework handshakes for the 25519 / ChaChaPoly / BLAKE2b suite (revision 34).

A sans-IO HandshakeState: write_message() and read_message() move bytes,
split() hands back the two transport CipherStates. l2mesh uses the IK
pattern; the other fundamental patterns and psk modifiers are here too so
every published test vector of the suite can check this code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions

DH_LEN = 32
HASH_LEN = 64
KEY_LEN = 32
TAG_LEN = 16
MAX_NONCE = 2**64 - 1

# Pre-message keys and message patterns of the interactive and one-way
# patterns (Noise spec sections 7.4 and 7.5). "->" is initiator to responder.
_PATTERNS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], tuple[tuple[str, ...], ...]]] = {
    "N": (((), ("s",)), (("e", "es"),)),
    "K": ((("s",), ("s",)), (("e", "es", "ss"),)),
    "X": (((), ("s",)), (("e", "es", "s", "ss"),)),
    "NN": (((), ()), (("e",), ("e", "ee"))),
    "NK": (((), ("s",)), (("e", "es"), ("e", "ee"))),
    "NX": (((), ()), (("e",), ("e", "ee", "s", "es"))),
    "XN": (((), ()), (("e",), ("e", "ee"), ("s", "se"))),
    "XK": (((), ("s",)), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "XX": (((), ()), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "KN": ((("s",), ()), (("e",), ("e", "ee", "se"))),
    "KK": ((("s",), ("s",)), (("e", "es", "ss"), ("e", "ee", "se"))),
    "KX": ((("s",), ()), (("e",), ("e", "ee", "se", "s", "es"))),
    "IN": (((), ()), (("e", "s"), ("e", "ee", "se"))),
    "IK": (((), ("s",)), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IX": (((), ()), (("e", "s"), ("e", "ee", "se", "s", "es"))),
}
_NAME_RE = re.compile(r"Noise_([A-Z]+)((?:psk\d)(?:\+psk\d)*)?_25519_ChaChaPoly_BLAKE2b")


class NoiseError(Exception):
    """A handshake or transport message failed: bad length, bad tag, bad key, wrong state."""


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def hkdf(chaining_key: bytes, input_key_material: bytes, outputs: int) -> tuple[bytes, ...]:
    temp_key = _hmac(chaining_key, input_key_material)
    out1 = _hmac(temp_key, b"\x01")
    out2 = _hmac(temp_key, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp_key, out2 + b"\x03")


def dh(private_key: bytes, public_key: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_scalarmult(private_key, public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        # libsodium refuses low-order points (an all-zero shared secret).
        raise NoiseError("invalid Diffie-Hellman public key") from None


def public_key(private_key: bytes) -> bytes:
    return nacl.bindings.crypto_scalarmult_base(private_key)


def chacha_nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + struct.pack("<Q", counter)


def aead_encrypt(key: bytes, counter: int, ad: bytes, plaintext: bytes) -> bytes:
    return nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, chacha_nonce(counter), key)


def aead_decrypt(key: bytes, counter: int, ad: bytes, ciphertext: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad, chacha_nonce(counter), key)
    except nacl.exceptions.CryptoError:
        raise NoiseError("authentication failed") from None


@dataclass
class CipherState:
    key: bytes | None = None
    nonce: int = 0

    def has_key(self) -> bool:
        return self.key is not None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.key is None:
            return plaintext
        if self.nonce >= MAX_NONCE:
            raise NoiseError("nonce exhausted")
        out = aead_encrypt(self.key, self.nonce, ad, plaintext)
        self.nonce += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.key is None:
            return ciphertext
        if self.nonce >= MAX_NONCE:
            raise NoiseError("nonce exhausted")
        out = aead_decrypt(self.key, self.nonce, ad, ciphertext)
        self.nonce += 1
        return out


@dataclass
class SymmetricState:
    protocol_name: bytes
    chaining_key: bytes = b""
    handshake_hash: bytes = b""
    cipher: CipherState = field(default_factory=CipherState)

    def __post_init__(self) -> None:
        if len(self.protocol_name) <= HASH_LEN:
            self.handshake_hash = self.protocol_name.ljust(HASH_LEN, b"\0")
        else:
            self.handshake_hash = _hash(self.protocol_name)
        self.chaining_key = self.handshake_hash

    def mix_key(self, input_key_material: bytes) -> None:
        self.chaining_key, temp_key = hkdf(self.chaining_key, input_key_material, 2)
        self.cipher = CipherState(temp_key[:KEY_LEN])

    def mix_hash(self, data: bytes) -> None:
        self.handshake_hash = _hash(self.handshake_hash + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self.chaining_key, temp_hash, temp_key = hkdf(self.chaining_key, input_key_material, 3)
        self.mix_hash(temp_hash)
        self.cipher = CipherState(temp_key[:KEY_LEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.handshake_hash, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.handshake_hash, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        key1, key2 = hkdf(self.chaining_key, b"", 2)
        return CipherState(key1[:KEY_LEN]), CipherState(key2[:KEY_LEN])


def parse_protocol_name(name: str) -> tuple[str, dict[int, int]]:
    """Split "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b" into ("IK", {2: 0}): psk position -> psk index."""
    match = _NAME_RE.fullmatch(name)
    if not match or match.group(1) not in _PATTERNS:
        raise NoiseError(f"unsupported Noise protocol {name!r}")
    modifiers = match.group(2) or ""
    positions = [int(m) for m in re.findall(r"psk(\d)", modifiers)]
    return match.group(1), {pos: idx for idx, pos in enumerate(positions)}


class HandshakeState:
    """One side of a Noise handshake. Messages alternate, starting with the initiator."""

    def __init__(
        self,
        protocol_name: str,
        initiator: bool,
        prologue: bytes = b"",
        static_private: bytes | None = None,
        remote_static: bytes | None = None,
        ephemeral_private: bytes | None = None,
        psks: Sequence[bytes] = (),
    ) -> None:
        pattern, psk_positions = parse_protocol_name(protocol_name)
        (pre_initiator, pre_responder), messages = _PATTERNS[pattern]
        self._messages = [list(tokens) for tokens in messages]
        for position in psk_positions:
            if position == 0:
                self._messages[0].insert(0, "psk")
            else:
                self._messages[position - 1].append("psk")
        self._psks = list(psks)
        if len(self._psks) != len(psk_positions) or any(len(p) != KEY_LEN for p in self._psks):
            raise NoiseError("wrong number or size of pre-shared keys")
        self._psk_mode = bool(psk_positions)
        self._psk_index = 0
        self.initiator = initiator
        self.symmetric = SymmetricState(protocol_name.encode())
        self.s = static_private
        self.s_pub = public_key(static_private) if static_private is not None else None
        self.rs = remote_static
        self._fixed_e = ephemeral_private
        self.e: bytes | None = None
        self.e_pub: bytes | None = None
        self.re: bytes | None = None
        self._turn = 0
        self.symmetric.mix_hash(prologue)
        for side_is_initiator, keys in ((True, pre_initiator), (False, pre_responder)):
            for _ in keys:
                mine = side_is_initiator == initiator
                key = self.s_pub if mine else self.rs
                if key is None:
                    raise NoiseError("a pre-message static key is missing")
                self.symmetric.mix_hash(key)

    @property
    def finished(self) -> bool:
        return self._turn >= len(self._messages)

    @property
    def handshake_hash(self) -> bytes:
        return self.symmetric.handshake_hash

    @property
    def remote_static(self) -> bytes | None:
        return self.rs

    def _my_turn(self) -> bool:
        return (self._turn % 2 == 0) == self.initiator

    def _dh_for(self, token: str) -> bytes:
        # "es" is DH(initiator e, responder s); each side plugs in its own half.
        first, second = token[0], token[1]
        if not self.initiator:
            first, second = second, first
        local = self.e if first == "e" else self.s
        remote = self.re if second == "e" else self.rs
        if local is None or remote is None:
            raise NoiseError(f"missing key for {token}")
        return dh(local, remote)

    def write_message(self, payload: bytes = b"") -> bytes:
        if self.finished or not self._my_turn():
            raise NoiseError("not this side's turn to write")
        out = bytearray()
        for token in self._messages[self._turn]:
            if token == "e":
                self.e = self._fixed_e if self._fixed_e is not None else nacl.bindings.randombytes(DH_LEN)
                self.e_pub = public_key(self.e)
                out += self.e_pub
                self.symmetric.mix_hash(self.e_pub)
                if self._psk_mode:
                    self.symmetric.mix_key(self.e_pub)
            elif token == "s":
                if self.s_pub is None:
                    raise NoiseError("no static key to send")
                out += self.symmetric.encrypt_and_hash(self.s_pub)
            elif token == "psk":
                self.symmetric.mix_key_and_hash(self._psks[self._psk_index])
                self._psk_index += 1
            else:
                self.symmetric.mix_key(self._dh_for(token))
        out += self.symmetric.encrypt_and_hash(payload)
        self._turn += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        if self.finished or self._my_turn():
            raise NoiseError("not this side's turn to read")
        view = memoryview(message)
        for token in self._messages[self._turn]:
            if token == "e":
                if len(view) < DH_LEN:
                    raise NoiseError("handshake message too short")
                self.re = bytes(view[:DH_LEN])
                view = view[DH_LEN:]
                self.symmetric.mix_hash(self.re)
                if self._psk_mode:
                    self.symmetric.mix_key(self.re)
            elif token == "s":
                size = DH_LEN + (TAG_LEN if self.symmetric.cipher.has_key() else 0)
                if len(view) < size:
                    raise NoiseError("handshake message too short")
                self.rs = self.symmetric.decrypt_and_hash(bytes(view[:size]))
                view = view[size:]
            elif token == "psk":
                self.symmetric.mix_key_and_hash(self._psks[self._psk_index])
                self._psk_index += 1
            else:
                self.symmetric.mix_key(self._dh_for(token))
        if self.symmetric.cipher.has_key() and len(view) < TAG_LEN:
            raise NoiseError("handshake message too short")
        payload = self.symmetric.decrypt_and_hash(bytes(view))
        self._turn += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) cipher states for this side, once the handshake is finished."""
        if not self.finished:
            raise NoiseError("handshake not finished")
        first, second = self.symmetric.split()
        return (first, second) if self.initiator else (second, first)
