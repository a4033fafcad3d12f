"""The node daemon: a trio loop for the control plane and a data-plane thread for frames.

The trio nursery lives as long as the daemon and holds the control socket,
the signal watcher and the data-plane thread (see dataplane.py for why frames
do not go through trio). Network set-up (TAP devices, addresses) happens on
the data-plane thread when the core reports a config change, so the core and
the TAP table are only ever touched by one thread.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from l2mesh import __version__
from l2mesh.errors import L2meshError
from l2mesh.identity import Identity
from l2mesh.ids import format_mac, format_network_id, format_node_id
from l2mesh.netconf import NetworkConfig
from l2mesh.node.control import serve_control
from l2mesh.node.core import NetworkConfigured, NetworkRemoved, NodeCore
from l2mesh.node.dataplane import DataPlane
from l2mesh.node.tap import TapDevice, TapError, check_tap_support, tap_name_for
from l2mesh.node.udp import EdgeTransmit, open_udp_socket
from l2mesh.statefile import ensure_state_dir, read_json

DEFAULT_NODE_PORT = 9993

T = TypeVar("T")
log = logging.getLogger("l2mesh.daemon")


@dataclass
class DaemonOptions:
    state_dir: Path
    port: int = DEFAULT_NODE_PORT
    static_netconfs: list[Path] = field(default_factory=list)


class NodeDaemon:
    def __init__(self, options: DaemonOptions, identity: Identity, static_configs: list[NetworkConfig]) -> None:
        self.options = options
        self.identity = identity
        self.sock = open_udp_socket(options.port)
        self.transmit = EdgeTransmit(self.sock)
        self.core = NodeCore(identity, self.transmit)
        self.dataplane = DataPlane(self.core, self.transmit, self.sock, self._on_core_event)
        self.taps: dict[int, TapDevice] = {}  # touched on the data-plane thread only
        self.started_s = time.monotonic()
        self._static_configs = static_configs

    # -- lifetime ----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_control, self.options.state_dir, self.handle_control)
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)
                nursery.start_soon(self._run_dataplane, nursery.cancel_scope)
                for config in self._static_configs:
                    await self.on_core(lambda core, c=config: core.apply_netconf(c))
                log.info("node %s listening on UDP %d", format_node_id(self.identity.node_id), self.options.port)
        finally:
            self.dataplane.stop()
            for device in self.taps.values():
                device.close()
            self.taps.clear()
            self.sock.close()

    async def _run_dataplane(self, scope: trio.CancelScope) -> None:
        # Not abandonable: cancellation first stops the thread (stop()), then waits for it.
        try:
            await trio.to_thread.run_sync(self.dataplane.run)
        finally:
            scope.cancel()

    async def _watch_signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal %d: removing TAP devices and exiting", signum)
                self.dataplane.stop()
                scope.cancel()
                return

    async def on_core(self, function: Callable[[NodeCore], T]) -> T:
        """Run function(core) on the data-plane thread and wait for its result."""
        future = self.dataplane.call(function)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)

    # -- network set-up (data-plane thread) --------------------------------------------------------
    def _on_core_event(self, event: object) -> None:
        try:
            if isinstance(event, NetworkConfigured):
                self._configure_tap(event.network_id, event.config)
            elif isinstance(event, NetworkRemoved):
                self._remove_tap(event.network_id)
        except TapError as exc:
            log.error("%s", exc)

    def _configure_tap(self, network_id: int, config: NetworkConfig) -> None:
        device = self.taps.get(network_id)
        if device is None:
            state = self.core.networks[network_id]
            device = self.taps[network_id] = TapDevice(tap_name_for(network_id), state.mac, config.mtu_bytes)
            self.dataplane.add_tap(network_id, device.fd)
            log.info("network %s: TAP %s up", format_network_id(network_id), device.name)
        device.set_mtu(config.mtu_bytes)
        me = config.member(self.identity.node_id)
        device.set_addresses(set(me.ips) if me else set())

    def _remove_tap(self, network_id: int) -> None:
        device = self.taps.pop(network_id, None)
        self.dataplane.remove_tap(network_id)
        if device is not None:
            device.close()

    # -- control socket (trio) -----------------------------------------------------------------------
    async def handle_control(self, request: dict[str, Any]) -> Any:
        command = request["command"]
        if command == "status":
            return await self.on_core(self._status)
        raise L2meshError(f"unknown command {command!r}")

    def _status(self, core: NodeCore) -> dict[str, Any]:
        counters = core.counters()
        counters["edge"] = dict(self.transmit.drops)
        return {
            "id": format_node_id(self.identity.node_id),
            "port": self.options.port,
            "version": __version__,
            "online": True,
            "uptime_s": round(time.monotonic() - self.started_s, 1),
            "networks": [
                {
                    "id": format_network_id(nid),
                    "status": state.status.value,
                    "iface": self.taps[nid].name if nid in self.taps else None,
                    "mac": format_mac(state.mac),
                }
                for nid, state in core.networks.items()
            ],
            "peers": len(core.peers),
            "counters": counters,
        }


def load_static_netconf(path: Path, identity: Identity) -> NetworkConfig:
    config = NetworkConfig.from_json(read_json(path))
    if config.issued_to != identity.node_id:
        raise L2meshError(
            f"{path} was issued to {format_node_id(config.issued_to)}, this node is {format_node_id(identity.node_id)}"
        )
    return config


def run_daemon(options: DaemonOptions) -> int:
    check_tap_support()
    ensure_state_dir(options.state_dir)
    identity = Identity.load_or_create(options.state_dir)
    configs = [load_static_netconf(p, identity) for p in options.static_netconfs]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trio.run(NodeDaemon(options, identity, configs).run)
    return 0
