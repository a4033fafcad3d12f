"""The web admin's HTTP side: pages, their forms, the live-update stream, and the API calls `l2mesh-ctl web`/`admin` use.

Served by the admin API's Starlette app under /web (same address, same
process). Every page needs a session cookie (HttpOnly, SameSite=Strict,
Secure over TLS); every POST also needs the session's CSRF token in its
form and, from a browser, an Origin (or Referer) naming this host. Changes
go through the same admin functions, storage writer and core as the JSON
API's, so a form does exactly what the matching API call does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from l2mesh.controller import admin
from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.model import NotFound, ValidationError
from l2mesh.controller.storage import Storage
from l2mesh.edge.controller.web import auth, forms, views
from l2mesh.edge.controller.web.security import SecurityHeaders, safe_next, same_origin
from l2mesh.errors import InvalidId, L2meshError
from l2mesh.ratelimit import KeyedRateLimiter, TokenBucket
from l2mesh.ids import format_network_id, format_node_id, parse_network_id, parse_node_id
from l2mesh.rules.syntax import MAX_RULES_TEXT_BYTES

T = TypeVar("T")
log = logging.getLogger("l2mesh.controller.web")

HERE = Path(__file__).parent
SESSION_COOKIE = "l2mesh_session"
MAX_FORM_BYTES = MAX_RULES_TEXT_BYTES * 4  # the rules form, percent-encoded
MAX_COOKIE_CHARS = 128
EVENT_POLL_S = 1.0  # how often the live stream compares what the pages show
EVENT_KEEPALIVE_S = 15.0  # a comment line now and then keeps proxies from closing a quiet stream
EVENT_SESSION_CHECK_S = 60.0  # a stream ends within this long of its session (logout, expiry, admin removed)
# Password guessing: each guess costs an argon2 hash (64 MiB, tens of ms). Per admin name a burst, then one
# every 5 s; across all names a bound on the CPU and memory guesses may take; at most two hashes at a time.
PASSWORD_TRIES_PER_NAME_PER_S, PASSWORD_TRIES_PER_NAME_BURST = 0.2, 5
PASSWORD_TRIES_PER_S, PASSWORD_TRIES_BURST = 2.0, 10
ARGON2_AT_ONCE = 2


class Controller(Protocol):
    """What the web admin needs of the controller (api.Controller, which imports this module)."""

    async def read(self, function: Callable[[ControllerCore], T]) -> T: ...
    async def change(self, perform: Callable[[Storage], Committed]) -> Any: ...


class WebAdmin:
    """The pages and their routes; one per admin API app."""

    def __init__(self, controller: Controller, controller_id: int, cookie_secure: bool = False) -> None:
        self.controller = controller
        self.controller_id = controller_id
        self.cookie_secure = cookie_secure  # also over plain HTTP: behind a TLS-terminating proxy
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["ago"] = ago
        self.templates.env.filters["dash"] = dash
        self._tries_per_name = KeyedRateLimiter(PASSWORD_TRIES_PER_NAME_PER_S, PASSWORD_TRIES_PER_NAME_BURST)
        self._tries = TokenBucket(PASSWORD_TRIES_PER_S, PASSWORD_TRIES_BURST)
        self._argon2_slots: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    async def argon2(self, function: Callable[..., T], *args: Any) -> T:
        """function(*args) on a worker thread, at most ARGON2_AT_ONCE at a time."""
        if self._argon2_slots is None:
            self._argon2_slots = anyio.CapacityLimiter(ARGON2_AT_ONCE)
        return await anyio.to_thread.run_sync(function, *args, limiter=self._argon2_slots)

    # -- plumbing ---------------------------------------------------------------------------------------
    async def stored(self, function: Callable[[auth.WebStore], T]) -> T:
        """function(storage) on the controller's storage writer (the one thread that touches the database)."""
        results: list[T] = []

        def perform(storage: Storage) -> Committed:
            results.append(function(cast(auth.WebStore, storage)))
            return Committed()  # nothing for the core: the web tables are not its directory

        await self.controller.change(perform)
        return results[0]

    async def session_of(self, request: Request) -> auth.WebSession | None:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        return await self.stored(lambda store: auth.find_session(store, cookie, time.time()))

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def set_session_cookie(self, response: Response, session: auth.WebSession) -> None:
        response.set_cookie(
            SESSION_COOKIE, session.token, max_age=int(auth.SESSION_TTL_S), path="/web",
            httponly=True, samesite="strict", secure=self.cookie_secure,
        )

    def page(self, function: Callable[[Request, auth.WebSession], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """A GET page: the login page first without a session."""

        async def endpoint(request: Request) -> Response:
            session = await self.session_of(request)
            if session is None:
                return RedirectResponse("/web/login", status_code=303)
            try:
                return await function(request, session)
            except (NotFound, InvalidId) as exc:
                return self.render(request, "error.html", 404, session=session, message=str(exc), back="/web/")

        return endpoint

    def action(
        self, function: Callable[[Request, auth.WebSession, dict[str, str]], Awaitable[str]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A form POST: same origin, a session, its CSRF token; then the change, and back to a page (303)."""

        async def endpoint(request: Request) -> Response:
            if not same_origin(request):
                return forbidden("cross-site request refused")
            session = await self.session_of(request)
            if session is None:
                return forbidden("not logged in (or the session ended): log in again")
            try:
                form = await read_form(request)
            except ValidationError as exc:
                return forbidden(str(exc), 400)
            if not auth.csrf_matches(session, form.get("csrf", "")):
                return forbidden("the form's CSRF token is missing or wrong: reload the page and try again")
            back = safe_next(form.get("next", ""))
            try:
                return RedirectResponse(await function(request, session, form), status_code=303)
            except (NotFound, InvalidId) as exc:
                return self.render(request, "error.html", 404, session=session, message=str(exc), back=back)
            except ValidationError as exc:
                return self.render(request, "error.html", 400, session=session, message=str(exc), back=back)
            except L2meshError as exc:
                return self.render(request, "error.html", 409, session=session, message=str(exc), back=back)

        return endpoint

    # -- login and logout -------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        link_token = request.query_params.get("token")
        if link_token is None:
            return self.render(request, "login.html", session=None, error=None)
        if len(link_token) > MAX_COOKIE_CHARS:
            session = None
        else:
            session = await self.stored(lambda store: auth.exchange_login_link(store, link_token, time.time()))
        if session is None:
            error = "This login link was used already or has expired: run `l2mesh-ctl web` for a new one."
            return self.render(request, "login.html", 403, session=None, error=error)
        log.info("web admin: logged in with a login link")
        response = RedirectResponse("/web/", status_code=303)
        self.set_session_cookie(response, session)
        return response

    async def login(self, request: Request) -> Response:
        if not same_origin(request):
            return forbidden("cross-site request refused")
        try:
            form = await read_form(request)
        except ValidationError as exc:
            return forbidden(str(exc), 400)
        name, password = form.get("name", ""), form.get("password", "")
        now = time.monotonic()
        if not (self._tries_per_name.take(name[:64], now) and self._tries.take(now)):
            log.warning("web admin: password login for %r refused: too many tries", name[:40])
            return self.render(request, "login.html", 429, session=None, error="Too many tries: wait a minute.")
        stored_hash = await self.stored(lambda store: store.web_admin_hash(name)) if auth.ADMIN_NAME_PATTERN.fullmatch(name) else None
        if not await self.argon2(auth.password_matches, stored_hash, password):
            log.warning("web admin: failed password login for %r", name[:40])
            return self.render(request, "login.html", 403, session=None, error="Wrong name or password.")
        session = await self.stored(lambda store: auth.open_session(store, name, time.time()))
        log.info("web admin: %s logged in", name)
        response = RedirectResponse("/web/", status_code=303)
        self.set_session_cookie(response, session)
        return response

    async def logout(self, request: Request, session: auth.WebSession, form: dict[str, str]) -> str:
        await self.stored(lambda store: auth.close_session(store, session, time.time()))
        return "/web/login"

    # -- pages ------------------------------------------------------------------------------------------
    async def overview_page(self, request: Request, session: auth.WebSession) -> Response:
        networks = await self.controller.read(views.overview)
        return self.render(request, "overview.html", session=session, networks=networks, here="/web/")

    async def network_page(self, request: Request, session: auth.WebSession) -> Response:
        nid = parse_network_id(request.path_params["network_id"])
        network = await self.controller.read(lambda core: views.one_network(core, nid))
        return self.render(request, "network.html", session=session, network=network, here=request.url.path)

    async def members_page(self, request: Request, session: auth.WebSession) -> Response:
        nid = parse_network_id(request.path_params["network_id"])
        network = await self.controller.read(lambda core: views.one_network(core, nid))
        return self.render(request, "members.html", session=session, network=network, here=request.url.path)

    # -- changes ----------------------------------------------------------------------------------------
    async def create_network(self, request: Request, session: auth.WebSession, form: dict[str, str]) -> str:
        doc = forms.new_network_doc(form)
        network = await self.controller.change(lambda storage: admin.create_network(storage, self.controller_id, doc))
        log.info("web admin %s: created network %s (%s)", session.who, network["id"], network["name"])
        return f"/web/networks/{network['id']}"

    async def update_network(self, request: Request, session: auth.WebSession, form: dict[str, str]) -> str:
        nid, doc = parse_network_id(request.path_params["network_id"]), forms.network_settings_doc(form)
        await self.controller.change(lambda storage: admin.update_network(storage, nid, doc))
        log.info("web admin %s: network %s settings changed", session.who, format_network_id(nid))
        return f"/web/networks/{format_network_id(nid)}"

    async def set_rules(self, request: Request, session: auth.WebSession, form: dict[str, str]) -> str:
        nid, doc = parse_network_id(request.path_params["network_id"]), {"rules": form.get("rules", "")}
        await self.controller.change(lambda storage: admin.set_rules(storage, nid, doc))
        log.info("web admin %s: network %s flow rules set", session.who, format_network_id(nid))
        return f"/web/networks/{format_network_id(nid)}"

    async def delete_network(self, request: Request, session: auth.WebSession, form: dict[str, str]) -> str:
        nid = parse_network_id(request.path_params["network_id"])
        if form.get("confirm") != "yes":
            raise ValidationError("tick the box to confirm deleting the network and all its members")
        await self.controller.change(lambda storage: admin.delete_network(storage, nid))
        log.info("web admin %s: network %s deleted", session.who, format_network_id(nid))
        return "/web/"

    async def add_member(self, request: Request, session: auth.WebSession, form: dict[str, str]) -> str:
        """Authorize a node before it asks (its id from its owner)."""
        nid, mid = parse_network_id(request.path_params["network_id"]), parse_node_id(form.get("node_id", "").strip())
        await self.controller.change(lambda storage: admin.update_member(storage, nid, mid, {"authorized": True}, time.time()))
        log.info("web admin %s: member %s authorized in %s", session.who, format_node_id(mid), format_network_id(nid))
        return safe_next(form.get("next", ""), f"/web/networks/{format_network_id(nid)}/members")

    async def change_member(self, request: Request, session: auth.WebSession, form: dict[str, str]) -> str:
        nid, mid = parse_network_id(request.path_params["network_id"]), parse_node_id(request.path_params["node_id"])
        what = form.get("action", "")
        if what == "delete":
            await self.controller.change(lambda storage: admin.delete_member(storage, nid, mid))
        else:
            docs = {"authorize": {"authorized": True}, "deauthorize": {"authorized": False}}
            doc = docs.get(what) or (forms.member_details_doc(form) if what == "save" else None)
            if doc is None:
                raise ValidationError(f"unknown member action {what[:20]!r}")
            await self.controller.change(lambda storage: admin.update_member(storage, nid, mid, doc, time.time()))
        log.info("web admin %s: member %s in %s: %s", session.who, format_node_id(mid), format_network_id(nid), what)
        return safe_next(form.get("next", ""), f"/web/networks/{format_network_id(nid)}/members")

    # -- live updates -----------------------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        """Server-sent events: `change` with the ids of the networks whose pages changed, within EVENT_POLL_S."""
        session = await self.session_of(request)
        if session is None:
            return forbidden("not logged in")
        return StreamingResponse(
            self._event_stream(session), media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},  # nginx: pass each event on at once
        )

    async def _event_stream(self, session: auth.WebSession) -> AsyncIterator[str]:
        last = await self.controller.read(views.fingerprint)
        yield "retry: 3000\n\n"
        quiet_s = checked_s = 0.0
        while True:
            await anyio.sleep(EVENT_POLL_S)
            quiet_s += EVENT_POLL_S
            checked_s += EVENT_POLL_S
            if checked_s >= EVENT_SESSION_CHECK_S:
                checked_s = 0.0
                if await self.stored(lambda store: auth.find_session(store, session.token, time.time())) is None:
                    return
            now = await self.controller.read(views.fingerprint)
            changed = sorted(nid for nid in now.keys() | last.keys() if now.get(nid) != last.get(nid))
            last = now
            if changed:
                quiet_s = 0.0
                yield f"event: change\ndata: {json.dumps({'networks': changed})}\n\n"
            elif quiet_s >= EVENT_KEEPALIVE_S:
                quiet_s = 0.0
                yield ": keepalive\n\n"

    # -- for `l2mesh-ctl web` and `l2mesh-ctl admin` (bearer-token API) ----------------------------------
    async def api_login_link(self, request: Request) -> Any:
        token = await self.stored(lambda store: auth.mint_login_link(store, time.time()))
        return {"path": f"/web/login?token={token}", "expires_in_s": auth.LOGIN_LINK_TTL_S}

    async def api_list_admins(self, request: Request) -> Any:
        admins = await self.stored(lambda store: store.list_web_admins())
        return [{"name": name, "created": created_s} for name, created_s in admins]

    async def api_set_admin(self, request: Request) -> Any:
        name = auth.check_admin_name(request.path_params["name"])
        try:
            doc = json.loads(await request.body() or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
            raise ValidationError("request body is not valid JSON") from None
        password = doc.get("password") if isinstance(doc, dict) else None
        if not isinstance(password, str):
            raise ValidationError('give the password as {"password": TEXT}')
        password_hash = await self.argon2(auth.hash_password, password)
        created = await self.stored(lambda store: store.set_web_admin(name, password_hash, time.time()))
        log.info("web admin %s: %s", name, "added" if created else "password changed")
        return {"name": name, "created": created}

    async def api_remove_admin(self, request: Request) -> Any:
        name = auth.check_admin_name(request.path_params["name"])
        if not await self.stored(lambda store: store.remove_web_admin(name)):
            raise NotFound(f"no admin {name}")
        log.info("web admin %s: removed (and logged out)", name)
        return None

    # -- routes -------------------------------------------------------------------------------------------
    def api_routes(self, prefix: str, handler: Callable[..., Callable[[Request], Awaitable[Response]]]) -> list[BaseRoute]:
        """The bearer-token calls, wrapped by the JSON API's own handler (its auth and error mapping)."""
        return [
            Route(f"{prefix}/web/login-links", handler(self.api_login_link, 201), methods=["POST"]),
            Route(f"{prefix}/web/admins", handler(self.api_list_admins), methods=["GET"]),
            Route(f"{prefix}/web/admins/{{name}}", handler(self.api_set_admin), methods=["PUT"]),
            Route(f"{prefix}/web/admins/{{name}}", handler(self.api_remove_admin), methods=["DELETE"]),
        ]

    def mount(self) -> Mount:
        """The pages, under /web."""
        net = "/networks/{network_id}"
        routes: list[BaseRoute] = [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.action(self.logout), methods=["POST"]),
            Route("/", self.page(self.overview_page), methods=["GET"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/networks", self.action(self.create_network), methods=["POST"]),
            Route(net, self.page(self.network_page), methods=["GET"]),
            Route(net, self.action(self.update_network), methods=["POST"]),
            Route(f"{net}/rules", self.action(self.set_rules), methods=["POST"]),
            Route(f"{net}/delete", self.action(self.delete_network), methods=["POST"]),
            Route(f"{net}/members", self.page(self.members_page), methods=["GET"]),
            Route(f"{net}/members", self.action(self.add_member), methods=["POST"]),
            Route(f"{net}/members/{{node_id}}", self.action(self.change_member), methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
        ]
        app = Starlette(routes=routes, exception_handlers={L2meshError: storage_failed})
        app.add_middleware(SecurityHeaders)
        return Mount("/web", app=app)


async def read_form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ValidationError("expected a form (application/x-www-form-urlencoded)")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise ValidationError("the form is too large")
    return forms.parse_form(bytes(raw))


async def storage_failed(request: Request, exc: Exception) -> Response:
    """What escapes a page's own handling is the storage failing (PostgreSQL unreachable): one line, not a 500."""
    log.warning("web admin: %s %s: %s", request.method, request.url.path, exc)
    return forbidden(f"the controller's storage failed: {exc}", 503)


def forbidden(message: str, status: int = 403) -> Response:
    """A refusal as one plain line (no page: the asker has no session, or came from elsewhere)."""
    return Response(message + "\n", status_code=status, media_type="text/plain")


def ago(timestamp: float | None) -> str:
    """Seconds, minutes, hours ago; a date beyond a day; '—' for never."""
    if timestamp is None:
        return "—"
    seconds = max(0.0, time.time() - timestamp)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def dash(value: Any) -> Any:
    """'—' where a value is unknown or empty."""
    return "—" if value is None or value == "" or value == [] else value
