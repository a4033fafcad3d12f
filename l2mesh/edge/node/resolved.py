"""Telling systemd-resolved that a network's DNS domain is answered on the member's overlay address.

Per link, through `resolvectl` (as `resolvectl dns`, `domain` and
`default-route` set it by hand; no D-Bus library needed): the TAP gets the
member's own overlay address as its DNS server and `~<domain>` as a routing
domain, so the host asks l2mesh for that domain alone and keeps its usual
servers for everything else. resolved forgets a link's settings when the
link goes; leaving reverts them explicitly.

Only where resolved runs in this daemon's network namespace: resolvectl
names links by index, and in another namespace (a test's, a container's) an
index names some other interface of resolved's. Elsewhere, README's "DNS"
section gives the one-line set-up for other resolvers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

RESOLVED_RUNTIME_DIR = Path("/run/systemd/resolve")
RESOLVECTL_TIMEOUT_S = 5.0
log = logging.getLogger("l2mesh.dns")


def resolved_problem() -> str | None:
    """Why this daemon cannot hand its domains to systemd-resolved, or None when it can."""
    if shutil.which("resolvectl") is None:
        return "resolvectl is not installed"
    # Its varlink socket (systemd 246 on), else the resolv.conf it writes: /run is emptied at boot.
    if not any((RESOLVED_RUNTIME_DIR / name).exists() for name in ("io.systemd.Resolve", "resolv.conf")):
        return "systemd-resolved is not running"
    try:
        if os.stat("/proc/self/ns/net").st_ino != os.stat("/proc/1/ns/net").st_ino:
            return "this daemon runs in another network namespace than systemd-resolved"
    except OSError:
        return "cannot tell whether systemd-resolved shares this daemon's network namespace"
    return None


def set_link_dns(ifname: str, servers: Sequence[str], domain: str) -> str | None:
    """Point resolved at servers for ~domain on the link; None, or why it did not take."""
    for argv in (["dns", ifname, *servers], ["domain", ifname, f"~{domain}"], ["default-route", ifname, "false"]):
        problem = _resolvectl(argv)
        if problem is not None and argv[0] != "default-route":  # default-route: newer resolvectl only
            return problem
    return None


def revert_link(ifname: str) -> None:
    problem = _resolvectl(["revert", ifname])
    if problem is not None:
        log.debug("resolvectl revert %s: %s", ifname, problem)


def _resolvectl(argv: list[str]) -> str | None:
    try:
        result = subprocess.run(["resolvectl", *argv], capture_output=True, text=True, timeout=RESOLVECTL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"resolvectl {argv[0]}: {exc}"
    if result.returncode != 0:
        return f"resolvectl {argv[0]}: {result.stderr.strip().splitlines()[0] if result.stderr.strip() else 'failed'}"
    return None
