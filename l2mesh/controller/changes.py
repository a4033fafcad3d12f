"""What crosses between the controller's two threads: writes for the storage writer, and what they committed.

The reactor thread never touches storage. It hands the writes it wants
(StorageWrite) to the storage writer thread, which runs them, and admin
changes, one at a time, each in its own durable transaction. Every result
(Committed) comes back to the reactor thread in commit order, which applies
it to the directory and pushes new configs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from l2mesh.controller.instances import ControllerInstance
from l2mesh.controller.model import Member, Network
from l2mesh.controller.storage import Storage


@dataclass(frozen=True)
class Committed:
    """What one storage transaction changed: rows as read back inside it, and what follows from them."""

    networks: tuple[Network, ...] = ()
    members: tuple[Member, ...] = ()
    deleted_networks: tuple[int, ...] = ()
    deleted_members: tuple[tuple[int, int], ...] = ()  # (network id, node id)
    seen: tuple[tuple[int, int, float], ...] = ()  # (network id, node id, wall time) last-seen times written
    push: tuple[int, ...] = ()  # networks whose online members must get their config now (new revision, or gone)
    asked: tuple[int, int] | None = None  # (network id, node id) of the member request this write settles
    failed: bool = False  # nothing was written: the member is not answered, and its next request asks again
    drops: tuple[str, ...] = ()  # for the core's drop counters (the writer thread keeps none)
    answer: Member | Network | None = None  # what an admin change reports back
    # Another instance changed the database (reload.py): networks and members above are the whole stored
    # state of network reload_of (None: of every network); the core pushes those whose revision moved.
    reloaded: bool = False
    reload_of: int | None = None
    instances: tuple[ControllerInstance, ...] | None = None  # the live instances, read by a heartbeat


class StorageWrite(Protocol):
    """A write the core wants: run by the storage writer, never on the reactor thread."""

    def commit(self, storage: Storage) -> Committed:
        """Run as one transaction; what it changed."""
        ...

    def failed(self) -> Committed:
        """What the core needs to hear when commit() raised (nothing was written)."""
        ...
