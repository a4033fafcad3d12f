"""ChaCha20-Poly1305 (IETF) for the per-frame path, without per-call allocation.

Two implementations of the same cipher, so nothing on the wire depends on
which one sealed a message:

* libsodium through pynacl's cffi binding, always loaded: an idle daemon
  (keepalives, netconf) pays nothing more for it;
* OpenSSL's, through pyca/cryptography, is 7x faster on a 64 KiB super-frame
  and 1.8x on a 64-byte frame on this kind of CPU (``benchmarks/micro.py``),
  but importing it costs about 7 MiB of RSS. A process switches to it for good
  once it is busy: a message of FAST_FROM_BYTES or more (a TCP super-frame)
  or more than BUSY_MESSAGES sealed and opened within one second.

Keys live in memory made once per session and output goes to one scratch
buffer per direction. Results are memoryviews into that scratch: valid until
the next seal (or open) on this process, so the caller sends or writes them at
once, or copies them before it awaits anything.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from nacl._sodium import ffi, lib

from l2mesh.buffers import untouched_buffer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_BYTES = 32
TAG_BYTES = 16
# Largest sealed message: a 64 KiB super-frame plus headers fits with room.
MAX_MESSAGE_BYTES = 65536 + 256
# What makes a process "busy" enough to be worth OpenSSL's 7 MiB.
FAST_FROM_BYTES = 16384
BUSY_MESSAGES = 4096

_pack_nonce = struct.Struct("<4xQ").pack_into


def _openssl_invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


class AeadError(Exception):
    """Authentication failed or the message is malformed."""


class TransportKey:
    """One direction's key: a C buffer for libsodium, and OpenSSL's cipher object once the process is busy."""

    __slots__ = ("_key", "_openssl")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("transport key must be 32 bytes")
        self._key = ffi.new("unsigned char[]", key)
        self._openssl: ChaCha20Poly1305 | None = None

    def openssl(self) -> ChaCha20Poly1305:
        if self._openssl is None:
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

            self._openssl = ChaCha20Poly1305(bytes(ffi.buffer(self._key, KEY_BYTES)))
        return self._openssl


class AeadScratch:
    """Preallocated output buffers; one per process is enough (the event loop is single-threaded)."""

    def __init__(self, size_bytes: int = MAX_MESSAGE_BYTES, openssl: bool | None = None) -> None:
        """openssl=None switches once busy; True or False pins one implementation (tests, benchmarks)."""
        # Pages become resident as messages reach them: an idle daemon's small packets touch one or two.
        self.seal_buffer = untouched_buffer(size_bytes)
        self.open_buffer = untouched_buffer(size_bytes)
        self._seal_view = memoryview(self.seal_buffer)
        self._open_view = memoryview(self.open_buffer)
        self._seal_c = ffi.from_buffer(self.seal_buffer)
        self._open_c = ffi.from_buffer(self.open_buffer)
        self._nonce = bytearray(12)
        self._nonce_c = ffi.from_buffer(self._nonce)
        self._length = ffi.new("unsigned long long *")
        self._size = size_bytes
        self.uses_openssl = bool(openssl)
        self._pinned = openssl is not None
        self._messages_left = BUSY_MESSAGES
        self._window_started = time.monotonic()

    def _count_message(self, length: int) -> None:
        """Switch to OpenSSL once this process is busy (see the module docstring)."""
        if length >= FAST_FROM_BYTES:
            self.uses_openssl = True
            return
        self._messages_left -= 1
        if self._messages_left <= 0:
            now = time.monotonic()
            self.uses_openssl = now - self._window_started < 1.0
            self._window_started = now
            self._messages_left = BUSY_MESSAGES

    def seal(self, key: TransportKey, counter: int, header: bytes, plaintext: bytes | memoryview) -> memoryview:
        """header || ChaCha20-Poly1305(plaintext) in the seal buffer, nonce = counter (no associated data)."""
        header_len = len(header)
        sealed_len = header_len + len(plaintext) + TAG_BYTES
        if sealed_len > self._size:
            raise AeadError("message too large")
        self.seal_buffer[:header_len] = header
        _pack_nonce(self._nonce, 0, counter)
        # Busy (the per-frame case that counts) first; the key's cipher object once made, without a call.
        if self.uses_openssl:
            (key._openssl or key.openssl()).encrypt_into(self._nonce, plaintext, None, self._seal_view[header_len:sealed_len])
            return self._seal_view[:sealed_len]
        if not self._pinned:
            self._count_message(sealed_len)  # this message goes through libsodium even if it makes the switch
        lib.crypto_aead_chacha20poly1305_ietf_encrypt(
            self._seal_c + header_len,
            self._length,
            # bytes go to C as they are: making a cdata for them costs 5-10 us when the process ran
            # cold (a lone frame after idle, measured after 50 ms asleep), next to ~30 for the cipher
            plaintext if plaintext.__class__ is bytes else ffi.from_buffer(plaintext),
            len(plaintext),
            ffi.NULL,
            0,
            ffi.NULL,
            self._nonce_c,
            key._key,
        )
        return self._seal_view[: header_len + self._length[0]]

    def open(self, key: TransportKey, counter: int, ciphertext: bytes | memoryview) -> memoryview:
        """The plaintext in the open buffer; AeadError if the tag does not verify."""
        length = len(ciphertext)
        if length < TAG_BYTES or length > self._size:
            raise AeadError("ciphertext length out of range")
        _pack_nonce(self._nonce, 0, counter)
        if self.uses_openssl:
            plaintext = self._open_view[: length - TAG_BYTES]
            try:
                (key._openssl or key.openssl()).decrypt_into(self._nonce, ciphertext, None, plaintext)
            except _openssl_invalid_tag():
                raise AeadError("authentication failed") from None
            return plaintext
        if not self._pinned:
            self._count_message(length)
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
        return self._open_view[: self._length[0]]
