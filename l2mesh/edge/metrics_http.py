"""A minimal HTTP/1.0 server on trio for one page: the node daemon's metrics (`--metrics-listen`).

Enough for Prometheus, curl and a browser: one GET (or HEAD) per connection,
answered and closed. The node daemon carries no web framework (issue 17: an
idle daemon under 25 MiB), and this page needs none. Whatever a client sends
or fails to send costs a bounded buffer for a bounded time, and a fault in
building the page is a 500 and a log line, never the daemon's end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from l2mesh.errors import L2meshError
from l2mesh.netconf import format_endpoint
from l2mesh.wire.common import Endpoint

MAX_REQUEST_HEAD_BYTES = 8192
REQUEST_TIMEOUT_S = 10.0  # to send the request and take the answer
MAX_CONNECTIONS = 16  # more at once are closed unanswered: a scraper needs one
log = logging.getLogger("l2mesh.metrics")

Page = Callable[[], Awaitable[bytes]]


class PageServer:
    """Answers GET `path` with page() as content_type; 404 for other paths, 405 for other methods."""

    def __init__(self, path: str, content_type: str, page: Page) -> None:
        self.path = path
        self.content_type = content_type
        self.page = page
        self.connections = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= MAX_CONNECTIONS:
            await stream.aclose()
            return
        self.connections += 1
        try:
            async with stream:
                with trio.move_on_after(REQUEST_TIMEOUT_S):
                    head = await read_head(stream)
                    if head is not None:
                        await stream.send_all(await self.answer(head))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away
        finally:
            self.connections -= 1

    async def answer(self, head: bytes) -> bytes:
        """The whole response to a request head (its request line is all that counts)."""
        parts = head.splitlines()[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return response(400, b"bad request line\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != self.path.encode():
            return response(404, b"not found: the metrics are at " + self.path.encode() + b"\n")
        if method not in (b"GET", b"HEAD"):
            return response(405, b"only GET and HEAD\n")
        try:
            body = await self.page()
        except Exception:
            log.exception("building the metrics page failed")
            return response(500, b"internal error (see the daemon's log)\n")
        return response(200, body, self.content_type, with_body=method == b"GET")


async def read_head(stream: trio.SocketStream) -> bytes | None:
    """The request head up to its blank line; None if the client closed or sent too much first."""
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        if len(head) > MAX_REQUEST_HEAD_BYTES:
            return None
        data = await stream.receive_some(4096)
        if not data:
            return None
        head += data
    return head


def response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", with_body: bool = True) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}[status]
    head = (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + (body if with_body else b"")


async def serve_page(
    listen: Endpoint, path: str, content_type: str, page: Page, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Listen on listen (HOST, PORT) and serve the page until cancelled; a bind error is an L2meshError, raised before start."""
    host, port = listen
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise L2meshError(f"cannot serve metrics on {format_endpoint(listen)}: {exc.strerror or exc}") from None
    server = PageServer(path, content_type, page)
    log.info("metrics at http://%s%s", format_endpoint(listen), path)
    await trio.serve_listeners(server.handle, listeners, task_status=task_status)
