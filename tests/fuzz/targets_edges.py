"""Fuzz targets at the edge's own doors: the web admin's form posts, the node's control socket, its metrics responder.

The web admin runs whole: the real Starlette app on the real controller of
a MeshWorld, logged in with a login link as `l2mesh-ctl web` does, every
form posted with the session's cookie and (but one time in ten) its CSRF
token, so the form parsing and the admin changes behind it run. The
control socket's request reading is the daemon's own (_read_request, on a
stream that hands the input over in pieces); what the commands do needs a
live daemon (a TAP device, a resolver, the packet thread), so the target
stops at the argument parsing the handlers begin with. The metrics
responder's head reading and answer need no socket: its stream is a stub.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import trio
from hypothesis import strategies as st

from l2mesh.edge.controller.api import build_app
from l2mesh.edge.controller.web.pages import SESSION_COOKIE
from l2mesh.edge.metrics_http import PageServer, read_head
from l2mesh.edge.node.control_server import BAD_REQUEST_ERRORS, _read_request
from l2mesh.errors import L2meshError
from l2mesh.identity import Identity
from l2mesh.ids import format_network_id, format_node_id, make_network_id, parse_network_id
from l2mesh.node.join_options import JoinOptions
from l2mesh.node.ping import resolve_node
from tests.fuzz import corpus
from tests.fuzz.targets import Target, json_bytes_like
from tests.fuzz.targets_cores import API_TOKEN, MeshTarget, _HarnessController, asgi_call, choose
from tests.fuzz.worlds import MeshWorld

HOST = b"127.0.0.1:9995"
CSRF_PATTERN = re.compile(rb'name="csrf" value="([^"]+)"')


def run_coroutine(coroutine: Any) -> Any:
    """A coroutine that awaits nothing real, run to its end without an event loop."""
    try:
        while True:
            coroutine.send(None)
    except StopIteration as done:
        return done.value


# -- the web admin ----------------------------------------------------------------------------------------


class WebForms(MeshTarget):
    """Form posts ('PATH' line, urlencoded body) to the web admin, logged in; any answer below 500."""

    name = "web.forms"
    reset_every = 500
    weight = 0.5  # a request renders a page or runs an admin change: slower than a packet

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        self.app = build_app(_HarnessController(mesh.controller), API_TOKEN, mesh.controller.node_id)
        self.cookie, self.csrf = self.log_in()
        nid, a, b = format_network_id(mesh.network_id), format_node_id(mesh.a.node_id), format_node_id(mesh.b.node_id)
        nowhere = format_network_id(make_network_id(mesh.controller.node_id, 0xFFFFFF))
        stranger = format_node_id(Identity.generate().node_id)
        net = f"/web/networks/{nid}"
        forms: list[tuple[str, dict[str, str]]] = [
            ("/web/networks", {"name": "lab2", "pools": "10.148.0.0/24\n10.148.1.0/24"}),
            (net, {"name": "lab", "pools": "10.147.17.0/24", "routes": "10.10.0.0/16@10.147.17.1, 0.0.0.0/0@10.147.17.2",
                   "dns_domain": "lab.l2mesh", "broadcast": "on", "private": "on", "multicast_limit": "32", "mtu": "2800",
                   "next": net}),
            (net, {"name": "", "pools": "", "routes": "", "dns_domain": "", "multicast_limit": "", "mtu": ""}),
            (f"{net}/rules", {"rules": corpus.RULE_TEXTS[0], "next": net}),
            (f"{net}/delete", {"confirm": "no"}),
            (f"/web/networks/{nowhere}/delete", {"confirm": "yes"}),
            (f"{net}/members", {"node_id": stranger, "next": f"{net}/members"}),
            (f"{net}/members/{a}", {"action": "save", "name": "a", "ips": "10.147.17.9, fd00::9", "tags": "guest\nplc",
                                    "bridge": "on", "next": f"{net}/members"}),
            (f"{net}/members/{b}", {"action": "deauthorize"}),
            (f"{net}/members/{b}", {"action": "authorize", "next": "//elsewhere.example"}),
            (f"{net}/members/{stranger}", {"action": "delete"}),
        ]
        self.paths = sorted({path.encode() for path, _ in forms})
        return [path.encode() + b"\n" + urlencode(fields).encode() for path, fields in forms]

    def route(self, line: bytes, data: bytes) -> bytes:
        """A mutated path, one time in four; else the form's path it came from, so the body's mutants reach a form."""
        if line in self.paths or choose(data, 4, 3) == 0:
            return line
        return max(self.paths, key=lambda path: (len(os.path.commonprefix([path, line])), -len(path)))

    def log_in(self) -> tuple[str, str]:
        """A login link from the API, taken by a browser: the session cookie, and the CSRF token a page carries."""
        _, _, body = asgi_call(self.app, "POST", "/api/v1/web/login-links", b"", [(b"authorization", f"Bearer {API_TOKEN}".encode())])
        _, headers, _ = asgi_call(self.app, "GET", json.loads(body)["path"], b"", [(b"host", HOST)])
        cookies = [value.decode() for name, value in headers if name == b"set-cookie" and value.startswith(SESSION_COOKIE.encode())]
        cookie = cookies[0].split(";")[0]
        _, _, page = asgi_call(self.app, "GET", "/web/", b"", [(b"host", HOST), (b"cookie", cookie.encode())])
        found = CSRF_PATTERN.search(page)
        assert found is not None, "the overview page carries no CSRF token"
        return cookie, found.group(1).decode()

    def counters(self, mesh: MeshWorld) -> Counter[str]:
        return Counter()

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        line, _, body = data.partition(b"\n")
        path = self.route(line, data).decode("latin-1")
        if not path.startswith("/web/") or path.startswith("/web/logout"):
            return "not_a_form"  # logging out would end the session every later input needs
        if choose(data, 10) != 0:
            body += b"&csrf=" + self.csrf.encode()  # the last field of a name wins: the token the page gave
        headers = [(b"host", HOST), (b"cookie", self.cookie.encode()), (b"content-type", b"application/x-www-form-urlencoded")]
        if choose(data, 3, 7) == 0:
            headers.append((b"origin", b"http://" + HOST))
        status, _, _ = asgi_call(self.app, "POST", path, body, headers)
        return f"status_{status}"

    def strategy(self) -> st.SearchStrategy[bytes]:
        paths = st.sampled_from([seed.partition(b"\n")[0] for seed in self.seeds])
        fields = st.sampled_from(["name", "pools", "routes", "dns_domain", "broadcast", "private", "multicast_limit", "mtu",
                                  "rules", "confirm", "node_id", "action", "ips", "tags", "bridge", "next", "csrf"])
        values = st.one_of(st.text(max_size=60), st.sampled_from(["save", "delete", "authorize", "yes", "on", "-1", "99999999999",
                                                                   "10.147.17.300/24", "/web/", "fd00::/200"]))
        bodies = st.lists(st.tuples(fields, values), max_size=8).map(lambda pairs: urlencode(pairs).encode())
        return st.builds(lambda path, body: path + b"\n" + body, paths, st.one_of(bodies, st.binary(max_size=200)))


# -- the node's control socket --------------------------------------------------------------------------------


class ChunkedStream:
    """The part of a trio stream _read_request and read_head use: the input in pieces of a size it chooses."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data = data
        self.piece = piece

    async def receive_some(self, max_bytes: int = 4096) -> bytes:
        chunk, self.data = self.data[: min(self.piece, max_bytes)], self.data[min(self.piece, max_bytes):]
        return chunk


class ControlRequest(Target):
    """A line on the node daemon's control socket: decoded, then the arguments its command's handler parses first.

    Handled: what serve_one turns into {"ok": false, "error": ...}: L2meshError and BAD_REQUEST_ERRORS.
    """

    name = "control.request"
    handled = (L2meshError, *BAD_REQUEST_ERRORS)

    def setup(self) -> list[bytes]:
        controller, member = Identity.generate(), Identity.generate()
        self.own_id = member.node_id
        network_id = make_network_id(controller.node_id, 1)
        self.configs = [corpus.network_config(network_id, member.node_id, [(member.public, "10.147.17.1/24", ("198.18.1.2", 9993)),
                                                                           (Identity.generate().public, "10.147.17.2/24", ("198.18.2.2", 9993))])]
        self.peer_id = format_node_id(self.configs[0].members[1].node_id)
        nid = format_network_id(network_id)
        requests: list[dict[str, Any]] = [
            {"command": "status"}, {"command": "networks"}, {"command": "rules", "network_id": nid},
            {"command": "join", "network_id": nid, "controller": "198.18.0.1:9994",
             "options": {"allow_managed": True, "allow_global": False, "allow_default": False, "allow_dns": True}},
            {"command": "join", "network_id": nid},
            {"command": "leave", "network_id": nid},
            {"command": "ping", "node": self.peer_id, "probe_timeout_s": 0.5},
            {"command": "ping", "node": "n2"}, {"command": "ping", "node": "10.147.17.2"},
        ]
        self.seeds = [json.dumps(request).encode() + b"\n" for request in requests]
        return self.seeds

    def run(self, data: bytes) -> str:
        request = trio.run(_read_request, ChunkedStream(data, 1 + choose(data, 4096)))  # type: ignore[arg-type]
        command = request["command"]
        if command in ("rules", "join", "leave"):
            parse_network_id(str(request.get("network_id")))
        if command == "join":
            JoinOptions.from_json(request.get("options"))
        if command == "ping":
            float(request.get("probe_timeout_s", 1.0))
            resolve_node(str(request.get("node")), self.configs, self.own_id)
        return f"command_{command if command in ('status', 'rules', 'join', 'leave', 'ping') else 'other'}"

    def strategy(self) -> st.SearchStrategy[bytes]:
        return json_bytes_like(self.seeds).map(lambda doc: doc + b"\n")


# -- the node's metrics responder -------------------------------------------------------------------------------


async def metrics_page() -> bytes:
    return b"l2mesh_up 1\n"


class MetricsRequest(Target):
    """A request head to the node's Prometheus responder, in pieces: read to its blank line, then answered."""

    name = "metrics.http"

    def setup(self) -> list[bytes]:
        self.server = PageServer("/metrics", "text/plain; version=0.0.4", metrics_page)
        return [b"GET /metrics HTTP/1.1\r\nHost: 198.18.1.2:9100\r\nAccept: */*\r\n\r\n", b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n",
                b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"GET / HTTP/1.1\n\n", b"GET /metrics\r\n\r\n"]

    def run(self, data: bytes) -> str:
        head = run_coroutine(read_head(ChunkedStream(data, 1 + choose(data, 2048))))  # type: ignore[arg-type]
        if head is None:
            return "closed_unanswered"
        answer: bytes = run_coroutine(self.server.answer(head))
        return f"status_{answer.split(b' ', 2)[1].decode()}"

    def strategy(self) -> st.SearchStrategy[bytes]:
        return st.builds(lambda method, target, version, rest: b"%s %s %s\r\n%s\r\n\r\n" % (method, target, version, rest),
                         st.sampled_from([b"GET", b"HEAD", b"POST", b"", b"get"]), st.sampled_from([b"/metrics", b"/", b"/metrics?a", b""]),
                         st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"", b"HTTP"]), st.binary(max_size=100))


def edge_targets() -> list[Target]:
    return [WebForms(), ControlRequest(), MetricsRequest()]

