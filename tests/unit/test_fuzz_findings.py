"""Defects the fuzzer (tests/fuzz) found, each held fixed by the input that showed it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from l2mesh.edge.node.control_client import control_path
from l2mesh.edge.node.control_server import serve_control
from l2mesh.edge.statefile import read_json
from l2mesh.errors import StateError
from l2mesh.identity import Identity
from l2mesh.ids import format_network_id, format_node_id, make_network_id, parse_network_id, parse_node_id
from l2mesh.netconf import MAX_REVISION, NetconfError, NetworkConfig
from l2mesh.netconf_delta import ConfigDelta
from tests.fuzz.targets_cores import AdminApi, NodeNetconf
from tests.fuzz.worlds import MeshWorld

CONTROLLER = Identity.generate()
NETWORK_ID = make_network_id(CONTROLLER.node_id, 1)


@pytest.fixture
def netconf_target() -> Iterator[NodeNetconf]:
    target = NodeNetconf()
    target.setup()
    yield target
    target.close()


@pytest.mark.parametrize("revision", [MAX_REVISION + 1, 2**70, -1])
def test_a_config_revision_the_wire_cannot_carry_is_refused(revision: int) -> None:
    doc = NetworkConfig(NETWORK_ID, 1, CONTROLLER.node_id).to_json() | {"revision": revision}
    with pytest.raises(NetconfError, match="revision must be an integer within"):
        NetworkConfig.from_json(doc)


def test_the_largest_revision_the_wire_carries_is_taken() -> None:
    doc = NetworkConfig(NETWORK_ID, 1, CONTROLLER.node_id).to_json() | {"revision": MAX_REVISION}
    assert NetworkConfig.from_json(doc).revision == MAX_REVISION


def test_a_delta_to_a_revision_the_wire_cannot_carry_is_refused() -> None:
    doc = ConfigDelta(NETWORK_ID, 4, 5, 0.0, 0.0, bytes(32)).to_json() | {"to_revision": MAX_REVISION + 1}
    with pytest.raises(NetconfError, match="to_revision must be an integer within"):
        ConfigDelta.from_json(doc)


def test_a_signed_config_with_revision_2_to_the_64_leaves_the_node_running(netconf_target: NodeNetconf) -> None:
    """Found by node.netconf: the node took the config, and its next request for a newer one raised out of tick()."""
    mesh = netconf_target.mesh
    assert isinstance(mesh, MeshWorld)
    held = mesh.a.config()
    assert held is not None
    body = json.dumps(held.to_json() | {"revision": 2**64}).encode()
    assert netconf_target.run(body) == "netconf_rejected"
    assert mesh.a.config() == held
    for second in range(1, 700, 7):  # past the refresh interval: the node asks the controller again
        mesh.a.tick(mesh.now + second)


@pytest.mark.parametrize("space", ["\x1f", "\x1c", "\u2028", "\u3000", " \t"])
def test_ids_with_whitespace_int_does_not_strip_parse_as_the_digits_they_hold(space: str) -> None:
    """Found by admin.api: the id matched after str.strip() but int() was given it unstripped and raised ValueError."""
    node_id, network_id = 0xA785F3831A, make_network_id(0xA785F3831A, 7)
    assert parse_node_id(f"{space}{format_node_id(node_id)}{space}") == node_id
    assert parse_network_id(f"{format_network_id(network_id)}{space}") == network_id


def test_admin_api_paths_with_such_ids_get_an_answer_not_a_500() -> None:
    target = AdminApi()
    target.setup()
    try:
        mesh = target.mesh
        assert mesh is not None
        net, node = format_network_id(mesh.network_id), format_node_id(mesh.a.node_id)
        assert target.run(f"GET /api/v1/networks/{net}/members/{node}\x1f\n".encode()) == "status_200"
        assert target.run(f"GET /api/v1/networks/\x1f\x1f{net}/members/{node}\n".encode()) == "status_200"
    finally:
        target.close()


def test_creating_a_network_with_null_pools_makes_one_without_pools_not_a_500() -> None:
    """Found by admin.api (make fuzz, seed 2): {"pools": null} skipped validation, then a KeyError escaped as a 500."""
    target = AdminApi()
    target.setup()
    try:
        mesh = target.mesh
        assert mesh is not None
        body = json.dumps({"name": "lab", "pools": None, "private": True, "routes": ["10.10.0.0/16"]})
        assert target.run(f"POST /api/v1/networks\n{body}".encode()) == "status_201"
        created = [n for n in mesh.controller.core.list_networks() if n["id"] != format_network_id(mesh.network_id)]
        assert [(n["pools"], n["routes"]) for n in created] == [([], [{"target": "10.10.0.0/16", "via": None}])]
    finally:
        target.close()


DEEP_JSON = b"[" * 3000 + b"]" * 3000  # deeper than Python's JSON parser recurses: RecursionError, not ValueError


@pytest.mark.parametrize("line", [
    json.dumps({"command": "ping", "node": "0a1b2c3d4e", "probe_timeout_s": 10**400}).encode() + b"\n",
    DEEP_JSON + b"\n",
])
def test_a_control_request_with_a_huge_number_or_deep_nesting_gets_an_error_reply_and_the_server_goes_on(
        line: bytes, tmp_path: Path) -> None:
    """Found by control.request: float(10**400) (as the daemon's ping does) is an OverflowError and a deep line a
    RecursionError; the control server caught neither, so one request ended it, and the daemon with it."""

    async def handler(request: dict[str, Any]) -> str:
        return f"timeout {float(request.get('probe_timeout_s', 1.0))}"

    async def ask(data: bytes) -> dict[str, Any]:
        stream = await trio.open_unix_socket(str(control_path(tmp_path)))
        async with stream:
            await stream.send_all(data)
            reply = b""
            while not reply.endswith(b"\n"):
                reply += await stream.receive_some(4096)
        answer: dict[str, Any] = json.loads(reply)
        return answer

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, tmp_path, handler)
            refused = await ask(line)
            assert refused["ok"] is False and refused["error"].startswith("bad control request")
            assert await ask(b'{"command": "ping", "probe_timeout_s": 2}\n') == {"ok": True, "result": "timeout 2.0"}
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_state_file_nested_too_deeply_is_a_corrupted_file_not_a_traceback(tmp_path: Path) -> None:
    """Found by statefile.identity and statefile.networks (seed 16, once the mutator nested deeply)."""
    path = tmp_path / "networks.json"
    path.write_bytes(DEEP_JSON)
    with pytest.raises(StateError, match="corrupted"):
        read_json(path)


@pytest.mark.parametrize("line", [b"POST /api/v1/networks", b"PUT /api/v1/web/admins/bob"])
def test_an_admin_api_body_nested_too_deeply_is_a_400_not_a_500(line: bytes) -> None:
    """Found by admin.api (--targets admin.api --iterations 2000 --seed 16, once the mutator nested deeply); the web
    admins' call (PUT /api/v1/web/admins/NAME) parses its body alike."""
    target = AdminApi()
    target.setup()
    try:
        assert target.run(line + b"\n" + DEEP_JSON) == "status_400"
    finally:
        target.close()
