"""The controller's metrics: `GET /metrics` on the admin API, in Prometheus text format.

ControllerCollector reads the core's live state at each scrape, on the
reactor thread that owns it: members by state per network, netconf
requests, joins and pushes, relayed bytes, drops by reason, handshakes.
AdminMetrics serves them, with the admin API's own request latencies (a
histogram on a registry of its own per app, so several apps in one process
never share or clash).

Who may read: any request from a loopback address without the token (a
Prometheus or node_exporter-style scraper on the controller host), any other
only with `Authorization: Bearer <admin token>`, as for the rest of the API.
A reverse proxy on the same host makes every request look local, so with
`serve --behind-proxy` /metrics always needs the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from l2mesh.controller.core import ControllerCore
from l2mesh.edge.metrics_text import CONTENT_TYPE_LATEST, exposition
from l2mesh.ids import format_network_id

T = TypeVar("T")
Read = Callable[[Callable[[ControllerCore], T]], Awaitable[T]]  # the server's read(): function(core) on the reactor thread

HANDSHAKE_EVENTS = ("initiated", "completed", "answered", "failed")
UNMATCHED_ROUTE = "unmatched"  # the route label of requests no route took (404s): their raw paths would be unbounded


class ControllerCollector:
    """A prometheus_client Collector over a ControllerCore; collect() only on the core's (reactor) thread."""

    def __init__(self, core: ControllerCore) -> None:
        self.core = core

    def collect(self) -> Iterator[Metric]:
        core = self.core
        directory = core.directory
        info = GaugeMetricFamily("l2mesh_controller_network_info", "Networks of this controller (1 each), with their names",
                                 labels=["network", "name"])
        members = GaugeMetricFamily(
            "l2mesh_controller_members",
            "Members by state: authorized, or unauthorized (asked to join and waits for an admin, or was deauthorized)",
            labels=["network", "state"],
        )
        online = GaugeMetricFamily("l2mesh_controller_members_online", "Authorized members with a session with this controller",
                                   labels=["network"])
        revision = GaugeMetricFamily("l2mesh_controller_netconf_revision", "The revision of each network's config",
                                     labels=["network"])
        pushes = CounterMetricFamily("l2mesh_controller_netconf_pushes", "Configs pushed to online members (one per member reached)",
                                     labels=["network"])
        connected = core.clients.by_node
        for network_id, network in directory.networks.items():
            label = format_network_id(network_id)
            info.add_metric([label, network.name], 1)
            listed = directory.members(network_id)
            authorized = [m for m in listed if m.authorized]
            members.add_metric([label, "authorized"], len(authorized))
            # Unauthorized and never heard of (identity None) is no member at all: an admin's leftover.
            members.add_metric([label, "unauthorized"], sum(1 for m in listed if not m.authorized and m.identity is not None))
            online.add_metric([label], sum(1 for m in authorized if m.node_id in connected))
            revision.add_metric([label], network.revision)
            pushes.add_metric([label], core.pushes[network_id])
        yield from (info, members, online, revision, pushes)

        requests = CounterMetricFamily("l2mesh_controller_netconf_requests", "Config requests from members with a valid proof")
        requests.add_metric([], core.requests["netconf"])
        yield requests
        joins = CounterMetricFamily("l2mesh_controller_join_requests", "Joins: a node's first config request for a network (pre-authorized or not)")
        joins.add_metric([], core.requests["join"])
        yield joins
        yield _by_label("l2mesh_controller_sent", "Messages sent to members, by kind", "kind", core.sent)
        yield _by_label("l2mesh_controller_drops", "Packets and requests dropped, by reason (relay_*: relayed traffic)",
                        "reason", core.drops)
        yield _single(CounterMetricFamily, "l2mesh_controller_relay_bytes", "Bytes relayed between members", core.relay.relayed_bytes)
        yield _single(CounterMetricFamily, "l2mesh_controller_relay_packets", "Packets relayed between members",
                      core.relay.relayed_packets)
        yield _single(GaugeMetricFamily, "l2mesh_controller_sessions", "Noise sessions held (members, roots, not yet named)",
                      len(core.clients.table.sessions))
        handshakes = core.clients.table.handshakes
        yield _by_label("l2mesh_controller_handshakes", "Noise handshakes by event", "event",
                        {event: handshakes[event] for event in HANDSHAKE_EVENTS})


def _by_label(name: str, documentation: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _single(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str, documentation: str, value: float) -> Metric:
    family = kind(name, documentation)
    family.add_metric([], value)
    return family


def is_loopback_host(host: str) -> bool:
    """host is this machine's loopback: IPv4, IPv6, IPv4 mapped into IPv6, or the name localhost."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_loopback(request: Request) -> bool:
    """The request came from this host's loopback."""
    return request.client is not None and request.client.host != "localhost" and is_loopback_host(request.client.host)


class AdminMetrics:
    """`GET /metrics` for the admin API app, and the timing of that app's requests."""

    def __init__(self, read: Read[list[Metric]], token: str, trust_loopback: bool = True) -> None:
        """trust_loopback=False: the token always (behind a reverse proxy on this host every request is local)."""
        self.read = read
        self.token = token
        self.trust_loopback = trust_loopback
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "l2mesh_controller_admin_request_duration_seconds", "Admin API requests by method and route: time to answer",
            ["method", "route"], registry=self.registry,
        )

    def may_read(self, request: Request) -> bool:
        if self.trust_loopback and is_loopback(request):
            return True
        supplied = request.headers.get("authorization", "")
        return hmac.compare_digest(supplied.encode(), f"Bearer {self.token}".encode())

    async def endpoint(self, request: Request) -> Response:
        if not self.may_read(request):
            return JSONResponse({"error": "missing or wrong API token (only loopback may read /metrics without it)"},
                                status_code=401)
        families = await self.read(lambda core: list(ControllerCollector(core).collect()))
        return Response(exposition(families, self.registry), media_type=CONTENT_TYPE_LATEST)

    def timed(self, app: Starlette) -> Starlette:
        """The app, with every request's time to answer in the latency histogram (by route template, not path)."""
        app.add_middleware(RequestTimer, latency=self.latency)
        return app


class RequestTimer:
    """ASGI middleware: observes each HTTP request's duration under its method and the route that took it."""

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            # The router leaves the route it chose in the (shared) scope.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - started_s)
