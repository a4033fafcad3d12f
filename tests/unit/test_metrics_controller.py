"""The controller's metrics: what GET /metrics reports from a real ControllerCore, and who may read it.

The core runs in the unit harness (real node cores, fake clock, SQLite); the
admin API is the real Starlette app, reached through httpx's ASGI transport,
so the client address (loopback or not) is the test's to choose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from l2mesh.controller.core import ControllerCore
from l2mesh.edge.controller.api import build_app
from l2mesh.edge.controller.metrics import ControllerCollector
from l2mesh.edge.metrics_text import exposition
from l2mesh.ids import format_network_id
from l2mesh.wire.packets import RELAY_HEADER, PacketType
from tests.prometheus_samples import Samples, samples_of, value
from tests.unit.harness import Controller, World, controller_of, cut_between

T = TypeVar("T")
POOL = "10.147.17.0/24"
TOKEN = "a-token-of-at-least-sixteen-characters"


def scrape(core: ControllerCore) -> Samples:
    return samples_of(exposition(list(ControllerCollector(core).collect())).decode())


def test_members_by_state_and_online_joins_and_pushes_per_network(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    a, b, waiting = world.add_member(), world.add_member(), world.add_member()
    for member in (a, b, waiting):
        member.join(network_id, controller)
    world.run(1.0)
    controller.authorize(network_id, a)
    controller.authorize(network_id, b)
    world.run(1.0)
    assert a.status() == b.status() == "OK" and waiting.status() == "ACCESS_DENIED"
    net = format_network_id(network_id)

    samples = scrape(controller.core)
    assert value(samples, "l2mesh_controller_members", network=net, state="authorized") == 2
    assert value(samples, "l2mesh_controller_members", network=net, state="unauthorized") == 1
    assert value(samples, "l2mesh_controller_members_online", network=net) == 2
    assert value(samples, "l2mesh_controller_network_info", network=net, name="lab") == 1
    assert value(samples, "l2mesh_controller_netconf_revision", network=net) == controller.core.get_network(network_id)["revision"]
    assert value(samples, "l2mesh_controller_join_requests_total") == 3
    assert value(samples, "l2mesh_controller_netconf_requests_total") >= 3
    # Authorizing b pushed the new member list to a (and b); the push count follows the members reached.
    pushes = value(samples, "l2mesh_controller_netconf_pushes_total", network=net)
    assert pushes >= 2
    assert value(samples, "l2mesh_controller_handshakes_total", event="answered") >= 3
    assert value(samples, "l2mesh_controller_sent_total", kind="access_denied") >= 1

    controller.deauthorize(network_id, a)
    world.run(1.0)
    samples = scrape(controller.core)
    assert value(samples, "l2mesh_controller_members", network=net, state="authorized") == 1
    assert value(samples, "l2mesh_controller_members", network=net, state="unauthorized") == 2
    assert value(samples, "l2mesh_controller_members_online", network=net) == 1
    assert value(samples, "l2mesh_controller_netconf_pushes_total", network=net) > pushes


def test_relayed_bytes_and_relay_drops_by_reason(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    a, b = world.add_member(), world.add_member()
    for member in (a, b):
        member.join(network_id, controller)
        controller.authorize(network_id, member)
    world.run(1.0)
    world.network.rules.append(cut_between(a.endpoint, b.endpoint))
    frame = a.frame_to(b, b"over the relay")
    a.send(frame)
    world.run(5.0, until=lambda: b.frames() == [frame] and a.path_to(b) == "relay")
    samples = scrape(controller.core)
    assert value(samples, "l2mesh_controller_relay_packets_total") == controller.relayed_packets > 0
    assert value(samples, "l2mesh_controller_relay_bytes_total") >= len(frame) * controller.relayed_packets // 2
    # An envelope from an address holding no member's session: dropped and counted by reason.
    header = RELAY_HEADER.pack(PacketType.RELAY, 0, b.node_id.to_bytes(5, "big"), a.node_id.to_bytes(5, "big"))
    controller.receive(header + bytes(40), ("198.18.99.2", 9993), world.now)
    samples = scrape(controller.core)
    assert value(samples, "l2mesh_controller_drops_total", reason="relay_spoofed_or_unknown_source") == 1


class CoreReader:
    """What the admin app needs of the server: read() runs function(core) (here at once, on the test's thread)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def read(self, function: Callable[[ControllerCore], T]) -> T:
        return function(self.controller.core)

    async def change(self, perform: Any) -> Any:
        raise AssertionError("no change expected")


def client_from(world: World, address: str, behind_proxy: bool = False) -> httpx.AsyncClient:
    controller = controller_of(world)
    app = build_app(CoreReader(controller), TOKEN, controller.node_id, behind_proxy=behind_proxy)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://controller")


async def test_metrics_are_open_to_loopback_and_need_the_bearer_token_from_elsewhere(world: World) -> None:
    controller_of(world).create_network(pools=[POOL])
    for loopback in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        async with client_from(world, loopback) as local:
            answer = await local.get("/metrics")
        assert answer.status_code == 200, loopback
        assert answer.headers["content-type"].startswith("text/plain")
        assert "l2mesh_controller_members{" in answer.text
    async with client_from(world, "198.18.0.7") as remote:
        assert (await remote.get("/metrics")).status_code == 401
        assert (await remote.get("/metrics", headers={"Authorization": "Bearer wrong-token-wrong-token"})).status_code == 401
        answer = await remote.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert "process_resident_memory_bytes" in answer.text


async def test_behind_a_reverse_proxy_even_loopback_needs_the_token(world: World) -> None:
    controller_of(world).create_network(pools=[POOL])
    async with client_from(world, "127.0.0.1", behind_proxy=True) as via_proxy:
        assert (await via_proxy.get("/metrics")).status_code == 401
        answer = await via_proxy.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and "l2mesh_controller_members{" in answer.text


async def test_admin_requests_are_timed_by_method_and_route_template(world: World) -> None:
    network_id = controller_of(world).create_network(pools=[POOL])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with client_from(world, "127.0.0.1") as client:
        assert (await client.get("/api/v1/networks", headers=auth)).status_code == 200
        for _ in range(2):
            assert (await client.get(f"/api/v1/networks/{format_network_id(network_id)}/members", headers=auth)).status_code == 200
        assert (await client.get("/no/such/path")).status_code == 404
        samples = samples_of((await client.get("/metrics")).text)
    name = "l2mesh_controller_admin_request_duration_seconds_count"
    assert value(samples, name, method="GET", route="/api/v1/networks") == 1
    assert value(samples, name, method="GET", route="/api/v1/networks/{network_id}/members") == 2
    assert value(samples, name, method="GET", route="unmatched") == 1
    # Each app has a registry of its own: a second app starts from nothing.
    async with client_from(world, "127.0.0.1") as fresh:
        samples = samples_of((await fresh.get("/metrics")).text)
    assert (name, (("method", "GET"), ("route", "/api/v1/networks"))) not in samples


def test_a_preauthorized_member_counts_as_authorized_before_it_asks_and_its_first_ask_as_a_join(world: World) -> None:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    unseen = world.add_member()
    controller.authorize(network_id, unseen)  # pre-authorized by id: authorized, though never heard of
    samples = scrape(controller.core)
    net = format_network_id(network_id)
    assert value(samples, "l2mesh_controller_members", network=net, state="authorized") == 1
    assert value(samples, "l2mesh_controller_members", network=net, state="unauthorized") == 0
    assert value(samples, "l2mesh_controller_members_online", network=net) == 0
    assert value(samples, "l2mesh_controller_join_requests_total") == 0
    unseen.join(network_id, controller)
    world.run(1.0)
    samples = scrape(controller.core)
    assert unseen.status() == "OK"
    assert value(samples, "l2mesh_controller_join_requests_total") == 1
    assert value(samples, "l2mesh_controller_members_online", network=net) == 1
