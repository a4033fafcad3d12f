"""The daemon's local control socket: one JSON request line in, one JSON response line out.

A Unix socket in the state directory, mode 0600, so only the owner (root)
can steer the daemon; the CLI is its only client.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from l2mesh.errors import L2meshError

CONTROL_SOCKET = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024
CLIENT_TIMEOUT_S = 10.0

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(L2meshError):
    """A control request failed; the message comes from the daemon or says why it could not be asked."""


def control_path(state_dir: Path) -> Path:
    return state_dir / CONTROL_SOCKET


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
                request = await _read_request(stream)
                result = await handler(request)
                reply = {"ok": True, "result": result}
            except L2meshError as exc:
                reply = {"ok": False, "error": str(exc)}
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": f"bad control request: {exc}"}
            try:
                await stream.send_all((json.dumps(reply) + "\n").encode())
            except trio.BrokenResourceError:
                pass

    try:
        task_status.started()
        await trio.serve_listeners(serve_one, [listener])
    finally:
        try:
            path.unlink()
        except OSError:
            pass


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
    request = json.loads(data)
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise ValueError("request must be an object with a command")
    return request


def call_daemon(state_dir: Path, command: str, **arguments: Any) -> Any:
    """Ask the daemon behind state_dir; ControlError with a one-line reason on any failure."""
    path = control_path(state_dir)
    not_running = f"no l2mesh daemon is running for {state_dir} (start it with: l2mesh daemon --state-dir {state_dir})"
    if not path.exists():
        raise ControlError(not_running)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(CLIENT_TIMEOUT_S)
    try:
        try:
            client.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            raise ControlError(not_running) from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as root") from None
        client.sendall((json.dumps({"command": command, **arguments}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        raise ControlError("the l2mesh daemon did not answer in time") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to the l2mesh daemon: {exc.strerror or exc}") from None
    finally:
        client.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("the l2mesh daemon sent an unreadable answer") from None
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request failed")))
    return reply.get("result")
