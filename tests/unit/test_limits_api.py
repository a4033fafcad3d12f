"""The admin API bounds request bodies: a real oversized body through the ASGI app (build_app) gets a
413 with a one-line JSON error before any handler runs, declared or chunked; a body within the bound
reaches the handler as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from l2mesh.controller import admin
from l2mesh.controller.model import MAX_IPS_PER_MEMBER, MAX_POOLS_PER_NETWORK, ValidationError

from l2mesh.edge.controller.api import API_PREFIX, build_app
from l2mesh.edge.controller.body_limit import MAX_BODY_BYTES

TOKEN = "secret"


class UnusedController:
    """Nothing may reach the controller in these tests but what the test expects."""

    def __init__(self) -> None:
        self.changes = 0

    async def read(self, function: Any) -> Any:
        raise AssertionError("no read expected")

    async def change(self, perform: Any) -> Any:
        self.changes += 1
        return {"changed": True}


def call(body_chunks: list[bytes], declare_length: bool = True, token: str = TOKEN) -> tuple[int, dict[str, Any], UnusedController]:
    """POST /networks with the body in these chunks; (status, JSON answer, the controller)."""
    controller = UnusedController()
    app = build_app(controller, TOKEN, 0x0102030405)
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]
    if declare_length:
        headers.append((b"content-length", str(sum(map(len, body_chunks))).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": f"{API_PREFIX}/networks", "raw_path": f"{API_PREFIX}/networks".encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 9995),
    }
    incoming = [{"type": "http.request", "body": chunk, "more_body": i < len(body_chunks) - 1} for i, chunk in enumerate(body_chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        with trio.fail_after(5):
            await app(scope, receive, send)

    trio.run(run)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body) if body else {}, controller


def test_an_oversized_declared_body_is_refused_with_413_before_any_handler() -> None:
    status, answer, controller = call([b"{" + b" " * MAX_BODY_BYTES + b"}"])
    assert status == 413 and "larger than" in answer["error"] and controller.changes == 0


def test_an_oversized_chunked_body_is_refused_with_413_before_any_handler() -> None:
    chunk = b" " * 65536
    status, answer, controller = call([b"{"] + [chunk] * (MAX_BODY_BYTES // len(chunk) + 1) + [b"}"], declare_length=False)
    assert status == 413 and "larger than" in answer["error"] and controller.changes == 0


def test_an_oversized_body_without_the_token_is_refused_the_same() -> None:
    status, _, _ = call([b" " * (MAX_BODY_BYTES + 1)], token="wrong")
    assert status == 413


def test_a_body_within_the_bound_reaches_the_handler_in_chunks_or_whole() -> None:
    doc = json.dumps({"name": "lab", "pad": "x" * 1000}).encode()
    for chunks, declared in (([doc], True), ([doc[:10], doc[10:]], False)):
        status, answer, controller = call(chunks, declare_length=declared)
        assert (status, answer, controller.changes) == (201, {"changed": True}, 1)
    status, answer, _ = call([b"{"], token="wrong")
    assert status == 401


def test_a_request_cannot_set_more_pools_or_member_addresses_than_the_bounds(storage) -> None:
    network = admin.create_network(storage, 0x0102030405, {"name": "lab", "pools": ["10.147.17.0/24"]}).answer
    assert network is not None
    too_many_pools = [f"10.147.{n}.0/24" for n in range(MAX_POOLS_PER_NETWORK + 1)]
    with pytest.raises(ValidationError, match="at most"):
        admin.create_network(storage, 0x0102030405, {"name": "big", "pools": too_many_pools})
    too_many_ips = [f"10.147.17.{n}" for n in range(1, MAX_IPS_PER_MEMBER + 2)]
    with pytest.raises(ValidationError, match="at most"):
        admin.update_member(storage, network.network_id, 0x0a0b0c0d0e, {"ips": too_many_ips}, 1.0)
    admin.update_member(storage, network.network_id, 0x0a0b0c0d0e, {"ips": too_many_ips[:MAX_IPS_PER_MEMBER]}, 1.0)
