"""Who may use the web admin: one-time login links, named admins' passwords, and the sessions both lead to.

Everything lives in the controller's database (sql_storage.WEB_TABLES), so
that every instance sharing it honours a link or a session another one
issued, and a used link or a logout ends it everywhere. Tokens are random
(secrets.token_urlsafe) and stored only as their SHA-256; each session has
its own CSRF token (the synchronizer token every form carries). Passwords
are argon2id-hashed (argon2-cffi's defaults, RFC 9106's second choice).

The functions taking a WebStore run on the controller's storage writer
thread; argon2 work runs on a worker thread, never on either of the
controller's own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from l2mesh.controller.model import ValidationError

LOGIN_LINK_TTL_S = 600.0  # `l2mesh-ctl web` prints it; whoever opens it within 10 minutes is in
SESSION_TTL_S = 12 * 3600.0  # a working day: then log in again
LINK_KIND = "link"
SESSION_KIND = "session"
TOKEN_ADMIN = ""  # a session from a login link: whoever holds the controller's API token
ADMIN_NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this bounds what one login request makes it hash
MIN_PASSWORD_CHARS = 8

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified when the name is unknown, so a wrong name costs what a wrong password does (no user enumeration by timing)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class WebStore(Protocol):
    """What the web admin needs of the controller's storage (SqlStorage has it)."""

    def set_web_admin(self, name: str, password_hash: str, now_s: float) -> bool: ...
    def web_admin_hash(self, name: str) -> str | None: ...
    def list_web_admins(self) -> list[tuple[str, float]]: ...
    def remove_web_admin(self, name: str) -> bool: ...
    def add_web_token(self, token_hash: str, kind: str, admin: str, csrf: str, expires_s: float, now_s: float) -> None: ...
    def find_web_token(self, token_hash: str, kind: str, now_s: float) -> tuple[str, str] | None: ...
    def take_web_token(self, token_hash: str, kind: str, now_s: float) -> tuple[str, str] | None: ...


@dataclass(frozen=True)
class WebSession:
    token: str  # the cookie's value (the database holds its hash)
    admin: str  # TOKEN_ADMIN for a session opened with a login link
    csrf: str

    @property
    def who(self) -> str:
        return self.admin or "API token holder"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_admin_name(name: object) -> str:
    if not isinstance(name, str) or not ADMIN_NAME_PATTERN.fullmatch(name):
        raise ValidationError("admin name: 1..32 characters, lower-case letters, digits, _ . - (a letter or _ first)")
    return name


def hash_password(password: str) -> str:
    """Slow on purpose (argon2id): call from a worker thread."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValidationError(f"password: {MIN_PASSWORD_CHARS}..{MAX_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Slow on purpose (argon2id): call from a worker thread."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# -- storage writer thread ---------------------------------------------------------------------------
def mint_login_link(store: WebStore, now_s: float) -> str:
    """A one-time login token, good for LOGIN_LINK_TTL_S."""
    token = secrets.token_urlsafe(32)
    store.add_web_token(token_hash(token), LINK_KIND, TOKEN_ADMIN, "", now_s + LOGIN_LINK_TTL_S, now_s)
    return token


def open_session(store: WebStore, admin: str, now_s: float) -> WebSession:
    session = WebSession(secrets.token_urlsafe(32), admin, secrets.token_urlsafe(32))
    store.add_web_token(token_hash(session.token), SESSION_KIND, admin, session.csrf, now_s + SESSION_TTL_S, now_s)
    return session


def exchange_login_link(store: WebStore, link_token: str, now_s: float) -> WebSession | None:
    """The link's token for a new session, in one transaction: a link works once, then never again."""
    if store.take_web_token(token_hash(link_token), LINK_KIND, now_s) is None:
        return None
    return open_session(store, TOKEN_ADMIN, now_s)


def find_session(store: WebStore, cookie: str, now_s: float) -> WebSession | None:
    found = store.find_web_token(token_hash(cookie), SESSION_KIND, now_s)
    return WebSession(cookie, *found) if found is not None else None


def close_session(store: WebStore, session: WebSession, now_s: float) -> None:
    store.take_web_token(token_hash(session.token), SESSION_KIND, now_s)


def csrf_matches(session: WebSession, supplied: str) -> bool:
    return bool(supplied) and secrets.compare_digest(session.csrf.encode(), supplied.encode())
