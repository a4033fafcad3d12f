"""Identities, ids, member MACs and crash-safe state files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from l2mesh.errors import IdentityError, InvalidId, L2meshError, StateError
from l2mesh.edge.identity_file import IDENTITY_FILE, load_identity, load_or_create_identity, save_identity
from l2mesh.identity import Identity, PublicIdentity, node_id_from_public_keys
from l2mesh.ids import (
    NETWORK_NUMBER_MASK,
    NODE_ID_MASK,
    controller_of,
    format_mac,
    format_network_id,
    format_node_id,
    is_reserved_node_id,
    make_network_id,
    member_mac,
    node_of_member_mac,
    parse_mac,
    parse_network_id,
    parse_node_id,
)
from l2mesh.edge.statefile import atomic_write_bytes, atomic_write_json, ensure_state_dir, read_json

SETTINGS = settings(max_examples=200, deadline=None)

node_ids = st.integers(1, NODE_ID_MASK).filter(lambda n: not is_reserved_node_id(n))
network_ids = st.integers(0, 2**64 - 1)

# A fixed identity: X25519 private 01*32, Ed25519 seed 02*32.
FIXED_PRIVATE = bytes([1]) * 32
FIXED_SEED = bytes([2]) * 32
FIXED_X25519_PUBLIC = "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"
FIXED_ED25519_PUBLIC = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"
FIXED_NODE_ID = "0415a2a8e1"


# -- identity ---------------------------------------------------------------------


def test_generate_save_load_round_trip(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = save_identity(ident, tmp_path)
    assert path == tmp_path / IDENTITY_FILE
    loaded = load_identity(tmp_path)
    assert loaded == ident
    assert loaded.public == ident.public
    assert loaded.node_id == ident.node_id


def test_generated_identities_differ_and_never_get_reserved_ids() -> None:
    idents = [Identity.generate() for _ in range(20)]
    assert len({i.x25519_private for i in idents}) == 20
    assert not any(is_reserved_node_id(i.node_id) for i in idents)


def test_identity_file_is_private_and_state_dir_is_created(tmp_path: Path) -> None:
    state_dir = tmp_path / "deep" / "state"
    save_identity(Identity.generate(), state_dir)
    assert state_dir.is_dir()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / IDENTITY_FILE).stat().st_mode) == 0o600


def test_identity_file_stays_private_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        save_identity(Identity.generate(), tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / IDENTITY_FILE).stat().st_mode) == 0o600


def test_identity_file_records_id_and_public_keys(tmp_path: Path) -> None:
    ident = Identity(FIXED_PRIVATE, FIXED_SEED)
    doc = json.loads(save_identity(ident, tmp_path).read_text())
    assert doc["id"] == FIXED_NODE_ID
    assert doc["x25519"] == FIXED_X25519_PUBLIC
    assert doc["ed25519"] == FIXED_ED25519_PUBLIC
    assert doc["x25519_private"] == FIXED_PRIVATE.hex()
    assert doc["ed25519_seed"] == FIXED_SEED.hex()


def test_load_or_create_creates_once_then_loads(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    second = load_or_create_identity(tmp_path)
    assert first == second


def test_node_id_is_ten_hex_digits() -> None:
    for _ in range(10):
        text = format_node_id(Identity.generate().node_id)
        assert re.fullmatch(r"[0-9a-f]{10}", text)


def test_node_id_is_blake2b_of_both_public_keys_and_deterministic() -> None:
    ident = Identity(FIXED_PRIVATE, FIXED_SEED)
    assert ident.x25519_public.hex() == FIXED_X25519_PUBLIC
    assert ident.ed25519_public.hex() == FIXED_ED25519_PUBLIC
    digest = hashlib.blake2b(
        ident.x25519_public + ident.ed25519_public, digest_size=5, person=b"l2mesh-node-id\0\0"
    ).digest()
    assert ident.node_id == int.from_bytes(digest, "big")
    assert format_node_id(ident.node_id) == FIXED_NODE_ID
    assert Identity(FIXED_PRIVATE, FIXED_SEED).node_id == ident.node_id
    assert node_id_from_public_keys(ident.x25519_public, ident.ed25519_public) == ident.node_id
    assert ident.public.node_id == ident.node_id


def test_node_id_depends_on_both_public_keys() -> None:
    x, ed = bytes(range(32)), bytes(range(32, 64))
    base = node_id_from_public_keys(x, ed)
    assert node_id_from_public_keys(bytes([x[0] ^ 1]) + x[1:], ed) != base
    assert node_id_from_public_keys(x, bytes([ed[0] ^ 1]) + ed[1:]) != base


def test_signature_verifies_with_public_identity_and_fails_when_altered() -> None:
    ident = Identity.generate()
    signature = ident.sign(b"netconf")
    assert ident.public.verify(b"netconf", signature)
    assert not ident.public.verify(b"netconf!", signature)
    assert not Identity.generate().public.verify(b"netconf", signature)


def test_public_identity_json_round_trip() -> None:
    public = Identity.generate().public
    assert PublicIdentity.from_json(public.to_json()) == public
    doc = public.to_json()
    del doc["id"]
    assert PublicIdentity.from_json(doc) == public


def test_public_identity_from_json_rejects_mismatching_id() -> None:
    public = Identity.generate().public
    doc = public.to_json()
    doc["id"] = format_node_id((public.node_id + 1) & NODE_ID_MASK)
    with pytest.raises(IdentityError):
        PublicIdentity.from_json(doc)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "x25519",
        {},
        {"x25519": "00" * 32},
        {"x25519": "zz" * 32, "ed25519": "00" * 32},
        {"x25519": "00" * 31, "ed25519": "00" * 32},
        {"x25519": "00" * 32, "ed25519": 5},
    ],
    ids=["list", "string", "empty", "no-ed25519", "not-hex", "short-key", "non-string-key"],
)
def test_public_identity_from_json_rejects_malformed_documents(doc) -> None:
    with pytest.raises(IdentityError):
        PublicIdentity.from_json(doc)


def _valid_identity_doc() -> dict:
    ident = Identity(FIXED_PRIVATE, FIXED_SEED)
    return {
        "id": format_node_id(ident.node_id),
        "x25519_private": FIXED_PRIVATE.hex(),
        "ed25519_seed": FIXED_SEED.hex(),
        "x25519": ident.x25519_public.hex(),
        "ed25519": ident.ed25519_public.hex(),
    }


CORRUPTIONS = {
    "not-json": b"{this is not json",
    "not-utf8": b"\xff\xfe\x00garbage",
    "empty-file": b"",
    "json-list": b"[1, 2, 3]\n",
    "truncated-hex": json.dumps(dict(_valid_identity_doc(), x25519_private=FIXED_PRIVATE.hex()[:-1])).encode(),
    "not-hex": json.dumps(dict(_valid_identity_doc(), ed25519_seed="g" * 64)).encode(),
    "wrong-key-length": json.dumps(dict(_valid_identity_doc(), ed25519_seed=FIXED_SEED.hex()[:-2])).encode(),
    "missing-key": json.dumps({k: v for k, v in _valid_identity_doc().items() if k != "x25519_private"}).encode(),
    "id-not-matching-keys": json.dumps(dict(_valid_identity_doc(), id="0123456789")).encode(),
    "truncated-file": json.dumps(_valid_identity_doc()).encode()[:70],
}


@pytest.mark.parametrize("content", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_corrupted_identity_file_raises_one_line_identity_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / IDENTITY_FILE).write_bytes(content)
    with pytest.raises(IdentityError) as info:
        load_identity(tmp_path)
    message = str(info.value)
    assert message and "\n" not in message
    assert isinstance(info.value, L2meshError)


def test_missing_identity_file_raises_one_line_identity_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError) as info:
        load_identity(tmp_path / "nowhere")
    assert "\n" not in str(info.value) and str(info.value)


def test_valid_identity_document_used_by_corruption_cases_loads(tmp_path: Path) -> None:
    (tmp_path / IDENTITY_FILE).write_text(json.dumps(_valid_identity_doc()))
    assert load_identity(tmp_path) == Identity(FIXED_PRIVATE, FIXED_SEED)


def test_identity_file_without_id_still_loads(tmp_path: Path) -> None:
    doc = _valid_identity_doc()
    del doc["id"]
    (tmp_path / IDENTITY_FILE).write_text(json.dumps(doc))
    assert load_identity(tmp_path).node_id == int(FIXED_NODE_ID, 16)


# -- node and network ids ----------------------------------------------------------


@pytest.mark.parametrize("text", ["0123456789", "abcdefABCD", "00000000ff", "feffffffff", " 0123456789\n"])
def test_parse_node_id_accepts_ten_hex_digits(text: str) -> None:
    assert parse_node_id(text) == int(text, 16)


@pytest.mark.parametrize(
    "text",
    ["", "123", "12345678901", "012345678g", "0x12345678", "01234 5678", "-123456789", "０１２３４５６７８９", "0000000000", "ff00000000", "ffffffffff", "FF12345678"],
)
def test_parse_node_id_rejects_malformed_and_reserved(text: str) -> None:
    with pytest.raises(InvalidId):
        parse_node_id(text)


@pytest.mark.parametrize("value", [None, 123, b"0123456789"])
def test_parse_node_id_rejects_non_strings(value) -> None:
    with pytest.raises(InvalidId):
        parse_node_id(value)


def test_invalid_id_is_a_value_error_with_one_line_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_network_id("nope\nnope")
    assert isinstance(info.value, InvalidId)
    assert "\n" not in str(info.value)


@SETTINGS
@given(node_ids)
def test_node_id_format_parse_round_trip(node_id: int) -> None:
    text = format_node_id(node_id)
    assert len(text) == 10
    assert parse_node_id(text) == node_id
    assert parse_node_id(text.upper()) == node_id


@pytest.mark.parametrize("text", ["0123456789abcdef", "0123456789ABCDEF", "feffffffff000000"])
def test_parse_network_id_accepts_sixteen_hex_digits(text: str) -> None:
    assert parse_network_id(text) == int(text, 16)


@pytest.mark.parametrize(
    "text",
    ["", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg", "0x23456789abcdef", "0000000000123456", "ff00000000123456", "ffffffffffffffff"],
)
def test_parse_network_id_rejects_malformed_and_reserved_controller(text: str) -> None:
    with pytest.raises(InvalidId):
        parse_network_id(text)


@SETTINGS
@given(controller=node_ids, number=st.integers(0, NETWORK_NUMBER_MASK))
def test_network_id_is_controller_id_followed_by_six_hex_digits(controller: int, number: int) -> None:
    network_id = make_network_id(controller, number)
    text = format_network_id(network_id)
    assert text == format_node_id(controller) + f"{number:06x}"
    assert controller_of(network_id) == controller
    assert network_id & NETWORK_NUMBER_MASK == number
    assert parse_network_id(text) == network_id


@pytest.mark.parametrize("number", [-1, NETWORK_NUMBER_MASK + 1, 2**40])
def test_make_network_id_rejects_numbers_outside_24_bits(number: int) -> None:
    with pytest.raises(InvalidId):
        make_network_id(0x0123456789, number)


# -- member MACs -------------------------------------------------------------------


@SETTINGS
@given(node_id=node_ids, network_id=network_ids)
def test_member_mac_is_locally_administered_unicast_deterministic_and_invertible(node_id: int, network_id: int) -> None:
    mac = member_mac(node_id, network_id)
    assert len(mac) == 6
    assert mac[0] & 0x02, "locally administered"
    assert mac[0] & 0x01 == 0, "unicast"
    assert member_mac(node_id, network_id) == mac
    assert node_of_member_mac(mac, network_id) == node_id


@SETTINGS
@given(a=node_ids, b=node_ids, network_id=network_ids)
def test_member_macs_of_different_nodes_on_one_network_differ(a: int, b: int, network_id: int) -> None:
    assume(a != b)
    assert member_mac(a, network_id) != member_mac(b, network_id)


@SETTINGS
@given(node_id=node_ids, network_a=network_ids, flip_bit=st.integers(2, 47))
def test_member_mac_differs_between_networks_differing_in_mac_bits(node_id: int, network_a: int, flip_bit: int) -> None:
    network_b = network_a ^ (1 << flip_bit)
    assert member_mac(node_id, network_a) != member_mac(node_id, network_b)


def test_member_macs_differ_for_consecutive_networks_of_one_controller() -> None:
    controller = 0x0123456789
    node_id = 0x0A0B0C0D0E
    macs = {member_mac(node_id, make_network_id(controller, number)) for number in (1, 2, 3)}
    assert len(macs) == 3


@SETTINGS
@given(mac=st.binary(min_size=6, max_size=6), network_id=network_ids)
def test_node_of_member_mac_refuses_macs_with_another_first_byte(mac: bytes, network_id: int) -> None:
    # Every member MAC of a network shares the first byte of any one of them.
    first = member_mac(0x0A0B0C0D0E, network_id)[0]
    assume(mac[0] != first)
    assert node_of_member_mac(mac, network_id) is None


def test_node_of_member_mac_refuses_wrong_length() -> None:
    network_id = make_network_id(0x0123456789, 1)
    mac = member_mac(0x0A0B0C0D0E, network_id)
    assert node_of_member_mac(mac[:5], network_id) is None
    assert node_of_member_mac(mac + b"\0", network_id) is None


@SETTINGS
@given(st.binary(min_size=6, max_size=6))
def test_format_mac_parse_mac_round_trip(mac: bytes) -> None:
    text = format_mac(mac)
    assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", text)
    assert parse_mac(text) == mac
    assert parse_mac(text.upper()) == mac


@pytest.mark.parametrize(
    "text", ["", "00:11:22:33:44", "00:11:22:33:44:55:66", "00-11-22-33-44-55", "001122334455", "00:11:22:33:44:5g", "0:11:22:33:44:55"]
)
def test_parse_mac_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidId):
        parse_mac(text)


# -- state files ---------------------------------------------------------------------


def test_atomic_write_leaves_no_temp_files_and_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"v": 1})
    atomic_write_json(target, {"v": 2})
    atomic_write_bytes(tmp_path / "raw", b"\x00" * 100_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "state.json"]
    assert read_json(target) == {"v": 2}
    assert (tmp_path / "raw").read_bytes() == b"\x00" * 100_000


def test_atomic_write_makes_replaced_file_private(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("{}")
    target.chmod(0o644)
    atomic_write_json(target, {"v": 1})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failed_atomic_write_raises_state_error_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()  # os.replace onto a directory fails after the temp file was written
    with pytest.raises(StateError) as info:
        atomic_write_json(target, {"v": 1})
    assert "\n" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["occupied"]
    assert list(target.iterdir()) == []


def test_atomic_write_into_missing_directory_raises_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError):
        atomic_write_bytes(tmp_path / "missing" / "file", b"x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b"nul\x00l", b"[1,2"], ids=["empty", "brace", "not-utf8", "nul", "open-list"])
def test_read_json_of_garbage_raises_state_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.json"
    path.write_bytes(content)
    with pytest.raises(StateError) as info:
        read_json(path)
    assert "\n" not in str(info.value)


def test_read_json_of_missing_file_or_directory_raises_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError):
        read_json(tmp_path / "missing.json")
    with pytest.raises(StateError):
        read_json(tmp_path)


def test_ensure_state_dir_refuses_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StateError):
        ensure_state_dir(path)
    assert ensure_state_dir(tmp_path / "new") == tmp_path / "new"


def test_identity_created_by_racing_processes_is_one_identity(tmp_path: Path) -> None:
    """`l2mesh id` and `l2mesh daemon` started together: every process ends up with the id the file holds."""
    import subprocess
    import sys

    state_dir = tmp_path / "state"
    go = tmp_path / "go"
    program = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from l2mesh.edge.identity_file import load_or_create_identity\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.001)\n"
        f"print(load_or_create_identity(Path({str(state_dir)!r})).node_id)\n"
    )
    racers = [subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True) for _ in range(8)]
    try:
        go.touch()
        ids = {int(racer.communicate(timeout=30)[0]) for racer in racers}
    finally:
        for racer in racers:
            racer.kill()
    assert ids == {load_identity(state_dir).node_id}
    assert [p.name for p in state_dir.iterdir()] == [IDENTITY_FILE]  # no temporary files left


def test_identity_created_by_another_process_meanwhile_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window between 'no file yet' and 'file written': the other writer's keys are the ones used."""
    winner = Identity.generate()
    real_generate = Identity.generate

    def generate_while_another_process_writes() -> Identity:
        save_identity(winner, tmp_path)
        return real_generate()

    monkeypatch.setattr(Identity, "generate", staticmethod(generate_while_another_process_writes))
    assert load_or_create_identity(tmp_path) == winner
    assert load_identity(tmp_path) == winner
