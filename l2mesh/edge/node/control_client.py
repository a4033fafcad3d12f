"""The CLI's side of the daemon's control socket: ask one question, get one answer (no trio here,
so `l2mesh status` starts without loading the daemon's stack)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from l2mesh.errors import L2meshError

CONTROL_SOCKET = "control.sock"
CLIENT_TIMEOUT_S = 10.0


class ControlError(L2meshError):
    """A control request failed; the message comes from the daemon or says why it could not be asked."""


def control_path(state_dir: Path) -> Path:
    return state_dir / CONTROL_SOCKET


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
