"""`l2mesh-ctl serve`: the controller process.

Three threads. A trio loop serves the admin API (hypercorn) and watches
signals; a reactor thread owns the controller core and its UDP socket, as
the node's does (l2mesh/edge/reactor.py), and carries every packet, relayed
ones included; a storage writer thread (writer.py) owns the database and
makes every write, admin changes and the core's own, so the reactor never
waits on an fsync. The API address and a bearer token are written into the
state directory, where `l2mesh-ctl` on the same host finds them (as
zerotier-cli finds its authtoken).
"""

from __future__ import annotations

import logging
from functools import partial
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.defaults import API_FILE, DEFAULT_API, DEFAULT_LISTEN, DEFAULT_RELAY_LIMIT_MBPS, TOKEN_FILE
from l2mesh.controller.directory import Directory
from l2mesh.controller.storage import Storage
from l2mesh.edge.controller.api import build_app
from l2mesh.controller.heartbeat import Departure
from l2mesh.controller.instances import INSTANCE_LIVE_S
from l2mesh.edge.controller.change_feed import watch_changes
from l2mesh.edge.controller.metrics import is_loopback_host
from l2mesh.edge.controller.storage_url import open_storage
from l2mesh.edge.controller.writer import StorageWriter
from l2mesh.edge.reactor_edge import ReactorEdge
from l2mesh.edge.drop_log import DropLog
from l2mesh.edge.roots import endpoint_text, resolved_roots, save_root_pin
from l2mesh.root_spec import RootSpec
from l2mesh.errors import L2meshError, StateError
from l2mesh.edge.identity_file import load_identity_file, load_or_create_identity
from l2mesh.netconf import usable_endpoint
from l2mesh.ids import format_node_id
from l2mesh.edge.reactor import Reactor
from l2mesh.edge.sd_notify import notify_ready
from l2mesh.edge.statefile import atomic_write_bytes, atomic_write_json, ensure_state_dir
from l2mesh.edge.udp import DatagramSender, Endpoint, make_socket_drainer, open_udp_socket


T = TypeVar("T")
log = logging.getLogger("l2mesh.controller")


@dataclass
class ServeOptions:
    state_dir: Path
    listen: Endpoint = DEFAULT_LISTEN
    api: Endpoint = DEFAULT_API
    relay_limit_mbps: int = DEFAULT_RELAY_LIMIT_MBPS
    roots: list[RootSpec] = field(default_factory=list)
    db_url: str | None = None  # None: controller.db in the state directory, this instance's alone
    identity_file: Path | None = None  # None: identity.json in the state directory
    # The admin API and web admin off loopback (issue 15): served with TLS, or behind a TLS-terminating proxy.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    behind_proxy: bool = False

    def check_api_exposure(self) -> None:
        """Off loopback, the API (and its login links, cookies, passwords) only over TLS: ours or a proxy's."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise L2meshError("give both --tls-cert and --tls-key")
        if self.tls_cert is not None and self.tls_key is not None:
            try:  # here, where a bad file is one line, not inside hypercorn's task group
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.tls_cert, self.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise L2meshError(f"cannot load --tls-cert {self.tls_cert} / --tls-key {self.tls_key}: {exc.strerror or exc}") from None
            return
        if self.behind_proxy or is_loopback_host(self.api[0]):
            return
        raise L2meshError(
            f"the admin API would listen on {self.api[0]} without TLS: give --tls-cert and --tls-key, "
            "or --behind-proxy when a reverse proxy in front of it serves HTTPS (see README, Web admin)"
        )

    @property
    def api_scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"


def load_or_create_token(state_dir: Path) -> str:
    path = state_dir / TOKEN_FILE
    if path.exists():
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from None
        if len(token) >= 16:
            return token
    token = secrets.token_urlsafe(32)
    atomic_write_bytes(path, (token + "\n").encode())
    return token


class ControllerServer:
    def __init__(self, options: ServeOptions) -> None:
        options.check_api_exposure()
        self.options = options
        ensure_state_dir(options.state_dir)
        if options.identity_file is not None:
            self.identity = load_identity_file(options.identity_file)
        else:
            self.identity = load_or_create_identity(options.state_dir)
        self.storage = open_storage(options.db_url, options.state_dir)
        self.token = load_or_create_token(options.state_dir)
        self.sock = open_udp_socket(options.listen[1], options.listen[0])
        self.sender = DatagramSender(self.sock)
        # Read once, before any thread runs; from here on only the writer thread touches storage.
        directory = Directory.load(self.storage)
        self.core = ControllerCore(self.identity, directory, self.sender, relay_limit_mbps=options.relay_limit_mbps)
        self.drop_log = DropLog(log, "the drops of `l2mesh-ctl status --json`")
        # Other instances on this database (issue 12), before any thread runs: greet_members leaves their members alone.
        self.core.instance_endpoints = instance_endpoints(options.listen)
        self.core.instances = tuple(self.storage.live_instances(time.time() - INSTANCE_LIVE_S))
        self.writer = StorageWriter(self.storage, self.core.committed)
        self.reactor = Reactor(self._tick)
        drainer = make_socket_drainer(self.sock, self.core.datagram_received, time.monotonic, self.core.segments_received)
        self.reactor.add_reader(self.sock.fileno(), drainer)
        self.reactor.add_reader(self.writer.doorbell, self.writer.results_ready)
        self.edge = ReactorEdge(self.reactor, self.sock, self.sender, pause_readers=False)
        self.reactor.after_wakeup = self._after_wakeup

    def _tick(self, now: float) -> None:
        self.core.tick(now)
        self.drop_log.check(now, self.core.drops)
        while self.core.pinned_roots:
            endpoint, identity = self.core.pinned_roots.pop()
            save_root_pin(self.options.state_dir, endpoint, identity)
            log.info("root %s at %s: keys pinned", format_node_id(identity.node_id), endpoint_text(endpoint))

    async def _add_roots(self) -> None:
        async for endpoint, expected_id, pinned in resolved_roots(self.options.roots, self.options.state_dir, log):
            await self.read(partial(ControllerCore.add_root, endpoint=endpoint, expected_id=expected_id, identity=pinned))

    def _external_change(self, network_id: int | None) -> None:
        """The change feed (trio thread): the database changed; the core reloads it on the reactor thread."""
        self.reactor.call(lambda: self.core.external_change(network_id))

    def _after_wakeup(self) -> None:
        """Reactor thread, after each batch: parked datagrams, and the writes the core asked for."""
        self.edge.check_backlog()
        for write in self.core.take_writes():
            self.writer.write(write)

    async def read(self, function: Callable[[ControllerCore], T]) -> T:
        """function(core) on the reactor thread: views of the directory and sessions, no storage."""
        return await self.edge.call(lambda: function(self.core))

    async def change(self, perform: Callable[[Storage], Committed]) -> Any:
        """An admin change on the writer thread, then applied (and pushed) on the reactor thread: the core's answer."""
        # Woken by the thread that settles the future (no trio worker thread waiting on it per change).
        token = trio.lowlevel.current_trio_token()
        settled = trio.Event()
        future = self.writer.change(perform)
        future.add_done_callback(lambda _: token.run_sync_soon(settled.set))
        await settled.wait()
        return future.result()

    async def run(self) -> None:
        config = Config()
        host, port = self.options.api
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("l2mesh.controller.http")
        if self.options.tls_cert is not None:
            config.certfile, config.keyfile = str(self.options.tls_cert), str(self.options.tls_key)
        scheme = self.options.api_scheme
        app = build_app(self, self.token, self.identity.node_id, secure_cookies=scheme == "https" or self.options.behind_proxy,
                        behind_proxy=self.options.behind_proxy)
        shutdown = trio.Event()
        self.writer.start()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.edge.run_reactor, nursery.cancel_scope)
                if self.options.db_url is not None:
                    # A database other instances may share: hear of their commits (and reload once, for
                    # anything committed between our first read and the feed starting).
                    await nursery.start(partial(watch_changes, self.options.db_url, self._external_change))
                    self._external_change(None)
                greeted = await self.read(lambda core: core.greet_members(time.monotonic()))
                await self._add_roots()
                nursery.start_soon(self.edge.stop_on_signals, shutdown.set, "stopping")
                try:
                    await serve_api(app, config, shutdown, nursery)
                except OSError as exc:
                    raise L2meshError(f"cannot serve the admin API on {host}:{port}: {exc.strerror}") from None
                atomic_write_json(
                    self.options.state_dir / API_FILE,
                    {"url": f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}", "listen": list(self.options.listen)},
                )
                log.info(
                    "controller %s: UDP %s:%d, admin API %s://%s:%d; greeted %d known members",
                    format_node_id(self.identity.node_id), *self.options.listen, scheme, host, port, greeted,
                )
                # Admin API listening and api.json written: `systemctl start l2mesh-ctl` may return.
                notify_ready(f"controller {format_node_id(self.identity.node_id)}: admin API {scheme}://{host}:{port}")
                await shutdown.wait()
                nursery.cancel_scope.cancel()
        finally:
            # A clean stop: our row goes, and the other instances drop us from their configs at their next heartbeat.
            self.writer.write(Departure(self.core.instance_id))
            self.writer.stop()  # commits what is queued
            self.edge.shutdown()
            self.writer.close()  # the doorbell, once the reactor no longer watches it, and the database
            self.sock.close()


async def serve_api(app: Any, config: Config, shutdown: trio.Event, nursery: trio.Nursery) -> None:
    """Start hypercorn in the nursery and return once it listens (bind errors are raised here)."""
    await nursery.start(_serve, app, config, shutdown)


async def _serve(app: Any, config: Config, shutdown: trio.Event, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)


def instance_endpoints(listen: Endpoint) -> list[Endpoint]:
    """Where members reach this instance, for the other instances' configs: the listen address, or every
    address of this host when it listens on all (loopback and our own overlay TAPs left out)."""
    host, port = listen
    if host not in ("0.0.0.0", "::", ""):
        return [(host, port)]
    try:
        with IPRoute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") or "" for link in ipr.get_links()}
            messages = ipr.get_addr(family=socket.AF_INET)
    except (NetlinkError, OSError):
        return []
    addresses = [
        m.get_attr("IFA_ADDRESS") for m in messages
        if m.get_attr("IFA_ADDRESS") and not names.get(m["index"], "").startswith(("lo", "l2m"))
    ]
    return [(a, port) for a in addresses if usable_endpoint((a, port))]


def run_controller(options: ServeOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = ControllerServer(options)
    trio.run(server.run)
    return 0
