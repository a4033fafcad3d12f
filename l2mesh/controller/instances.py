"""Controller instances sharing one database (issue 12): each one's heartbeat, and which are alive.

Every instance of a controller (one identity, one database) writes its row
every HEARTBEAT_S: a random instance id, the endpoints members reach it at,
and the time. An instance heard within INSTANCE_LIVE_S is alive; the live
ones' endpoints go into every config (NetworkConfig.controllers), so members
know where to move when theirs stops answering. Rows unheard for
INSTANCE_FORGET_S are deleted by whichever instance notices.
"""

from __future__ import annotations

from dataclasses import dataclass

HEARTBEAT_S = 2.0
# Wall clocks of instances on different hosts differ a little: generous, and
# members do not rely on it (they move when theirs stops answering, not when its row ages).
INSTANCE_LIVE_S = 10.0
INSTANCE_FORGET_S = 3600.0
MAX_INSTANCE_ENDPOINTS = 8


@dataclass(frozen=True)
class ControllerInstance:
    instance_id: str
    endpoints: tuple[str, ...]  # "IP:PORT" where members reach it
    started_s: float  # wall time
    heartbeat_s: float  # wall time of its last heartbeat
