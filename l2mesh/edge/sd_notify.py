"""Readiness for systemd's Type=notify (sd_notify(3)) without libsystemd: one datagram to $NOTIFY_SOCKET.

systemd names a Unix datagram socket in NOTIFY_SOCKET, a path ("/run/...")
or an abstract name ("@..."); "READY=1" there ends `systemctl start`, so
`systemctl start l2mesh && l2mesh join ...` finds the daemon listening. When
the variable is unset (started by hand, in tests) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"

log = logging.getLogger("l2mesh.sd_notify")


def notify_address(environ: Mapping[str, str] = os.environ) -> str | None:
    """The socket address NOTIFY_SOCKET names (abstract names start with a NUL byte), or None."""
    name = environ.get(NOTIFY_SOCKET_ENV, "")
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    if name:
        # systemd 254+ may name a vsock address for VMs; a daemon here never runs there.
        log.warning("%s=%r is no Unix socket l2mesh can use: readiness not reported", NOTIFY_SOCKET_ENV, name)
    return None


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send state (newline-separated KEY=VALUE lines) to systemd; False when there is no one to tell.

    Never raises: a service that cannot report readiness still serves (and
    systemd, which then times out on it, says so in its own log).
    """
    address = notify_address(environ)
    if address is None:
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("cannot tell systemd %r through %s: %s", state, environ.get(NOTIFY_SOCKET_ENV), exc.strerror or exc)
        return False
    finally:
        sock.close()
    return True


def notify_ready(status: str = "") -> bool:
    """READY=1 (and a one-line STATUS= that `systemctl status` shows): the service is listening."""
    return sd_notify("READY=1" + (f"\nSTATUS={status}" if status else ""))
