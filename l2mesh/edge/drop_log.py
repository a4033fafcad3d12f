"""Logs each limit a daemon hits once per cause: the first time a limit's drop reason is counted.

The cores count every drop (l2mesh.ratelimit names the limits' reasons);
logging each would let a flood fill the disk. Once per reason tells the
operator a limit is being hit and where to look (the drop counters, in
`status --json` and /metrics), however long the flood lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from l2mesh.ratelimit import is_limit_drop

CHECK_INTERVAL_S = 1.0


class DropLog:
    def __init__(self, log: logging.Logger, where: str) -> None:
        self.log = log
        self.where = where  # how to read the counters, named in the message
        self.logged: set[str] = set()
        self._next_check_s = 0.0

    def check(self, now: float, *counters: Mapping[str, int]) -> None:
        """Log the limit reasons counted for the first time since the last check (at most every CHECK_INTERVAL_S)."""
        if now < self._next_check_s:
            return
        self._next_check_s = now + CHECK_INTERVAL_S
        for counter in counters:
            for reason, count in counter.items():
                if count and reason not in self.logged and is_limit_drop(reason):
                    self.logged.add(reason)
                    self.log.warning(
                        "input dropped by a limit: %s (%d so far; logged once, counted in %s)", reason, count, self.where
                    )
