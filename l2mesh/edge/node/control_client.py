"""The CLI's side of the daemon's control socket: ask one question, get one answer (no trio here,
so `l2mesh status` starts without loading the daemon's stack).

A daemon that is still starting has no socket yet (or a stale one it is about
to replace), so the client waits a few seconds for it: `l2mesh daemon &
l2mesh join ...` works without a sleep.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from l2mesh.errors import L2meshError

CONTROL_SOCKET = "control.sock"
CLIENT_TIMEOUT_S = 10.0
# How long a command waits for a daemon that is starting; the environment
# variable overrides it (0: fail at once, as scripts that probe may want).
DAEMON_WAIT_ENV = "L2MESH_DAEMON_WAIT_S"
DEFAULT_DAEMON_WAIT_S = 5.0
DAEMON_POLL_INTERVAL_S = 0.05


class ControlError(L2meshError):
    """A control request failed; the message comes from the daemon or says why it could not be asked."""


def daemon_wait_s() -> float:
    """Seconds to wait for a starting daemon: $L2MESH_DAEMON_WAIT_S, else 5."""
    text = os.environ.get(DAEMON_WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_DAEMON_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ControlError(f"invalid {DAEMON_WAIT_ENV}={text!r}: expected seconds to wait for the daemon, e.g. 5 or 0")
    return value


def control_path(state_dir: Path) -> Path:
    return state_dir / CONTROL_SOCKET


def _connect(state_dir: Path, wait_s: float, notice: Callable[[str], None] | None, timeout_s: float) -> socket.socket:
    path = control_path(state_dir)
    not_running = f"no l2mesh daemon is running for {state_dir} (start it with: l2mesh daemon --state-dir {state_dir})"
    deadline_s = time.monotonic() + wait_s
    told = False
    while True:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(timeout_s)
        try:
            client.connect(str(path))
            return client
        except (ConnectionRefusedError, FileNotFoundError):
            # No socket yet, or a stale one a starting daemon is about to replace.
            client.close()
        except PermissionError:
            client.close()
            raise ControlError(f"permission denied on {path}: run as root") from None
        except NotADirectoryError:
            client.close()
            raise ControlError(f"{state_dir} is not a directory") from None
        except socket.timeout:
            client.close()
            raise ControlError("the l2mesh daemon did not answer in time") from None
        except OSError as exc:
            client.close()
            raise ControlError(f"cannot talk to the l2mesh daemon: {exc.strerror or exc}") from None
        left_s = deadline_s - time.monotonic()
        if left_s <= 0:
            raise ControlError(not_running)
        if notice is not None and not told:
            notice(f"waiting up to {wait_s:g} s for the l2mesh daemon of {state_dir} to start")
            told = True
        time.sleep(min(DAEMON_POLL_INTERVAL_S, left_s))


def call_daemon(
    state_dir: Path,
    command: str,
    *,
    wait_s: float = 0.0,
    notice: Callable[[str], None] | None = None,
    timeout_s: float = CLIENT_TIMEOUT_S,
    **arguments: Any,
) -> Any:
    """Ask the daemon behind state_dir; ControlError with a one-line reason on any failure.

    With no daemon listening yet, keep trying for wait_s seconds (telling
    notice once) before giving up: the daemon may be starting. timeout_s bounds the wait for the answer
    (a ping waits longer than its own timeout).
    """
    client = _connect(state_dir, wait_s, notice, timeout_s)
    try:
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
