"""`l2mesh-ctl root`: the root process.

Two threads, as the controller process has: a reactor thread owns the root
core, its UDP socket and the TCP fallback's listener and connections, and
carries every packet; a trio loop watches signals. No database and no
admin API: the root's only state is its identity, kept in the state
directory with root.json (its id and where it listens) for operators and
scripts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from l2mesh.controller.defaults import DEFAULT_RELAY_LIMIT_MBPS
from l2mesh.edge.identity_file import load_or_create_identity
from l2mesh.edge.reactor import Reactor
from l2mesh.edge.reactor_edge import ReactorEdge
from l2mesh.edge.drop_log import DropLog
from l2mesh.edge.root.streams import RootTransmit, StreamListener, open_tcp_listener
from l2mesh.edge.sd_notify import notify_ready
from l2mesh.edge.statefile import atomic_write_json, ensure_state_dir
from l2mesh.edge.udp import DatagramSender, Endpoint, make_socket_drainer, open_udp_socket
from l2mesh.ids import format_node_id
from l2mesh.ports import DEFAULT_ROOT_PORT
from l2mesh.root.core import RootCore

log = logging.getLogger("l2mesh.root")
ROOT_FILE = "root.json"
DEFAULT_ROOT_LISTEN: Endpoint = ("0.0.0.0", DEFAULT_ROOT_PORT)
STREAM_TICK_S = 1.0


def format_endpoint(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class RootOptions:
    state_dir: Path
    listen: Endpoint = DEFAULT_ROOT_LISTEN
    tcp_listen: Endpoint | None = None
    relay_limit_mbps: int = DEFAULT_RELAY_LIMIT_MBPS


class RootServer:
    def __init__(self, options: RootOptions) -> None:
        self.options = options
        ensure_state_dir(options.state_dir)
        self.identity = load_or_create_identity(options.state_dir)
        self.sock = open_udp_socket(options.listen[1], options.listen[0])
        tcp_sock = None
        try:
            tcp_sock = open_tcp_listener(options.tcp_listen) if options.tcp_listen is not None else None
        except BaseException:
            self.sock.close()
            raise
        self.sender = DatagramSender(self.sock)
        self.reactor = Reactor(self._tick)
        self.streams = None
        if tcp_sock is not None:
            self.streams = StreamListener(tcp_sock, self.reactor, self._stream_datagram, time.monotonic, self._stream_segments)
        self.core = RootCore(self.identity, RootTransmit(self.sender, self.streams), options.relay_limit_mbps)
        self.drop_log = DropLog(log, "the root's drop counters")
        drainer = make_socket_drainer(self.sock, self.core.datagram_received, time.monotonic, self.core.segments_received)
        self.reactor.add_reader(self.sock.fileno(), drainer)
        self.edge = ReactorEdge(self.reactor, self.sock, self.sender, pause_readers=False)
        self.reactor.after_wakeup = self.edge.check_backlog
        self._next_stream_tick_s = 0.0

    def _stream_datagram(self, data: memoryview, remote: Endpoint, now: float, stream: bool) -> None:
        self.core.datagram_received(data, remote, now, stream)

    def _stream_segments(self, data: memoryview, segment_bytes: int, remote: Endpoint, now: float) -> bool:
        return self.core.segments_received(data, segment_bytes, remote, now, stream=True)

    def _tick(self, now: float) -> None:
        self.core.tick(now)
        self.drop_log.check(now, self.core.drops, self.streams.drops if self.streams is not None else {})
        if self.streams is not None and now >= self._next_stream_tick_s:
            self._next_stream_tick_s = now + STREAM_TICK_S
            self.streams.tick(now)

    def describe(self) -> dict[str, object]:
        tcp = self.options.tcp_listen
        return {
            "id": format_node_id(self.identity.node_id),
            "udp": format_endpoint(self.options.listen),
            "tcp": format_endpoint(tcp) if tcp is not None else None,
            **self.identity.public.to_json(),
        }

    async def run(self) -> None:
        shutdown = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.edge.run_reactor, nursery.cancel_scope)
                nursery.start_soon(self.edge.stop_on_signals, shutdown.set, "stopping")
                atomic_write_json(self.options.state_dir / ROOT_FILE, self.describe(), mode=0o644)
                where = f"udp {format_endpoint(self.options.listen)}"
                if self.options.tcp_listen is not None:
                    where += f", tcp {format_endpoint(self.options.tcp_listen)}"
                log.info("root %s listening on %s", format_node_id(self.identity.node_id), where)
                notify_ready(f"root {format_node_id(self.identity.node_id)} listening on {where}")
                await shutdown.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.edge.shutdown()
            if self.streams is not None:
                self.streams.close()
            self.sock.close()


def run_root(options: RootOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = RootServer(options)
    trio.run(server.run)
    return 0
