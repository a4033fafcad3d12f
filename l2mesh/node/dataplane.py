"""The data-plane thread: a blocking epoll loop that owns the NodeCore and every per-frame system call.

Why a thread beside the trio loop: each trio wakeup costs about 70 µs more
than a plain blocking loop on these 2-vCPU VMs (measured: 277 vs 137 µs UDP
ping-pong round trip when idle), and a ping across the overlay wakes the
daemons four times. So frames never pass through trio. The trio loop keeps
the control plane (control socket, signals, netlink configuration) and talks
to this thread only through `call()`, which runs a function on the core here,
between batches, and hands the result back. All core state is touched by this
thread alone, so the sans-IO core needs no locks.
"""

from __future__ import annotations

import os
import queue
import select
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from l2mesh.node.core import NodeCore
from l2mesh.node.udp import EdgeTransmit

DRAIN_BATCH = 256
TICK_INTERVAL_S = 0.1
MAX_FRAME_BYTES = 65536 + 14
MAX_DATAGRAM_BYTES = 65536

T = TypeVar("T")
_READ = select.EPOLLIN
_WRITE = select.EPOLLOUT


class DataPlane:
    def __init__(
        self,
        core: NodeCore,
        transmit: EdgeTransmit,
        sock: socket.socket,
        on_event: Callable[[object], None],
    ) -> None:
        self.core = core
        self.on_event = on_event
        self.transmit = transmit
        self.sock = sock
        self._sock_fd = sock.fileno()
        self._epoll = select.epoll()
        self._doorbell = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._calls: queue.SimpleQueue[tuple[Callable[[NodeCore], Any], Future[Any]]] = queue.SimpleQueue()
        self._taps: dict[int, int] = {}  # fd -> network id
        self._running = True
        self._epoll.register(self._sock_fd, _READ)
        self._epoll.register(self._doorbell, _READ)
        self._sock_events = _READ
        self._buffer = bytearray(MAX_DATAGRAM_BYTES)

    # -- called from other threads ---------------------------------------------------------------
    def call(self, function: Callable[[NodeCore], T]) -> "Future[T]":
        """Run function(core) on the data-plane thread; the future holds its result or exception."""
        future: Future[T] = Future()
        self._calls.put((function, future))
        os.eventfd_write(self._doorbell, 1)
        return future

    def stop(self) -> None:
        self._running = False
        os.eventfd_write(self._doorbell, 1)

    # -- TAP registration (run through call(), so on this thread) ------------------------------------
    def add_tap(self, network_id: int, fd: int) -> None:
        self._taps[fd] = network_id
        self.transmit.tap_fds[network_id] = fd
        self._epoll.register(fd, _READ)

    def remove_tap(self, network_id: int) -> None:
        fd = self.transmit.tap_fds.pop(network_id, None)
        if fd is not None and self._taps.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- the loop --------------------------------------------------------------------------------------
    def run(self) -> None:
        core = self.core
        poll = self._epoll.poll
        sock_fd = self._sock_fd
        doorbell = self._doorbell
        taps = self._taps
        next_tick_s = time.monotonic() + TICK_INTERVAL_S
        try:
            while self._running:
                timeout_s = max(0.0, next_tick_s - time.monotonic())
                for fd, mask in poll(timeout_s):
                    if fd == sock_fd:
                        if mask & _WRITE:
                            self._drain_backlog()
                        if mask & _READ:
                            self._read_socket()
                    elif fd == doorbell:
                        self._run_calls()
                    else:
                        network_id = taps.get(fd)
                        if network_id is not None:
                            self._read_tap(fd, network_id)
                now = time.monotonic()
                if now >= next_tick_s:
                    core.tick(now)
                    next_tick_s = now + TICK_INTERVAL_S
                if core.events:
                    self._deliver_events()
        finally:
            self._epoll.close()
            os.close(self._doorbell)

    def _read_socket(self) -> None:
        buffer = self._buffer
        view = memoryview(buffer)
        receive = self.sock.recvfrom_into
        datagram_received = self.core.datagram_received
        now = time.monotonic()
        for _ in range(DRAIN_BATCH):
            try:
                size, source = receive(buffer)
            except BlockingIOError:
                break
            except OSError:
                continue  # ICMP errors surface here on Linux; nothing to act on
            datagram_received(view[:size], source, now)
        self._after_batch()

    def _read_tap(self, fd: int, network_id: int) -> None:
        read = os.read
        frame_from_tap = self.core.frame_from_tap
        now = time.monotonic()
        for _ in range(DRAIN_BATCH):
            try:
                frame = read(fd, MAX_FRAME_BYTES)
            except BlockingIOError:
                break
            except OSError:
                self.remove_tap(network_id)  # the device went away
                break
            frame_from_tap(network_id, frame, now)
        self._after_batch()

    def _after_batch(self) -> None:
        if self.transmit.backlog and self._sock_events == _READ:
            # Socket buffer full: wait for room, and stop reading TAPs meanwhile
            # so the senders' TCP feels back-pressure instead of loss.
            self._sock_events = _READ | _WRITE
            self._epoll.modify(self._sock_fd, self._sock_events)
            for fd in self._taps:
                self._epoll.modify(fd, 0)

    def _drain_backlog(self) -> None:
        if self.transmit.flush_backlog():
            self._sock_events = _READ
            self._epoll.modify(self._sock_fd, _READ)
            for fd in self._taps:
                self._epoll.modify(fd, _READ)

    def _deliver_events(self) -> None:
        # Rare (a network config changed): handled inline, the data path waits a few ms.
        events = self.core.events
        while events:
            self.on_event(events.popleft())

    def _run_calls(self) -> None:
        try:
            os.eventfd_read(self._doorbell)
        except BlockingIOError:
            pass
        while True:
            try:
                function, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(self.core))
            except BaseException as exc:  # handed to the caller, who reports it
                future.set_exception(exc)
