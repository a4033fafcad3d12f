"""Per-stage timestamps inside one `l2mesh daemon`, for benchmarks/latency.py --stages (issue 17, part 1).

Loaded by the sitecustomize latency.py generates, in `l2mesh daemon`
processes only and only when L2MESH_STAGE_LOG=<path prefix> is set: without
it nothing here is imported and nothing is wrapped, so the product's hot
path pays nothing. install() wraps, by name, what a packet passes through on
the reactor thread (class methods, or the instance attributes the hot path
binds at construction) and records CLOCK_MONOTONIC stamps
(time.perf_counter_ns) at:

    TAP -> UDP   poll return, TAP drain entry, frame read, switch decision,
                 seal entry and exit, frame handled, sendto entry and exit,
                 drain exit, loop end (the next poll's entry)
    UDP -> TAP   the kernel's receive time (SO_TIMESTAMPNS), poll return, UDP
                 drain entry, datagram received, open entry and exit, switch
                 decision, TAP write entry and exit, datagram handled, drain
                 exit, loop end

A name that is missing (the hot path changed) costs one warning line on
stderr and that stage; the daemon runs on. Records go into a bounded
deque (the latest CAPACITY stamps) and are dumped as <prefix>.<pid>.json when the
reactor's loop ends (SIGTERM stops it) or, failing that, at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

STAGE_NAMES = (
    "poll_return", "loop_end",
    "tap_drain_enter", "tap_read", "switch_out", "seal_enter", "seal_done", "frame_handled",
    "send_enter", "send_done", "tap_drain_exit",
    "udp_drain_enter", "kernel_rx", "udp_received", "open_enter", "open_done", "switch_in",
    "tap_write_enter", "tap_write_done", "datagram_handled", "udp_drain_exit",
)
CODE = {name: code for code, name in enumerate(STAGE_NAMES)}
POLL_RETURN, LOOP_END, KERNEL_RX = CODE["poll_return"], CODE["loop_end"], CODE["kernel_rx"]
UDP_DRAIN_ENTER, UDP_RECEIVED = CODE["udp_drain_enter"], CODE["udp_received"]
NOW_NS = time.perf_counter_ns
CAPACITY = 200_000  # stamps, the latest kept: ~12 per hop, so the last ~16,000 hops; ~20 MB at most
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # asm-generic/socket.h; Python 3.11 lacks the name
RECEIVE_CONTROL_BYTES = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4)  # a timespec and UDP_GRO's segment size
TIMESPEC = struct.Struct("qq")


def warn(text: str) -> None:
    print(f"l2mesh stage log: {text}", file=sys.stderr, flush=True)


class Recorder:
    """(code, CLOCK_MONOTONIC ns, extra) stamps in a bounded deque: the oldest go once it is full.

    Wrappers call append((code, now_ns(), extra)) themselves: two C calls,
    no Python frame of our own (half the cost of a stamp() function; each
    stamp runs cold, after the daemon slept, and shows in the hops).
    deque.append is atomic, so a stamp from another thread is no race.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        # (code, ns, extra); a kernel_rx holds its raw timespec until as_json()
        self.records: deque[tuple[int, Any, int]] = deque(maxlen=capacity)
        self.append = self.records.append

    def as_json(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "argv": sys.argv, "clock": "CLOCK_MONOTONIC ns (time.perf_counter_ns)",
            "stage_names": list(STAGE_NAMES), "capacity": self.capacity, "full": len(self.records) == self.capacity,
            **columns(self.records),
        }


def columns(records: Iterable[tuple[int, Any, int]]) -> dict[str, list[int]]:
    """codes, times_ns and extras; a kernel_rx's raw timespec made monotonic with its drain's clock offset."""
    codes, times, extras = [], [], []
    offset = None  # CLOCK_REALTIME minus CLOCK_MONOTONIC at the last UDP drain entry
    for code, t, extra in records:
        if code == UDP_DRAIN_ENTER:
            offset = extra
        elif code == KERNEL_RX:
            if offset is None or len(t) < TIMESPEC.size:
                continue  # its drain entry fell out of the full deque
            seconds, nanoseconds = TIMESPEC.unpack_from(t)
            t = seconds * 1_000_000_000 + nanoseconds - offset
        codes.append(code)
        times.append(t)
        extras.append(extra)
    return {"codes": codes, "times_ns": times, "extras": extras}


class StampedEpoll:
    """The reactor's epoll with its poll() stamped: loop end on entry (after a wake-up), poll return on events."""

    def __init__(self, epoll: Any, recorder: Recorder) -> None:
        self._epoll = epoll
        self._poll = epoll.poll
        self._append = recorder.append
        self._busy = False

    def poll(self, timeout: float | None = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        if self._busy:
            self._append((LOOP_END, NOW_NS(), 0))
        events = self._poll(timeout, maxevents)
        if events:
            self._append((POLL_RETURN, NOW_NS(), len(events)))
        self._busy = bool(events)
        return events

    def __getattr__(self, name: str) -> Any:  # register, modify, unregister, close, fileno
        return getattr(self._epoll, name)


def stamped(original: Callable[..., Any], recorder: Recorder, enter: str | None, leave: str | None,
            size_of: int | None = None) -> Callable[..., Any]:
    """original with a stamp on entry (extra: the length of argument size_of) and/or one on a normal return."""
    append, now_ns = recorder.append, NOW_NS
    enter_code = CODE[enter] if enter else -1
    leave_code = CODE[leave] if leave else -1
    if enter is None:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            append((leave_code, now_ns(), 0))
            return result
    elif size_of is None:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            append((enter_code, now_ns(), 0))
            result = original(*args, **kwargs)
            if leave_code >= 0:
                append((leave_code, now_ns(), 0))
            return result
    else:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            append((enter_code, now_ns(), len(args[size_of])))
            result = original(*args, **kwargs)
            if leave_code >= 0:
                append((leave_code, now_ns(), 0))
            return result

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


class TimestampingSocket:
    """The daemon's UDP socket as its drainer sees it: recvmsg_into also reads the kernel's receive time.

    The timestamp's control message is recorded raw (as_json() turns it into
    monotonic ns with the drain's clock offset) and taken out of what the
    drainer gets, so its UDP_GRO handling sees what it always saw.
    """

    def __init__(self, sock: socket.socket, recorder: Recorder) -> None:
        self._sock = sock
        self._receive = sock.recvmsg_into
        self._append = recorder.append

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> tuple[int, list[Any], int, Any]:
        size, control, msg_flags, source = self._receive(buffers, RECEIVE_CONTROL_BYTES, flags)
        self._append((UDP_RECEIVED, NOW_NS(), size))
        if control:
            kept = []
            for item in control:
                if item[1] == SO_TIMESTAMPNS and item[0] == socket.SOL_SOCKET:
                    self._append((KERNEL_RX, item[2], size))  # struct timespec, CLOCK_REALTIME
                else:
                    kept.append(item)
            control = kept
        return size, control, msg_flags, source

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def stamped_drainer_factory(original: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    """make_socket_drainer, stamping drain entry and exit, each datagram's receive and hand-back."""
    append, now_ns, wall_ns = recorder.append, NOW_NS, time.time_ns
    leave = CODE["udp_drain_exit"]

    def make_socket_drainer(sock: socket.socket, on_datagram: Callable[..., None], *args: Any, **kwargs: Any) -> Callable[[], None]:
        try:
            # The first socket to ask turns the kernel's receive stamps on in a deferred work item: the
            # daemon's first datagrams may be stamped when read, long before any ping is measured.
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            reader: Any = TimestampingSocket(sock, recorder)
        except OSError as exc:
            warn(f"no SO_TIMESTAMPNS ({exc.strerror}); the kernel's receive time is left out")
            reader = sock
        inner = original(reader, stamped(on_datagram, recorder, None, "datagram_handled"), *args, **kwargs)

        def drain() -> None:
            # CLOCK_REALTIME minus CLOCK_MONOTONIC, read back to back: turns the kernel's receive times monotonic.
            wall = wall_ns()
            at = now_ns()
            append((UDP_DRAIN_ENTER, at, wall - at))
            inner()
            append((leave, now_ns(), 0))

        return drain

    return make_socket_drainer


def wrap_attribute(owner: Any, name: str, make: Callable[[Any], Any]) -> bool:
    """owner.name = make(owner.name); a missing name is one warning line, not an error."""
    try:
        original = getattr(owner, name)
        setattr(owner, name, make(original))
        return True
    except Exception as exc:  # whatever the hot path became, the daemon must run on
        warn(f"cannot wrap {getattr(owner, '__name__', owner)}.{name} ({exc.__class__.__name__}: {exc}); that stage is left out")
        return False


def after_init(original: Callable[..., None], then: Callable[[Any], None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            then(self)
        except Exception as exc:
            warn(f"cannot wrap {type(self).__name__}'s bound methods ({exc.__class__.__name__}: {exc}); those stages are left out")

    return __init__


def install(prefix: str) -> Recorder:
    """Wrap the daemon's packet path; dump to <prefix>.<pid>.json when the reactor ends or at exit."""
    recorder = Recorder()
    dumped = [False]

    def dump() -> None:
        if dumped[0]:
            return
        dumped[0] = True
        path = f"{prefix}.{os.getpid()}.json"
        try:
            with open(path + ".tmp", "w") as out:
                json.dump(recorder.as_json(), out)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            warn(f"cannot write {path}: {exc.strerror}")

    atexit.register(dump)
    modules: dict[str, Any] = {}
    for name in ("l2mesh.edge.reactor", "l2mesh.edge.udp", "l2mesh.edge.node.transmit", "l2mesh.edge.node.daemon",
                 "l2mesh.node.send", "l2mesh.switch.switch", "l2mesh.crypto.aead"):
        try:
            modules[name] = __import__(name, fromlist=["_"])
        except Exception as exc:
            warn(f"cannot import {name} ({exc.__class__.__name__}: {exc}); its stages are left out")

    def module_class(module: str, name: str) -> Any:
        found = getattr(modules.get(module), name, None)
        if found is None and module in modules:
            warn(f"no {module}.{name}; its stages are left out")
        return found

    reactor = module_class("l2mesh.edge.reactor", "Reactor")
    if reactor is not None:
        def stamp_epoll(self: Any) -> None:
            self._epoll = StampedEpoll(self._epoll, recorder)

        wrap_attribute(reactor, "__init__", lambda init: after_init(init, stamp_epoll))

        def run_then_dump(run: Callable[[Any], None]) -> Callable[[Any], None]:
            def stamped_run(self: Any) -> None:
                try:
                    run(self)
                finally:
                    dump()
            return stamped_run

        wrap_attribute(reactor, "run", run_then_dump)

    daemon = module_class("l2mesh.edge.node.daemon", "NodeDaemon")
    if daemon is not None:
        def stamped_tap_drainer(tap_drainer: Callable[..., Callable[[], None]]) -> Callable[..., Callable[[], None]]:
            def wrapper(self: Any, *args: Any) -> Callable[[], None]:
                return stamped(tap_drainer(self, *args), recorder, "tap_drain_enter", "tap_drain_exit")
            return wrapper

        wrap_attribute(daemon, "_tap_drainer", stamped_tap_drainer)

    for module in ("l2mesh.edge.udp", "l2mesh.edge.node.daemon"):
        if module in modules:
            wrap_attribute(modules[module], "make_socket_drainer", lambda f: stamped_drainer_factory(f, recorder))

    send_path = module_class("l2mesh.node.send", "SendPath")
    if send_path is not None:
        # size_of=2: (self, network_id, data, now); NodeCore binds it at construction, after this.
        wrap_attribute(send_path, "vnet_frame_from_tap", lambda f: stamped(f, recorder, "tap_read", "frame_handled", size_of=2))

    switch = module_class("l2mesh.switch.switch", "NetworkSwitch")
    if switch is not None:
        wrap_attribute(switch, "route_from_tap", lambda f: stamped(f, recorder, None, "switch_out"))
        wrap_attribute(switch, "accept_from_peer", lambda f: stamped(f, recorder, None, "switch_in"))

    scratch = module_class("l2mesh.crypto.aead", "AeadScratch")
    if scratch is not None:
        wrap_attribute(scratch, "seal", lambda f: stamped(f, recorder, "seal_enter", "seal_done"))
        wrap_attribute(scratch, "open", lambda f: stamped(f, recorder, "open_enter", "open_done"))

    sender = module_class("l2mesh.edge.udp", "DatagramSender")
    if sender is not None:
        def stamp_sends(self: Any) -> None:
            self._sendto = stamped(self._sendto, recorder, "send_enter", "send_done", size_of=0)
            self._sendmsg = stamped(self._sendmsg, recorder, "send_enter", "send_done")

        wrap_attribute(sender, "__init__", lambda init: after_init(init, stamp_sends))

    transmit = module_class("l2mesh.edge.node.transmit", "EdgeTransmit")
    if transmit is not None:
        def stamp_tap_writes(self: Any) -> None:
            self._writev = stamped(self._writev, recorder, "tap_write_enter", "tap_write_done")
            self._write = stamped(self._write, recorder, "tap_write_enter", "tap_write_done")

        wrap_attribute(transmit, "__init__", lambda init: after_init(init, stamp_tap_writes))
    return recorder

