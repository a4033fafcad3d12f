"""The daemon's side of its local control socket: one JSON request line in, one JSON response line out.

A Unix socket in the state directory (itself 0700), created with mode 0600
(bound under a umask, so it never exists with a wider mode), so only the
owner (root) can steer the daemon; the CLI (control_client.py) is its only
client. Should the file's mode be widened by hand, the peer's credentials
(SO_PEERCRED) are checked too: anyone but root or the daemon's own user gets
a one-line refusal. There is no group access: delegate with sudo rules for
the commands a user may run.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from l2mesh.edge.node.control_client import CLIENT_TIMEOUT_S, control_path
from l2mesh.errors import L2meshError

MAX_REQUEST_BYTES = 64 * 1024
PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
# What a malformed request or argument raises (a huge number for a float is an OverflowError): one error reply.
BAD_REQUEST_ERRORS = (ValueError, KeyError, TypeError, OverflowError)
REFUSED = "permission denied: only root may use the l2mesh daemon's control socket"

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def _socket_in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


async def serve_control(state_dir: Path, handler: Handler, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    path = control_path(state_dir)
    if path.exists():
        if _socket_in_use(path):
            raise L2meshError(f"another l2mesh daemon already uses {state_dir} (its control socket answers)")
        path.unlink()
    listener_sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await listener_sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener_sock.listen(16)
    listener = trio.SocketListener(listener_sock)

    async def serve_one(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                request = await _read_request(stream)  # read first: a refusal sent before it would break the client's pipe
                if not _peer_allowed(stream):
                    raise L2meshError(REFUSED)
                result = await handler(request)
                reply = {"ok": True, "result": result}
            except L2meshError as exc:
                reply = {"ok": False, "error": str(exc)}
            except BAD_REQUEST_ERRORS as exc:
                reply = {"ok": False, "error": f"bad control request: {exc}"}
            except trio.TooSlowError:
                # A client that never finishes its line gets an answer; the server goes on serving others.
                reply = {"ok": False, "error": f"no complete request within {CLIENT_TIMEOUT_S:g} s"}
            except trio.BrokenResourceError:
                return
            try:
                await stream.send_all((json.dumps(reply) + "\n").encode())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    try:
        task_status.started()
        await trio.serve_listeners(serve_one, [listener])
    finally:
        try:
            path.unlink()
        except OSError:
            pass


def _peer_allowed(stream: trio.SocketStream) -> bool:
    """Root, or the user the daemon runs as (tests, unprivileged set-ups)."""
    credentials = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size)
    _, uid, _ = PEER_CREDENTIALS.unpack(credentials)
    return uid in (0, os.geteuid())


async def _read_request(stream: trio.SocketStream) -> dict[str, Any]:
    data = b""
    with trio.fail_after(CLIENT_TIMEOUT_S):
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
    try:
        request = json.loads(data)
    except RecursionError:  # a line of 64 KB nests deeper than the parser recurses: refused, not raised out of the server
        raise ValueError("request nested too deeply") from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise ValueError("request must be an object with a command")
    return request
