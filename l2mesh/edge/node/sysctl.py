"""Kernel settings (/proc/sys) the daemon turns on for a while and gives back: forwarding, src_valid_mark.

Each setting is held by owners (a network that forwards, the default
route's policy); the value it had before the first owner is put back when
the last one lets go, unless someone else changed it meanwhile (then theirs
stands). A daemon killed with SIGKILL cannot give them back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC_SYS = Path("/proc/sys")
log = logging.getLogger("l2mesh.sysctl")


@dataclass
class _Held:
    before: str
    value: str
    owners: set[str] = field(default_factory=set)


class KernelSettings:
    def __init__(self, root: Path = PROC_SYS) -> None:
        self.root = root
        self._held: dict[str, _Held] = {}

    def hold(self, key: str, value: str, owner: str) -> None:
        """Set key (e.g. "net/ipv4/ip_forward") to value while owner needs it; OSError if the kernel refuses."""
        held = self._held.get(key)
        if held is None:
            before = self._read(key)
            if before != value:
                self._write(key, value)
                log.info("sysctl %s = %s (was %s; put back when no longer needed)", key.replace("/", "."), value, before)
            held = self._held[key] = _Held(before, value)
        held.owners.add(owner)

    def release(self, owner: str, keys: Iterable[str] | None = None) -> None:
        """owner no longer needs these settings (default: any of its); the last owner's release puts each back."""
        for key, held in list(self._held.items()):
            if keys is not None and key not in keys:
                continue
            held.owners.discard(owner)
            if held.owners:
                continue
            del self._held[key]
            try:
                if held.before != held.value and self._read(key) == held.value:
                    self._write(key, held.before)
                    log.info("sysctl %s = %s (put back)", key.replace("/", "."), held.before)
            except OSError as exc:
                log.warning("cannot put sysctl %s back to %s: %s", key.replace("/", "."), held.before, exc)

    def held_by(self, owner: str) -> list[str]:
        return sorted(key for key, held in self._held.items() if owner in held.owners)

    def _read(self, key: str) -> str:
        return (self.root / key).read_text().strip()

    def _write(self, key: str, value: str) -> None:
        (self.root / key).write_text(value + "\n")
