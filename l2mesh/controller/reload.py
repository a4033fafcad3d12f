"""What another instance committed, read back: the stored state of some networks (or all), for the directory.

Several controller instances share one database (issue 12). When the
change feed (l2mesh.edge.controller.change_feed) says the database changed,
the core asks for a Reload, run by the storage writer like any write, so its
result comes back in commit order with this instance's own writes: the
directory then equals storage as of that read. The core compares revisions
and pushes only networks whose revision moved (its own commits it pushed
already; a reload of those finds the same revision).
"""

from __future__ import annotations

from dataclasses import dataclass

from l2mesh.controller.changes import Committed
from l2mesh.controller.storage import Storage


@dataclass(frozen=True)
class Reload:
    network_id: int | None  # None: every network

    def commit(self, storage: Storage) -> Committed:
        with storage.transaction():  # one consistent read
            if self.network_id is None:
                networks = storage.list_networks()
            else:
                found = storage.find_network(self.network_id)
                networks = [found] if found is not None else []
            members = [m for n in networks for m in storage.list_members(n.network_id)]
        return Committed(networks=tuple(networks), members=tuple(members), reloaded=True, reload_of=self.network_id)

    def failed(self) -> Committed:
        return Committed(failed=True, drops=("reload_failed",))
