"""The web admin's pages and forms (l2mesh.edge.controller.web) through the admin API's app, in process: a real
controller core and SQLite storage, no sockets."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from l2mesh.cli import ctl
from l2mesh.controller import admin
from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.directory import Directory
from l2mesh.controller.model import Member
from l2mesh.controller.storage import Storage
from l2mesh.edge.controller.api import build_app
from l2mesh.edge.controller.server import ServeOptions
from l2mesh.edge.controller.sqlite_storage import SqliteStorage
from l2mesh.edge.controller.web import auth, forms, pages, security
from l2mesh.errors import L2meshError, StateError
from l2mesh.identity import Identity
from l2mesh.ids import parse_network_id

T = TypeVar("T")
TOKEN = "t" * 32
BASE = "http://testserver"


class NoTransmit:
    def send_datagram(self, data: bytes | memoryview, address: tuple[str, int]) -> None:
        pass

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: tuple[str, int]) -> None:
        pass


class InProcessController:
    """The server's read/change, without its threads: the same core and storage, called in turn."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.core = ControllerCore(Identity.generate(), Directory.load(storage), NoTransmit())

    async def read(self, function: Callable[[ControllerCore], T]) -> T:
        return function(self.core)

    async def change(self, perform: Callable[[Storage], Committed]) -> Any:
        return self.core.committed(perform(self.storage))


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its smallest cost: the same code path, milliseconds instead of a second per hash on a busy box."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[InProcessController]:
    storage = SqliteStorage(tmp_path / "controller.db")
    yield InProcessController(storage)
    storage.close()


def client_for(controller: InProcessController, secure_cookies: bool = False) -> TestClient:
    app = build_app(controller, TOKEN, controller.core.node_id, secure_cookies=secure_cookies)
    return TestClient(app, base_url=BASE, follow_redirects=False)


def logged_in(controller: InProcessController) -> TestClient:
    client = client_for(controller)
    link = client.post("/api/v1/web/login-links", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert client.get(link["path"]).status_code == 303
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def create_network(client: TestClient, name: str = "lab", pools: str = "10.147.17.0/24") -> str:
    csrf = csrf_of(client.get("/web/").text)
    response = client.post("/web/networks", data={"csrf": csrf, "name": name, "pools": pools})
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def test_pages_need_a_session_and_the_login_link_gives_one_in_a_strict_httponly_cookie(controller: InProcessController) -> None:
    client = client_for(controller)
    assert client.get("/web/").headers["location"] == "/web/login"
    assert client.post("/api/v1/web/login-links").status_code == 401  # minting one takes the API token
    link = client.post("/api/v1/web/login-links", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert link["expires_in_s"] == auth.LOGIN_LINK_TTL_S
    response = client.get(link["path"])
    assert (response.status_code, response.headers["location"]) == (303, "/web/")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/web" in cookie and "secure" not in cookie
    assert client.get("/web/").status_code == 200
    assert client_for(controller).get(link["path"]).status_code == 403  # spent


def test_over_https_the_cookie_is_secure(controller: InProcessController) -> None:
    client = client_for(controller, secure_cookies=True)
    link = client.post("/api/v1/web/login-links", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert "secure" in client.get(link["path"]).headers["set-cookie"].lower()


def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(controller: InProcessController) -> None:
    client = logged_in(controller)
    network_id = create_network(client)
    for path in ("/web/", f"/web/networks/{network_id}", f"/web/networks/{network_id}/members", "/web/login"):
        response = client.get(path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), f"inline script on {path}"
        assert not re.search(r"\sstyle=|<style|\son\w+=", response.text), f"inline style or handler on {path}"
    assert client.get("/web/static/admin.css").status_code == 200


def test_forms_change_networks_as_the_api_does(controller: InProcessController) -> None:
    client = logged_in(controller)
    network_id = create_network(client, pools="10.147.17.0/24")
    page = client.get(f"/web/networks/{network_id}")
    settings = {
        "csrf": csrf_of(page.text), "name": "plant", "pools": "10.147.17.0/24\n10.147.18.0/24", "routes": "198.19.200.0/24@10.147.17.3",
        "dns_domain": "plant.example", "mtu": "1400", "multicast_limit": "", "private": "on",
    }
    assert client.post(f"/web/networks/{network_id}", data=settings).status_code == 303
    rules = {"csrf": settings["csrf"], "rules": "drop tcp dport 22\n"}
    assert client.post(f"/web/networks/{network_id}/rules", data=rules).status_code == 303
    stored = controller.storage.get_network(parse_network_id(network_id))
    assert (stored.name, stored.pools, [r.spec() for r in stored.routes], stored.dns_domain) == (
        "plant", ("10.147.17.0/24", "10.147.18.0/24"), ["198.19.200.0/24@10.147.17.3"], "plant.example")
    assert (stored.mtu_bytes, stored.multicast_limit, stored.broadcast, stored.private) == (1400, None, False, True)
    assert len(stored.rules.rules) == 1
    shown = client.get(f"/web/networks/{network_id}").text
    assert "198.19.200.0/24@10.147.17.3" in shown and "drop tcp dport 22" in shown
    bad = client.post(f"/web/networks/{network_id}", data={**settings, "pools": "not-a-cidr"})
    assert bad.status_code == 400 and 'class="error"' in bad.text
    assert controller.storage.get_network(parse_network_id(network_id)).pools == stored.pools


def asked(controller: InProcessController, network_id: str) -> Member:
    """A node that asked to join (as MemberAsked leaves it): known keys, not authorized."""
    node = Identity.generate()
    member = Member(parse_network_id(network_id), node.node_id, identity=node.public, created_s=1.0, last_seen_s=2.0)

    def perform(storage: Storage) -> Committed:
        storage.insert_member(member)
        return Committed(members=(member,))

    controller.core.committed(perform(controller.storage))
    return member


def test_a_node_asking_shows_on_the_overview_and_is_authorized_then_deauthorized_there(controller: InProcessController) -> None:
    client = logged_in(controller)
    network_id = create_network(client)
    member = asked(controller, network_id)
    node = f"{member.node_id:010x}"
    overview = client.get("/web/").text
    assert f'data-member="{node}"' in overview and "Asking to join" in overview
    data = {"csrf": csrf_of(overview), "action": "authorize", "next": "/web/"}
    response = client.post(f"/web/networks/{network_id}/members/{node}", data=data)
    assert (response.status_code, response.headers["location"]) == (303, "/web/")
    stored = controller.storage.get_member(member.network_id, member.node_id)
    assert stored.authorized and stored.ips == ("10.147.17.1/24",)
    members_page = client.get(f"/web/networks/{network_id}/members").text
    assert "10.147.17.1/24" in members_page and "offline" in members_page and "—" in members_page
    data = {**data, "action": "deauthorize", "next": "//evil.example/"}
    response = client.post(f"/web/networks/{network_id}/members/{node}", data=data)
    assert response.headers["location"] == f"/web/networks/{network_id}/members"  # never off-site
    assert not controller.storage.get_member(member.network_id, member.node_id).authorized


def test_posts_without_the_session_with_a_wrong_csrf_token_or_from_another_site_change_nothing(
    controller: InProcessController,
) -> None:
    client = logged_in(controller)
    network_id = create_network(client)
    csrf = csrf_of(client.get("/web/").text)
    stranger = client_for(controller)
    refused = [
        stranger.post("/web/networks", data={"csrf": csrf, "name": "evil"}),
        client.post("/web/networks", data={"csrf": "x" * len(csrf), "name": "evil"}),
        client.post("/web/networks", data={"name": "evil"}),
        client.post("/web/networks", data={"csrf": csrf, "name": "evil"}, headers={"origin": "https://evil.example"}),
        client.post("/web/networks", data={"csrf": csrf, "name": "evil"}, headers={"referer": "https://evil.example/x"}),
        client.post(f"/web/networks/{network_id}/delete", data={"csrf": "", "confirm": "yes"}),
        client.post("/web/networks", content=b'{"csrf": "x"}', headers={"content-type": "application/json"}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403, 403, 403, 400]
    assert [n.name for n in controller.storage.list_networks()] == ["lab"]
    ok = client.post("/web/networks", data={"csrf": csrf, "name": "fine"}, headers={"origin": BASE})
    assert ok.status_code == 303


def test_logout_ends_the_session(controller: InProcessController) -> None:
    client = logged_in(controller)
    csrf = csrf_of(client.get("/web/").text)
    cookie = client.cookies["l2mesh_session"]
    assert client.post("/web/logout", data={"csrf": csrf}).headers["location"] == "/web/login"
    replay = client_for(controller)
    assert replay.get("/web/", headers={"cookie": f"l2mesh_session={cookie}"}).status_code == 303


def test_named_admins_log_in_with_their_password(controller: InProcessController) -> None:
    client = client_for(controller)
    bearer = {"authorization": f"Bearer {TOKEN}"}
    added = client.put("/api/v1/web/admins/alice", json={"password": "correct horse"}, headers=bearer)
    assert added.json() == {"name": "alice", "created": True}
    assert client.put("/api/v1/web/admins/Bad Name", json={"password": "correct horse"}, headers=bearer).status_code == 400
    assert [a["name"] for a in client.get("/api/v1/web/admins", headers=bearer).json()] == ["alice"]
    wrong = client.post("/web/login", data={"name": "alice", "password": "wrong horse"})
    assert wrong.status_code == 403 and "l2mesh_session" not in wrong.cookies
    assert client.post("/web/login", data={"name": "bob", "password": "correct horse"}).status_code == 403
    right = client.post("/web/login", data={"name": "alice", "password": "correct horse"})
    assert right.status_code == 303
    assert "alice" in client.get("/web/").text
    assert client.delete("/api/v1/web/admins/alice", headers=bearer).status_code == 204
    assert client.get("/web/").status_code == 303  # removing an admin ends their sessions
    assert client.delete("/api/v1/web/admins/alice", headers=bearer).status_code == 404


def test_password_guessing_is_slowed_per_name(controller: InProcessController) -> None:
    client = client_for(controller)
    client.put("/api/v1/web/admins/alice", json={"password": "correct horse"}, headers={"authorization": f"Bearer {TOKEN}"})
    guesses = [client.post("/web/login", data={"name": "alice", "password": f"guess {i}"}).status_code for i in range(6)]
    assert guesses == [403] * pages.PASSWORD_TRIES_PER_NAME_BURST + [429]
    assert client.post("/web/login", data={"name": "alice", "password": "correct horse"}).status_code == 429
    assert client.post("/web/login", data={"name": "bob", "password": "guess"}).status_code == 403  # another name: its own tries


async def test_the_live_stream_names_a_network_whose_members_changed(controller: InProcessController, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "EVENT_POLL_S", 0.01)
    web = pages.WebAdmin(controller, controller.core.node_id)
    answer = await controller.change(
        lambda storage: admin.create_network(storage, controller.core.node_id, {"name": "lab", "pools": ["10.147.17.0/24"]})
    )
    stream = web._event_stream(auth.WebSession("cookie", "", "csrf"))
    assert await stream.__anext__() == "retry: 3000\n\n"
    asked(controller, answer["id"])
    assert await stream.__anext__() == f'event: change\ndata: {{"networks": ["{answer["id"]}"]}}\n\n'
    await stream.aclose()


def test_form_fields_become_api_documents() -> None:
    assert forms.items(" 10.0.0.1, 10.0.0.2\n\n10.0.0.3 ") == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert forms.network_settings_doc({"name": "x", "mtu": "", "multicast_limit": "8", "broadcast": "on"}) == {
        "name": "x", "pools": [], "routes": [], "dns_domain": "", "broadcast": True, "private": False, "multicast_limit": 8,
    }
    assert forms.member_details_doc({"name": " db ", "ips": "10.147.17.9", "tags": "a b"}) == {
        "name": "db", "ips": ["10.147.17.9"], "tags": ["a", "b"], "bridge": False,
    }
    with pytest.raises(L2meshError, match="MTU must be a whole number"):
        forms.network_settings_doc({"mtu": "big"})
    with pytest.raises(L2meshError):
        forms.parse_form(b"name=%ff%fe")
    assert security.safe_next("/web/networks/x") == "/web/networks/x"
    for hostile in ("//evil.example/web/", "https://evil.example/web/", "/\\evil.example", "/web/\\..\\x", "/api/v1/status"):
        assert security.safe_next(hostile) == "/web/"


def test_the_api_leaves_loopback_only_with_tls_or_behind_a_proxy(tmp_path: Path) -> None:
    def options(host: str, **kw: Any) -> ServeOptions:
        return ServeOptions(tmp_path, api=(host, 9995), **kw)

    for fine in (options("127.0.0.1"), options("::1"), options("0.0.0.0", behind_proxy=True)):
        fine.check_api_exposure()
    with pytest.raises(L2meshError, match="cannot load --tls-cert"):
        options("198.18.0.1", tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem").check_api_exposure()
    with pytest.raises(L2meshError, match="without TLS"):
        options("0.0.0.0").check_api_exposure()
    with pytest.raises(L2meshError, match="both --tls-cert and --tls-key"):
        options("0.0.0.0", tls_cert=tmp_path / "c.pem").check_api_exposure()


def test_admin_add_without_a_terminal_asks_for_password_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert ctl.read_new_password(from_stdin=True) == "correct horse"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(L2meshError, match="--password-stdin"):
        ctl.read_new_password(from_stdin=False)
    with pytest.raises(L2meshError, match="empty password"):
        ctl.read_new_password(from_stdin=True)


def test_a_storage_failure_is_one_line_503_not_a_traceback(controller: InProcessController, monkeypatch: pytest.MonkeyPatch) -> None:
    client = logged_in(controller)

    def unreachable(*args: object) -> None:
        raise StateError("PostgreSQL: connection refused")

    monkeypatch.setattr(controller.storage, "find_web_token", unreachable)
    response = client.get("/web/")
    assert (response.status_code, response.text) == (503, "the controller's storage failed: PostgreSQL: connection refused\n")
