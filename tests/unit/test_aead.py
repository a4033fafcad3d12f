"""l2mesh.crypto.aead: the allocation-free ChaCha20-Poly1305 path agrees with pynacl's."""

from __future__ import annotations

import struct

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.crypto.aead import (
    BUSY_MESSAGES,
    FAST_FROM_BYTES,
    MAX_MESSAGE_BYTES,
    TAG_BYTES,
    AeadError,
    AeadScratch,
    TransportKey,
)

SETTINGS = settings(max_examples=200, deadline=None)

keys = st.binary(min_size=32, max_size=32)
counters = st.integers(0, 2**64 - 1)
plaintexts = st.binary(max_size=2000)
headers = st.binary(max_size=32)

# One per process, as in the node; each pinned to one of the two implementations of the cipher.
SODIUM = AeadScratch(openssl=False)
OPENSSL = AeadScratch(openssl=True)
BOTH = pytest.mark.parametrize("scratch", [SODIUM, OPENSSL], ids=["libsodium", "openssl"])


def reference_seal(key: bytes, counter: int, plaintext: bytes) -> bytes:
    nonce = b"\0\0\0\0" + struct.pack("<Q", counter)
    return nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, b"", nonce, key)


@SETTINGS
@given(key=keys, counter=counters, header=headers, plaintext=plaintexts)
@BOTH
def test_seal_matches_pynacl_and_open_round_trips(scratch: AeadScratch, key: bytes, counter: int, header: bytes, plaintext: bytes) -> None:
    transport_key = TransportKey(key)
    sealed = bytes(scratch.seal(transport_key, counter, header, plaintext))
    assert sealed[: len(header)] == header
    assert sealed[len(header) :] == reference_seal(key, counter, plaintext)
    assert len(sealed) == len(header) + len(plaintext) + TAG_BYTES
    assert bytes(scratch.open(transport_key, counter, sealed[len(header) :])) == plaintext


@SETTINGS
@given(key=keys, counter=counters, plaintext=plaintexts)
@BOTH
def test_open_accepts_pynacl_ciphertext(scratch: AeadScratch, key: bytes, counter: int, plaintext: bytes) -> None:
    assert bytes(scratch.open(TransportKey(key), counter, reference_seal(key, counter, plaintext))) == plaintext


@BOTH
def test_known_nonce_layout_is_four_zero_bytes_then_little_endian_counter(scratch: AeadScratch) -> None:
    key = bytes(range(32))
    counter = 0x0102030405060708
    sealed = bytes(scratch.seal(TransportKey(key), counter, b"", b"payload"))
    nonce = bytes(4) + bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert sealed == nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(b"payload", None, nonce, key)


@SETTINGS
@given(key=keys, other=keys, counter=counters, plaintext=plaintexts)
@BOTH
def test_open_with_wrong_key_raises(scratch: AeadScratch, key: bytes, other: bytes, counter: int, plaintext: bytes) -> None:
    if key == other:
        other = bytes([other[0] ^ 1]) + other[1:]
    sealed = reference_seal(key, counter, plaintext)
    with pytest.raises(AeadError):
        scratch.open(TransportKey(other), counter, sealed)


@SETTINGS
@given(key=keys, counter=counters, delta=st.integers(1, 2**64 - 1), plaintext=plaintexts)
@BOTH
def test_open_with_wrong_counter_raises(scratch: AeadScratch, key: bytes, counter: int, delta: int, plaintext: bytes) -> None:
    sealed = reference_seal(key, counter, plaintext)
    with pytest.raises(AeadError):
        scratch.open(TransportKey(key), (counter + delta) % 2**64, sealed)


@SETTINGS
@given(key=keys, counter=counters, plaintext=plaintexts, position=st.integers(0, 10**6), flip=st.integers(1, 255))
@BOTH
def test_open_of_tampered_ciphertext_raises(scratch: AeadScratch, key: bytes, counter: int, plaintext: bytes, position: int, flip: int) -> None:
    sealed = bytearray(reference_seal(key, counter, plaintext))
    sealed[position % len(sealed)] ^= flip
    with pytest.raises(AeadError):
        scratch.open(TransportKey(key), counter, bytes(sealed))


@pytest.mark.parametrize("length", [0, 1, TAG_BYTES - 1])
@BOTH
def test_open_of_ciphertext_shorter_than_tag_raises(scratch: AeadScratch, length: int) -> None:
    with pytest.raises(AeadError):
        scratch.open(TransportKey(bytes(32)), 0, bytes(length))


def test_seal_and_open_refuse_messages_larger_than_scratch() -> None:
    scratch = AeadScratch(size_bytes=64)
    key = TransportKey(bytes(32))
    sealed = bytes(scratch.seal(key, 0, b"h" * 16, b"p" * 32))  # exactly 64 bytes
    assert len(sealed) == 64
    with pytest.raises(AeadError):
        scratch.seal(key, 0, b"h" * 16, b"p" * 33)
    with pytest.raises(AeadError):
        scratch.open(key, 0, bytes(65))


@BOTH
def test_default_scratch_holds_a_64k_super_frame(scratch: AeadScratch) -> None:
    key = bytes(range(32))
    plaintext = bytes(65536)
    sealed = bytes(scratch.seal(TransportKey(key), 7, b"\x03" + bytes(15), plaintext))
    assert sealed[16:] == reference_seal(key, 7, plaintext)
    assert len(sealed) <= MAX_MESSAGE_BYTES


@BOTH
def test_seal_accepts_memoryview_and_empty_plaintext(scratch: AeadScratch) -> None:
    key = bytes(32)
    assert bytes(scratch.seal(TransportKey(key), 1, b"", memoryview(b"abc"))) == reference_seal(key, 1, b"abc")
    empty = bytes(scratch.seal(TransportKey(key), 2, b"", b""))
    assert empty == reference_seal(key, 2, b"") and len(empty) == TAG_BYTES
    assert bytes(scratch.open(TransportKey(key), 2, empty)) == b""


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_transport_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError):
        TransportKey(bytes(length))


def test_the_two_implementations_seal_identically() -> None:
    key = TransportKey(bytes(range(32)))
    for length in (0, 1, 63, 1400, 65536):
        plaintext = bytes(range(256)) * (length // 256) + bytes(length % 256)
        assert bytes(SODIUM.seal(key, length, b"hdr", plaintext)) == bytes(OPENSSL.seal(key, length, b"hdr", plaintext))


def test_a_super_frame_switches_an_automatic_scratch_to_openssl() -> None:
    scratch = AeadScratch()
    key = TransportKey(bytes(32))
    scratch.seal(key, 0, b"", bytes(FAST_FROM_BYTES - 1 - TAG_BYTES))
    assert not scratch.uses_openssl
    sealed = bytes(scratch.seal(key, 1, b"", bytes(FAST_FROM_BYTES)))
    assert scratch.uses_openssl
    assert sealed == reference_seal(bytes(32), 1, bytes(FAST_FROM_BYTES))


def test_a_burst_of_small_messages_switches_but_a_trickle_does_not() -> None:
    key = TransportKey(bytes(32))
    busy = AeadScratch()
    for counter in range(BUSY_MESSAGES):
        busy.open(key, counter, reference_seal(bytes(32), counter, b"x"))
    assert busy.uses_openssl
    idle = AeadScratch()
    idle._window_started -= 2.0  # the window began long ago: these messages arrived slowly
    for counter in range(BUSY_MESSAGES):
        idle.seal(key, counter, b"", b"x")
    assert not idle.uses_openssl
