"""l2mesh.crypto.noise against the published cacophony test vectors for 25519_ChaChaPoly_BLAKE2b.

The vectors live in tests/data/noise_vectors.json (a copy of
/work/shared/testdata/noise_vectors.json, so a clone of the repository alone
is enough); the shared original is only a fallback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from l2mesh.crypto.noise import CipherState, HandshakeState, NoiseError, public_key

_HERE = Path(__file__).resolve()
REPO_VECTORS = _HERE.parents[1] / "data" / "noise_vectors.json"
SHARED_VECTORS = _HERE.parents[3] / "shared" / "testdata" / "noise_vectors.json"
VECTORS_PATH = REPO_VECTORS if REPO_VECTORS.exists() else SHARED_VECTORS

EXPECTED_PROTOCOLS = {
    "Noise_IK_25519_ChaChaPoly_BLAKE2b",
    "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b",
    "Noise_KK_25519_ChaChaPoly_BLAKE2b",
    "Noise_NK_25519_ChaChaPoly_BLAKE2b",
    "Noise_XX_25519_ChaChaPoly_BLAKE2b",
}


def _load() -> dict:
    with VECTORS_PATH.open() as f:
        return json.load(f)


DOC = _load()
VECTORS = DOC["vectors"]
IDS = [v["protocol_name"].split("_")[1] for v in VECTORS]


def _hex(vector: dict, key: str) -> bytes | None:
    value = vector.get(key)
    return bytes.fromhex(value) if value is not None else None


def _build(vector: dict, *, init_remote_static: bytes | None = None) -> tuple[HandshakeState, HandshakeState]:
    name = vector["protocol_name"]
    initiator = HandshakeState(
        name,
        True,
        prologue=_hex(vector, "init_prologue") or b"",
        static_private=_hex(vector, "init_static"),
        remote_static=init_remote_static if init_remote_static is not None else _hex(vector, "init_remote_static"),
        ephemeral_private=_hex(vector, "init_ephemeral"),
        psks=[bytes.fromhex(p) for p in vector.get("init_psks", [])],
    )
    responder = HandshakeState(
        name,
        False,
        prologue=_hex(vector, "resp_prologue") or b"",
        static_private=_hex(vector, "resp_static"),
        remote_static=_hex(vector, "resp_remote_static"),
        ephemeral_private=_hex(vector, "resp_ephemeral"),
        psks=[bytes.fromhex(p) for p in vector.get("resp_psks", [])],
    )
    return initiator, responder


def _handshake_length(vector: dict) -> int:
    """How many of the vector's messages belong to the handshake (the rest are transport)."""
    initiator, responder = _build(vector)
    count = 0
    while not initiator.finished:
        writer, reader = (initiator, responder) if count % 2 == 0 else (responder, initiator)
        reader.read_message(writer.write_message(bytes.fromhex(vector["messages"][count]["payload"])))
        count += 1
    return count


def test_vector_file_is_the_repo_copy_and_keeps_its_source() -> None:
    assert VECTORS_PATH == REPO_VECTORS, "tests/data/noise_vectors.json is missing from the repository"
    assert "cacophony" in DOC["source"]


def test_vector_file_holds_the_five_expected_protocols() -> None:
    assert {v["protocol_name"] for v in VECTORS} == EXPECTED_PROTOCOLS
    assert len(VECTORS) == 5


def test_repo_copy_matches_shared_original_when_present() -> None:
    if not SHARED_VECTORS.exists():
        pytest.skip("shared test data not present outside the repository")
    assert json.loads(REPO_VECTORS.read_text()) == json.loads(SHARED_VECTORS.read_text())


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_handshake_and_transport_messages_match_vector(vector: dict) -> None:
    initiator, responder = _build(vector)
    messages = vector["messages"]
    transport: tuple[CipherState, CipherState, CipherState, CipherState] | None = None
    handshake_messages = 0
    for index, message in enumerate(messages):
        payload = bytes.fromhex(message["payload"])
        expected = bytes.fromhex(message["ciphertext"])
        from_initiator = index % 2 == 0
        if transport is None:
            writer, reader = (initiator, responder) if from_initiator else (responder, initiator)
            ciphertext = writer.write_message(payload)
            assert ciphertext == expected, f"handshake message {index}"
            assert reader.read_message(ciphertext) == payload, f"handshake message {index}"
            handshake_messages += 1
            if initiator.finished:
                assert responder.finished
                assert initiator.handshake_hash.hex() == vector["handshake_hash"]
                assert responder.handshake_hash.hex() == vector["handshake_hash"]
                i_send, i_recv = initiator.split()
                r_send, r_recv = responder.split()
                transport = (i_send, i_recv, r_send, r_recv)
        else:
            i_send, i_recv, r_send, r_recv = transport
            sender, receiver = (i_send, r_recv) if from_initiator else (r_send, i_recv)
            ciphertext = sender.encrypt_with_ad(b"", payload)
            assert ciphertext == expected, f"transport message {index}"
            assert receiver.decrypt_with_ad(b"", ciphertext) == payload, f"transport message {index}"
    assert transport is not None, "handshake never finished"
    assert 0 < handshake_messages < len(messages), "vector must exercise transport messages too"


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_each_side_learns_the_other_static_key(vector: dict) -> None:
    initiator, responder = _build(vector)
    for index in range(_handshake_length(vector)):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        reader.read_message(writer.write_message(bytes.fromhex(vector["messages"][index]["payload"])))
    if vector.get("resp_static"):
        assert initiator.remote_static == public_key(_hex(vector, "resp_static"))
    if vector.get("init_static"):
        assert responder.remote_static == public_key(_hex(vector, "init_static"))


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_split_before_handshake_finishes_raises(vector: dict) -> None:
    initiator, _ = _build(vector)
    with pytest.raises(NoiseError):
        initiator.split()


def _tamper_cases() -> list:
    """(vector, message index, byte position) for every byte of every authenticated handshake message."""
    cases = []
    for vector, vid in zip(VECTORS, IDS):
        n_handshake = _handshake_length(vector)
        for index in range(n_handshake):
            message = vector["messages"][index]
            ciphertext = bytes.fromhex(message["ciphertext"])
            # Only messages whose payload is encrypted carry a tag; an XX
            # first message ("e" alone) is unauthenticated by design.
            if len(ciphertext) - len(bytes.fromhex(message["payload"])) in (0, 32):
                continue
            for position in sorted({0, 1, 31, 32, len(ciphertext) // 2, len(ciphertext) - 17, len(ciphertext) - 1}):
                if 0 <= position < len(ciphertext):
                    cases.append(pytest.param(vector, index, position, id=f"{vid}-msg{index}-byte{position}"))
    return cases


@pytest.mark.parametrize(("vector", "index", "position"), _tamper_cases())
def test_tampered_handshake_message_byte_makes_read_message_raise(vector: dict, index: int, position: int) -> None:
    initiator, responder = _build(vector)
    for earlier in range(index):
        writer, reader = (initiator, responder) if earlier % 2 == 0 else (responder, initiator)
        reader.read_message(writer.write_message(bytes.fromhex(vector["messages"][earlier]["payload"])))
    writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
    message = bytearray(writer.write_message(bytes.fromhex(vector["messages"][index]["payload"])))
    assert bytes(message).hex() == vector["messages"][index]["ciphertext"]
    message[position] ^= 0x01
    with pytest.raises(NoiseError):
        reader.read_message(bytes(message))


def test_every_vector_has_some_tamper_case() -> None:
    covered = {case.values[0]["protocol_name"] for case in _tamper_cases()}
    assert covered == EXPECTED_PROTOCOLS


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_truncated_handshake_message_makes_read_message_raise(vector: dict) -> None:
    initiator, responder = _build(vector)
    message = initiator.write_message(bytes.fromhex(vector["messages"][0]["payload"]))
    for length in (0, 16, 31):
        _, fresh_responder = _build(vector)
        with pytest.raises(NoiseError):
            fresh_responder.read_message(message[:length])


WITH_KNOWN_RESPONDER = [v for v in VECTORS if v.get("init_remote_static")]


@pytest.mark.parametrize("vector", WITH_KNOWN_RESPONDER, ids=[v["protocol_name"].split("_")[1] for v in WITH_KNOWN_RESPONDER])
def test_initiator_targeting_wrong_responder_static_makes_responder_fail(vector: dict) -> None:
    wrong_static = public_key(bytes(range(1, 33)))
    assert wrong_static != _hex(vector, "init_remote_static")
    initiator, responder = _build(vector, init_remote_static=wrong_static)
    message = initiator.write_message(bytes.fromhex(vector["messages"][0]["payload"]))
    with pytest.raises(NoiseError):
        responder.read_message(message)


def test_vectors_with_known_responder_static_are_the_four_expected() -> None:
    assert {v["protocol_name"].split("_")[1] for v in WITH_KNOWN_RESPONDER} == {"IK", "IKpsk2", "KK", "NK"}


def test_ikpsk2_with_mismatched_psk_makes_initiator_reject_the_response() -> None:
    # psk2 is mixed in at the end of the second message, so the first one still
    # reads and the initiator is the side that notices.
    vector = next(v for v in VECTORS if v["protocol_name"].startswith("Noise_IKpsk2_"))
    wrong = dict(vector, resp_psks=["11" * 32])
    initiator, responder = _build(wrong)
    responder.read_message(initiator.write_message(bytes.fromhex(vector["messages"][0]["payload"])))
    reply = responder.write_message(bytes.fromhex(vector["messages"][1]["payload"]))
    assert reply.hex() != vector["messages"][1]["ciphertext"]
    with pytest.raises(NoiseError):
        initiator.read_message(reply)


def test_writing_out_of_turn_raises() -> None:
    vector = VECTORS[0]
    initiator, responder = _build(vector)
    with pytest.raises(NoiseError):
        responder.write_message(b"")
    with pytest.raises(NoiseError):
        initiator.read_message(b"\0" * 64)
