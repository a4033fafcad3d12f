"""ChaCha20-Poly1305 (IETF) for the per-frame path: libsodium through cffi, no per-call allocation.

pynacl's high-level call allocates the output and copies inputs on every
frame; here keys live in C buffers made once per session and output goes to
one scratch buffer per direction. Results are memoryviews into that scratch:
valid until the next seal (or open) on this process, so the caller sends or
writes them at once, or copies them before it awaits anything.
"""

from __future__ import annotations

import struct

from nacl._sodium import ffi, lib

KEY_BYTES = 32
TAG_BYTES = 16
# Largest sealed message: a 64 KiB super-frame plus headers fits with room.
MAX_MESSAGE_BYTES = 65536 + 256

_NONCE_PREFIX = b"\0\0\0\0"
_pack_nonce = struct.Struct("<4xQ").pack_into


class AeadError(Exception):
    """Authentication failed or the message is malformed."""


class TransportKey:
    """One direction's key, held in C memory so each call passes a pointer."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("transport key must be 32 bytes")
        self._key = ffi.new("unsigned char[]", key)


class AeadScratch:
    """Preallocated output buffers; one per process is enough (the event loop is single-threaded)."""

    def __init__(self, size_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.seal_buffer = bytearray(size_bytes)
        self.open_buffer = bytearray(size_bytes)
        self._seal_c = ffi.from_buffer(self.seal_buffer)
        self._open_c = ffi.from_buffer(self.open_buffer)
        self._nonce = bytearray(12)
        self._nonce_c = ffi.from_buffer(self._nonce)
        self._length = ffi.new("unsigned long long *")
        self._size = size_bytes

    def seal(self, key: TransportKey, counter: int, header: bytes, plaintext: bytes | memoryview) -> memoryview:
        """header || ChaCha20-Poly1305(plaintext) in the seal buffer, nonce = counter (no associated data)."""
        header_len = len(header)
        if header_len + len(plaintext) + TAG_BYTES > self._size:
            raise AeadError("message too large")
        self.seal_buffer[:header_len] = header
        _pack_nonce(self._nonce, 0, counter)
        lib.crypto_aead_chacha20poly1305_ietf_encrypt(
            self._seal_c + header_len,
            self._length,
            ffi.from_buffer(plaintext),
            len(plaintext),
            ffi.NULL,
            0,
            ffi.NULL,
            self._nonce_c,
            key._key,
        )
        return memoryview(self.seal_buffer)[: header_len + self._length[0]]

    def open(self, key: TransportKey, counter: int, ciphertext: bytes | memoryview) -> memoryview:
        """The plaintext in the open buffer; AeadError if the tag does not verify."""
        length = len(ciphertext)
        if length < TAG_BYTES or length > self._size:
            raise AeadError("ciphertext length out of range")
        _pack_nonce(self._nonce, 0, counter)
        rc = lib.crypto_aead_chacha20poly1305_ietf_decrypt(
            self._open_c,
            self._length,
            ffi.NULL,
            ffi.from_buffer(ciphertext),
            length,
            ffi.NULL,
            0,
            self._nonce_c,
            key._key,
        )
        if rc != 0:
            raise AeadError("authentication failed")
        return memoryview(self.open_buffer)[: self._length[0]]
