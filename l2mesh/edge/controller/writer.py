"""The controller's storage writer: the one thread that writes its database, so no packet waits on an fsync.

Admin changes (from the API, on trio) and the core's own writes (from the
reactor thread: members asking to join, their keys and endpoints, last-seen
times) queue here and run one at a time, each one durable transaction.
What each committed goes back to the reactor thread in commit order,
through an eventfd the reactor watches: the core applies it to its
directory and pushes, and only then does an admin change's caller get its
answer, so the API acknowledges what is both durable and in effect.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from l2mesh.controller.changes import Committed, StorageWrite
from l2mesh.controller.storage import Storage
from l2mesh.errors import L2meshError

log = logging.getLogger("l2mesh.controller.storage")


@dataclass
class _Job:
    perform: Callable[[Storage], Committed]
    failed: Callable[[], Committed] | None  # a core write: what the core hears if perform raises
    future: Future[Any] | None  # an admin change: its caller waits for the core's answer here


class StorageWriter:
    def __init__(self, storage: Storage, apply: Callable[[Committed], Any]) -> None:
        self.storage = storage
        self.apply = apply  # the core's committed(), called on the reactor thread
        self.doorbell = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # readable: results are waiting
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[Committed, Future[Any] | None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="l2mesh-storage", daemon=True)
        self._accepting = True
        self.failed_writes = 0

    def start(self) -> None:
        self._thread.start()

    # -- reactor thread ---------------------------------------------------------------------------------
    def write(self, write: StorageWrite) -> None:
        """A write the core wants; its result comes back through results_ready()."""
        if self._accepting:
            self._jobs.put(_Job(write.commit, write.failed, None))

    def results_ready(self) -> None:
        """The doorbell's reader: apply what was committed, in commit order, and answer admin callers."""
        try:
            posted = os.eventfd_read(self.doorbell)  # one per result queued since the last read
        except BlockingIOError:
            return
        for _ in range(posted):
            self._settle(*self._results.get_nowait())

    def _settle(self, committed: Committed, future: Future[Any] | None) -> None:
        try:
            answer = self.apply(committed)
        except Exception as exc:
            if future is None:
                log.exception("applying a committed write failed")
            else:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(answer)

    # -- any thread -----------------------------------------------------------------------------------
    def change(self, perform: Callable[[Storage], Committed]) -> Future[Any]:
        """An admin change: the future holds the core's answer once it is committed and applied, or the error."""
        future: Future[Any] = Future()
        if not self._accepting:
            future.set_exception(L2meshError("the controller is stopping"))
        else:
            self._jobs.put(_Job(perform, None, future))
        return future

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued (someone waits for each of those), then end the thread."""
        self._accepting = False
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def close(self) -> None:
        """The doorbell and the storage, once the reactor no longer watches the one and this thread has ended."""
        if self._thread.is_alive():
            log.warning("the storage writer did not finish; leaving the database open")
            return
        os.close(self.doorbell)
        self.storage.close()

    # -- the writer thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                committed = job.perform(self.storage)
            except Exception as exc:
                if job.future is not None:
                    job.future.set_exception(exc)  # validation errors included: the API reports them
                    continue
                assert job.failed is not None
                self.failed_writes += 1
                log.warning("a storage write failed (%d so far): %s", self.failed_writes, exc)
                committed = job.failed()
            self._results.put((committed, job.future))
            os.eventfd_write(self.doorbell, 1)
