"""What a lab run needs from the machine, checked before anything is made."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence


def environment_problem(tools: Sequence[str] = ("ip",), *, tun: bool = False) -> str | None:
    """Why a lab cannot run here, as "needs ...", or None: root, /dev/net/tun (for TAPs), the tools on PATH."""
    if os.geteuid() != 0:
        return "needs root (network namespaces" + (", TAP devices)" if tun else ")")
    if tun and not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (modprobe tun)"
    for tool in ("ip", "setpriv", *tools):
        if shutil.which(tool) is None:
            return f"needs {tool} (not on PATH)"
    return None
