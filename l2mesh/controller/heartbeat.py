"""The writes that keep this instance's row in the shared database (see instances.py)."""

from __future__ import annotations

from dataclasses import dataclass

from l2mesh.controller.changes import Committed
from l2mesh.controller.instances import INSTANCE_FORGET_S, INSTANCE_LIVE_S, ControllerInstance
from l2mesh.controller.storage import Storage


@dataclass(frozen=True)
class Heartbeat:
    """Our row renewed, dead rows pruned, and the live instances read back, in one transaction."""

    instance: ControllerInstance

    def commit(self, storage: Storage) -> Committed:
        now_s = self.instance.heartbeat_s
        with storage.transaction():
            storage.record_instance(self.instance)
            storage.remove_instances(None, now_s - INSTANCE_FORGET_S)
            live = storage.live_instances(now_s - INSTANCE_LIVE_S)
        return Committed(instances=tuple(live))

    def failed(self) -> Committed:
        return Committed(failed=True, drops=("heartbeat_write_failed",))


@dataclass(frozen=True)
class Departure:
    """A stopping instance removes its row, so members stop being sent to it at once."""

    instance_id: str

    def commit(self, storage: Storage) -> Committed:
        storage.remove_instances(self.instance_id, 0.0)
        return Committed()

    def failed(self) -> Committed:
        return Committed(failed=True, drops=("storage_write_failed",))
