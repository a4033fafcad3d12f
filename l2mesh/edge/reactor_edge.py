"""What a trio process does around its reactor thread, shared by the node daemon and the controller.

The reactor thread carries packets (see reactor.py); the trio side starts
it, stops it on SIGTERM/SIGINT, and reaches the state it owns only through
call(). A full UDP send buffer parks datagrams (udp.DatagramSender) until the
socket is writable; a node also stops reading its TAPs meanwhile, so TCP
senders above feel back-pressure instead of loss.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from typing import TypeVar

import trio

from l2mesh.edge.reactor import Reactor
from l2mesh.edge.udp import DatagramSender

T = TypeVar("T")
log = logging.getLogger("l2mesh")


class ReactorEdge:
    def __init__(self, reactor: Reactor, sock: socket.socket, sender: DatagramSender, pause_readers: bool) -> None:
        self.reactor = reactor
        self.sock = sock
        self.sender = sender
        self.pause_readers = pause_readers
        self._blocked = False
        self._started = False

    # -- reactor thread: socket back-pressure ------------------------------------------------------
    def check_backlog(self) -> None:
        """Called after each reactor wakeup: start waiting for room when datagrams were parked."""
        if self.sender.backlog and not self._blocked:
            self._blocked = True
            self.reactor.set_writer(self.sock.fileno(), self._writable)
            if self.pause_readers:
                self.reactor.pause_readers(True)

    def _writable(self) -> None:
        if self.sender.flush_backlog():
            self._blocked = False
            self.reactor.set_writer(self.sock.fileno(), None)
            if self.pause_readers:
                self.reactor.pause_readers(False)

    # -- trio side ---------------------------------------------------------------------------------------
    async def run_reactor(self, scope: trio.CancelScope) -> None:
        # Abandoned on cancellation (a failure elsewhere in the nursery must not
        # wait for a thread nobody told to stop); shutdown() stops and joins it.
        self._started = True
        try:
            await trio.to_thread.run_sync(self.reactor.run, abandon_on_cancel=True)
        finally:
            self.reactor.stop()
            scope.cancel()

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the reactor thread and wait for it, so fds are closed only once nothing uses them."""
        self.reactor.stop()
        if self._started:
            self.reactor.finished.wait(timeout_s)

    async def stop_on_signals(self, stop: Callable[[], None], what: str) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal %d: %s", signum, what)
                self.reactor.stop()
                stop()
                return

    async def call(self, function: Callable[[], T]) -> T:
        """Run function() on the reactor thread and wait for its result."""
        future = self.reactor.call(function)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)
