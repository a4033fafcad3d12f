"""The admin HTTP+JSON API (starlette), bound to loopback by default, guarded by a bearer token.

Handlers validate nothing themselves. Reads are views of the controller
core's directory (on its reactor thread); changes go to l2mesh.controller.admin
on the storage writer thread, which validates and commits them, then to the
core, which applies and pushes them; every error becomes a 4xx with
{"error": "<one line>"}.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from l2mesh.controller import admin
from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.model import NotFound, ValidationError
from l2mesh.controller.storage import Storage
from l2mesh.edge.controller.body_limit import BodyLimit
from l2mesh.edge.controller.metrics import AdminMetrics
from l2mesh.edge.controller.web.pages import WebAdmin
from l2mesh.errors import InvalidId, L2meshError
from l2mesh.ids import format_network_id, parse_network_id, parse_node_id

T = TypeVar("T")
API_PREFIX = "/api/v1"
log = logging.getLogger("l2mesh.controller")


class Controller(Protocol):
    async def read(self, function: Callable[[ControllerCore], T]) -> T:
        """function(core) on the reactor thread."""
        ...

    async def change(self, perform: Callable[[Storage], Committed]) -> Any:
        """perform(storage) on the storage writer, then applied by the core; the core's answer."""
        ...


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(
    controller: Controller, token: str, controller_id: int, secure_cookies: bool = False, behind_proxy: bool = False
) -> Starlette:
    """secure_cookies: the web admin's session cookie only over HTTPS (served with TLS, or behind a TLS proxy).

    behind_proxy: requests arrive through a reverse proxy, so none counts as local (see metrics.py)."""
    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
            raise ValidationError("request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise ValidationError("request body must be a JSON object")
        return doc

    def handler(function: Callable[[Request], Awaitable[Any]], status: int = 200) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            supplied = request.headers.get("authorization", "")
            if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
                return error(401, "missing or wrong API token")
            try:
                result = await function(request)
            except NotFound as exc:
                return error(404, str(exc))
            except (ValidationError, InvalidId) as exc:
                return error(400, str(exc))
            except L2meshError as exc:
                return error(409, str(exc))
            if result is None:
                return Response(status_code=204)
            return JSONResponse(result, status_code=status)

        return endpoint

    def network_id(request: Request) -> int:
        return parse_network_id(request.path_params["network_id"])

    def node_id(request: Request) -> int:
        return parse_node_id(request.path_params["node_id"])

    async def status(request: Request) -> Any:
        return await controller.read(lambda core: core.status())

    async def list_networks(request: Request) -> Any:
        return await controller.read(lambda core: core.list_networks())

    async def create_network(request: Request) -> Any:
        doc = await body(request)
        return await controller.change(lambda storage: admin.create_network(storage, controller_id, doc))

    async def get_network(request: Request) -> Any:
        nid = network_id(request)
        return await controller.read(lambda core: core.get_network(nid))

    async def update_network(request: Request) -> Any:
        nid, doc = network_id(request), await body(request)
        return await controller.change(lambda storage: admin.update_network(storage, nid, doc))

    async def get_rules(request: Request) -> Any:
        nid = network_id(request)
        return await controller.read(lambda core: core.get_rules(nid))

    async def set_rules(request: Request) -> Any:
        nid, doc = network_id(request), await body(request)
        # Logged on arrival too: who changed what when, and the moment members' timings count from.
        log.info("network %s: flow rules change requested", format_network_id(nid))
        await controller.change(lambda storage: admin.set_rules(storage, nid, doc))
        rules = await controller.read(lambda core: core.get_rules(nid))
        log.info("network %s: %d flow rules set, revision %d, pushed to online members",
                 rules["id"], len(rules["rules"]), rules["revision"])
        return rules

    async def delete_network(request: Request) -> Any:
        nid = network_id(request)
        await controller.change(lambda storage: admin.delete_network(storage, nid))

    async def list_members(request: Request) -> Any:
        nid = network_id(request)
        return await controller.read(lambda core: core.list_members(nid))

    async def get_member(request: Request) -> Any:
        nid, mid = network_id(request), node_id(request)
        return await controller.read(lambda core: core.get_member(nid, mid))

    async def update_member(request: Request) -> Any:
        nid, mid, doc = network_id(request), node_id(request), await body(request)
        return await controller.change(lambda storage: admin.update_member(storage, nid, mid, doc, time.time()))

    async def delete_member(request: Request) -> Any:
        nid, mid = network_id(request), node_id(request)
        await controller.change(lambda storage: admin.delete_member(storage, nid, mid))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, f"no such API path {request.url.path}")

    async def bad_method(request: Request, exc: Exception) -> Response:
        return error(405, f"method {request.method} not allowed on {request.url.path}")

    # Prometheus text; loopback reads it without the token, anyone else with it (metrics.py says why).
    metrics = AdminMetrics(controller.read, token, trust_loopback=not behind_proxy)
    p = API_PREFIX
    routes = [
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route(f"{p}/status", handler(status), methods=["GET"]),
        Route(f"{p}/networks", handler(list_networks), methods=["GET"]),
        Route(f"{p}/networks", handler(create_network, 201), methods=["POST"]),
        Route(f"{p}/networks/{{network_id}}", handler(get_network), methods=["GET"]),
        Route(f"{p}/networks/{{network_id}}", handler(update_network), methods=["PATCH"]),
        Route(f"{p}/networks/{{network_id}}", handler(delete_network), methods=["DELETE"]),
        Route(f"{p}/networks/{{network_id}}/rules", handler(get_rules), methods=["GET"]),
        Route(f"{p}/networks/{{network_id}}/rules", handler(set_rules), methods=["PUT"]),
        Route(f"{p}/networks/{{network_id}}/members", handler(list_members), methods=["GET"]),
        Route(f"{p}/networks/{{network_id}}/members/{{node_id}}", handler(get_member), methods=["GET"]),
        Route(f"{p}/networks/{{network_id}}/members/{{node_id}}", handler(update_member), methods=["PATCH"]),
        Route(f"{p}/networks/{{network_id}}/members/{{node_id}}", handler(delete_member), methods=["DELETE"]),
    ]
    # The web admin (issue 15): its pages under /web, and the calls `l2mesh-ctl web` and `admin` make.
    web = WebAdmin(controller, controller_id, secure_cookies)
    served: list[BaseRoute] = [*routes, *web.api_routes(p, handler), web.mount()]
    # Bodies are bounded before anything reads them (body_limit.py): 413 past MAX_BODY_BYTES.
    app = Starlette(routes=served, exception_handlers={404: not_found, 405: bad_method}, middleware=[Middleware(BodyLimit)])
    return metrics.timed(app)
