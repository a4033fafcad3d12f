"""The web admin's defences that are not about who is logged in: response headers, the origin check, redirects.

Who is logged in (sessions, CSRF tokens) is auth.py; these guard against
pages being framed or injected into, forms posted from another site, and a
form's return address sending the browser elsewhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere (the page's script and stylesheet are files under static/).
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # Not no-referrer: with it, browsers send `Origin: null` on form posts, and the origin check needs the real one.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: the headers above on every /web response, and no caching of pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin(request: Request) -> bool:
    """A browser names the page a POST comes from; it must be one of ours. Without either header (not a
    browser, e.g. curl) the CSRF token alone decides."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True
    return urlsplit(source).netloc == request.headers.get("host", "")


def safe_next(target: str, fallback: str = "/web/") -> str:
    """Where a form returns to: one of our pages, never another site (`//evil`, `/\\evil`, `https://...`)."""
    if target.startswith("/web/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return fallback
