"""The node's metrics: what `--metrics-listen` reports from a real NodeCore and Reactor, and the page server.

The cores run in the unit harness (fake clock, a real controller core); the
reactor is a real one run for a moment on a thread; the page is served on a
real loopback socket and read with a plain HTTP/1.0 request.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
import trio
from prometheus_client.metrics_core import Metric

from l2mesh.edge.loop_lateness import LatenessHistogram
from l2mesh.edge.metrics_http import MAX_REQUEST_HEAD_BYTES, serve_page
from l2mesh.edge.metrics_text import exposition
from l2mesh.edge.node.metrics import NodeCollector, serve_node_metrics
from l2mesh.edge.reactor import Reactor
from l2mesh.errors import L2meshError
from l2mesh.ids import format_network_id, format_node_id
from l2mesh.node.core import NodeCore
from tests.prometheus_samples import Samples, samples_of, value
from tests.unit.harness import Member, World, controller_of

POOL = "10.147.17.0/24"


@pytest.fixture
def reactor() -> Reactor:
    """A real reactor, run for a moment with a 10 ms tick (so its lateness histogram has samples), then stopped."""
    reactor = Reactor(lambda now: None, tick_interval_s=0.01)
    thread = threading.Thread(target=reactor.run)
    thread.start()
    time.sleep(0.15)
    reactor.stop()
    thread.join(5)
    return reactor


def scrape(member: Member, reactor: Reactor, edge_drops: dict[str, int] | None = None) -> Samples:
    return samples_of(exposition(list(NodeCollector(member.core, reactor, edge_drops or {}).collect())).decode())


def two_members(world: World) -> tuple[int, Member, Member]:
    controller = controller_of(world)
    network_id = controller.create_network(pools=[POOL])
    a, b = world.add_member(), world.add_member()
    for member in (a, b):
        member.join(network_id, controller)
        controller.authorize(network_id, member)
    world.run(1.0)
    assert a.status() == b.status() == "OK"
    return network_id, a, b


def test_peers_by_path_bytes_and_packets_per_peer_handshakes_and_revision(world: World, reactor: Reactor) -> None:
    network_id, a, b = two_members(world)
    before = scrape(a, reactor)
    # b is listed in a's config but no frame went yet: an idle member, path none.
    assert value(before, "l2mesh_node_peers", role="member", path="none") == 1
    assert value(before, "l2mesh_node_peers", role="member", path="direct") == 0
    assert value(before, "l2mesh_node_peers", role="controller", path="direct") == 1
    frame = a.frame_to(b, b"x" * 500)
    a.send(frame)
    world.run(0.5)
    b.send(b.frame_to(a, b"reply"))
    world.run(0.5)
    assert b.frames() == [frame]

    samples = scrape(a, reactor)
    peer = format_node_id(b.node_id)
    assert value(samples, "l2mesh_node_peers", role="member", path="direct") == 1
    assert value(samples, "l2mesh_node_peers", role="member", path="none") == 0
    assert value(samples, "l2mesh_node_peer_bytes_total", peer=peer, role="member", direction="tx") > 500
    assert value(samples, "l2mesh_node_peer_bytes_total", peer=peer, role="member", direction="rx") > 0
    assert value(samples, "l2mesh_node_peer_packets_total", peer=peer, role="member", direction="tx") >= 2  # frame, keepalive
    peer_state = a.core.peers[b.node_id]
    assert value(samples, "l2mesh_node_peer_bytes_total", peer=peer, role="member", direction="tx") == peer_state.tx_bytes
    # a started the handshake to b (its first frame): completed on a's side, answered on b's.
    assert value(samples, "l2mesh_node_handshakes_total", event="completed") >= 2  # the controller's and b's
    assert value(samples, "l2mesh_node_handshakes_total", event="initiated") >= 2
    assert value(scrape(b, reactor), "l2mesh_node_handshakes_total", event="answered") >= 1
    assert value(samples, "l2mesh_node_handshakes_total", event="failed") == 0
    net = format_network_id(network_id)
    config = a.config()
    assert config is not None
    assert value(samples, "l2mesh_node_netconf_revision", network=net) == config.revision
    assert value(samples, "l2mesh_node_network_status", network=net, status="OK") == 1
    assert value(samples, "l2mesh_node_network_status", network=net, status="REQUESTING") == 0


def test_drops_by_reason_merge_the_core_the_reassembler_and_the_edge(world: World, reactor: Reactor) -> None:
    _, a, _ = two_members(world)
    a.receive(b"", ("198.18.50.2", 9993), world.now)
    a.receive(b"\xee" + bytes(40), ("198.18.50.2", 9993), world.now)
    core_drops = a.drops  # the core's and the reassembler's
    assert core_drops
    samples = scrape(a, reactor, edge_drops={"tap_queue_full": 3})
    for reason, count in core_drops.items():
        assert value(samples, "l2mesh_node_drops_total", reason=reason) == count
    assert value(samples, "l2mesh_node_drops_total", reason="tap_queue_full") == 3


def test_a_failed_handshake_is_counted(world: World, reactor: Reactor) -> None:
    _, a, b = two_members(world)
    world.down.add(b)
    a.send(a.frame_to(b))
    world.run(120.0)
    assert value(scrape(a, reactor), "l2mesh_node_handshakes_total", event="failed") >= 1


def test_reactor_tick_lateness_is_a_histogram_of_every_tick(reactor: Reactor) -> None:
    histogram = reactor.tick_lateness
    ticks = sum(histogram.counts)
    assert ticks >= 5  # 150 ms at a 10 ms tick
    member = Member(1)
    samples = scrape(member, reactor)
    assert value(samples, "l2mesh_node_reactor_tick_lateness_seconds_count") == ticks
    assert value(samples, "l2mesh_node_reactor_tick_lateness_seconds_bucket", le="+Inf") == ticks
    assert value(samples, "l2mesh_node_reactor_tick_lateness_seconds_sum") == pytest.approx(histogram.sum_s)
    assert value(samples, "l2mesh_node_reactor_internal_errors_total") == 0


def test_lateness_buckets_hold_values_up_to_and_including_their_bound() -> None:
    histogram = LatenessHistogram((0.001, 0.01))
    for late_s in (0.0, 0.001, 0.002, 0.01, 5.0):
        histogram.observe(late_s)
    assert histogram.cumulative() == [(0.001, 2), (0.01, 4), (float("inf"), 5)]
    assert histogram.sum_s == pytest.approx(5.013)


# -- the page server ------------------------------------------------------------------------------------------


async def http(port: int, request: bytes) -> bytes:
    """The server's whole answer to one request (what came before a reset, when it cut the client off)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    answer = b""
    async with stream:
        try:
            await stream.send_all(request)
            while chunk := await stream.receive_some(65536):
                answer += chunk
        except trio.BrokenResourceError:
            pass
    return answer


async def start_page(nursery: trio.Nursery, page: Callable[[], object]) -> int:
    listeners = await nursery.start(serve_page, ("127.0.0.1", 0), "/metrics", "text/plain; version=0.0.4", page)
    return int(listeners[0].socket.getsockname()[1])


async def test_the_page_server_answers_get_and_head_and_refuses_other_paths_and_methods() -> None:
    async def page() -> bytes:
        return b"l2mesh_up 1\n"

    async with trio.open_nursery() as nursery:
        port = await start_page(nursery, page)
        ok = await http(port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.0 200 OK\r\n") and ok.endswith(b"\r\n\r\nl2mesh_up 1\n")
        assert b"Content-Length: 12\r\n" in ok
        head = await http(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK") and head.endswith(b"\r\n\r\n")
        assert (await http(port, b"GET / HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 404")
        assert (await http(port, b"POST /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 405")
        assert (await http(port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.0 400")
        # A head that never ends is cut off unanswered, and the server goes on.
        assert await http(port, b"GET /metrics HTTP/1.0\r\n" + b"X: y\r\n" * (MAX_REQUEST_HEAD_BYTES // 4)) == b""
        assert (await http(port, b"GET /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 200")
        nursery.cancel_scope.cancel()


async def test_a_failing_page_is_a_500_and_the_server_keeps_serving() -> None:
    calls = []

    async def page() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug while building the page")
        return b"fine\n"

    async with trio.open_nursery() as nursery:
        port = await start_page(nursery, page)
        assert (await http(port, b"GET /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 500")
        assert (await http(port, b"GET /metrics HTTP/1.0\r\n\r\n")).endswith(b"fine\n")
        nursery.cancel_scope.cancel()


async def test_a_port_in_use_is_a_one_line_l2mesh_error() -> None:
    async def page() -> bytes:
        return b""

    async with trio.open_nursery() as nursery:
        port = await start_page(nursery, page)
        with pytest.raises(L2meshError, match=f"cannot serve metrics on 127.0.0.1:{port}: Address already in use"):
            await nursery.start(serve_page, ("127.0.0.1", port), "/metrics", "text/plain", page)
        nursery.cancel_scope.cancel()


async def test_node_metrics_served_over_http_parse_as_prometheus_text(world: World, reactor: Reactor) -> None:
    _, a, _ = two_members(world)

    async def on_core(function: Callable[[NodeCore], list[Metric]]) -> list[Metric]:
        return function(a.core)  # the daemon runs it on the reactor thread; here the core is the test's

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_node_metrics, ("127.0.0.1", 0), on_core, reactor, {})
        port = listeners[0].socket.getsockname()[1]
        answer = await http(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        nursery.cancel_scope.cancel()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: text/plain; version=" in head
    samples = samples_of(body.decode())
    assert value(samples, "l2mesh_node_peers", role="controller", path="direct") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_the_daemon_does_not_load_prometheus_client_unless_asked() -> None:
    """Issue 17 wants an idle daemon small: prometheus_client (and the metrics modules) come only with --metrics-listen."""
    probe = (
        "import sys, l2mesh.cli.node, l2mesh.edge.node.daemon\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(('prometheus_client', 'l2mesh.edge.node.metrics', "
        "'l2mesh.edge.metrics')))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
