"""The web admin's logins (l2mesh.edge.controller.web.auth) on both storage back-ends: one-time links, sessions,
admins' argon2 hashes; and instances sharing a database honouring each other's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from l2mesh.controller.model import ValidationError
from l2mesh.edge.controller.storage_url import storage_from_url
from l2mesh.edge.controller.web import auth
from tests.unit.conftest import STORAGE_BACKENDS

NOW_S = 1_900_000_000.0
each_backend = pytest.mark.parametrize("storage_backend", STORAGE_BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its smallest cost: the same code path, milliseconds instead of a second per hash on a busy box."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def two_instances(storage_url: str) -> Iterator[tuple[auth.WebStore, auth.WebStore]]:
    """Two controller instances' storages on one database (issue 12)."""
    first, second = storage_from_url(storage_url), storage_from_url(storage_url)
    yield first, second  # type: ignore[misc]
    first.close()
    second.close()


@each_backend
def test_a_login_link_opens_one_session_once_on_whichever_instance(two_instances: tuple[auth.WebStore, auth.WebStore]) -> None:
    a, b = two_instances
    link = auth.mint_login_link(a, NOW_S)
    session = auth.exchange_login_link(b, link, NOW_S + 1)
    assert session is not None and session.admin == auth.TOKEN_ADMIN and session.csrf
    assert auth.exchange_login_link(a, link, NOW_S + 2) is None
    assert auth.exchange_login_link(b, link, NOW_S + 2) is None
    assert auth.find_session(a, session.token, NOW_S + 3) == session  # and the session is good on both


@each_backend
def test_a_login_link_expires_after_ten_minutes(two_instances: tuple[auth.WebStore, auth.WebStore]) -> None:
    a, _ = two_instances
    link = auth.mint_login_link(a, NOW_S)
    assert auth.exchange_login_link(a, link, NOW_S + auth.LOGIN_LINK_TTL_S + 1) is None
    fresh = auth.mint_login_link(a, NOW_S)
    assert auth.exchange_login_link(a, fresh, NOW_S + auth.LOGIN_LINK_TTL_S - 1) is not None


@each_backend
def test_a_session_ends_at_logout_or_expiry_everywhere_and_is_stored_only_as_a_hash(
    two_instances: tuple[auth.WebStore, auth.WebStore],
) -> None:
    a, b = two_instances
    session = auth.open_session(a, "alice", NOW_S)
    assert auth.find_session(b, session.token, NOW_S + auth.SESSION_TTL_S + 1) is None
    assert a.find_web_token(session.token, auth.SESSION_KIND, NOW_S) is None  # the raw token is not a key
    assert auth.find_session(b, session.token, NOW_S + 60) == session
    auth.close_session(b, session, NOW_S + 60)
    assert auth.find_session(a, session.token, NOW_S + 61) is None


@each_backend
def test_a_link_token_is_not_a_session_token(two_instances: tuple[auth.WebStore, auth.WebStore]) -> None:
    a, _ = two_instances
    link = auth.mint_login_link(a, NOW_S)
    assert auth.find_session(a, link, NOW_S) is None


@each_backend
def test_removing_an_admin_ends_its_sessions_and_password_login(two_instances: tuple[auth.WebStore, auth.WebStore]) -> None:
    a, b = two_instances
    assert a.set_web_admin("alice", auth.hash_password("correct horse"), NOW_S) is True
    assert b.set_web_admin("alice", auth.hash_password("battery staple"), NOW_S) is False  # a new password, same admin
    assert auth.password_matches(a.web_admin_hash("alice"), "battery staple")
    assert not auth.password_matches(a.web_admin_hash("alice"), "correct horse")
    session = auth.open_session(a, "alice", NOW_S)
    assert [name for name, _ in b.list_web_admins()] == ["alice"]
    assert b.remove_web_admin("alice") is True
    assert auth.find_session(a, session.token, NOW_S) is None
    assert a.web_admin_hash("alice") is None and not auth.password_matches(None, "battery staple")
    assert b.remove_web_admin("alice") is False


def test_admin_names_and_passwords_are_checked() -> None:
    for bad in ("", "Alice", "a b", "x" * 33, "-x", "../x"):
        with pytest.raises(ValidationError):
            auth.check_admin_name(bad)
    assert auth.check_admin_name("ops.admin-1") == "ops.admin-1"
    with pytest.raises(ValidationError):
        auth.hash_password("short")
    assert not auth.password_matches(auth.hash_password("long enough"), "x" * (auth.MAX_PASSWORD_CHARS + 1))
