"""The node daemon: a trio loop for the control plane and a reactor thread for packets.

The trio nursery lives as long as the daemon and holds the control socket,
the signal watcher and the reactor thread (see l2mesh/edge/reactor.py for why
frames do not go through trio). Network set-up (TAP devices, addresses,
cached configs) happens on the reactor thread when the core reports a
change, so the core and the TAP table are only ever touched by one thread.
What a network changes on the host beyond its TAP (managed routes,
forwarding, DNS) is host_setup.py's.
"""

from __future__ import annotations

import logging
from functools import partial
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from l2mesh import __version__
from l2mesh.edge.reactor_edge import ReactorEdge
from l2mesh.edge.drop_log import DropLog
from l2mesh.edge.roots import resolve_endpoint, resolved_roots, save_root_pin
from l2mesh.errors import L2meshError
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.edge.identity_file import load_or_create_identity
from l2mesh.ids import controller_of, format_mac, format_network_id, format_node_id, parse_network_id
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.netconf_delta import MemberChanges
from l2mesh.edge.node.control_server import serve_control
from l2mesh.node.core import (
    BroadcastStorm,
    LoopStateChanged,
    NetworkConfigured,
    NetworkRemoved,
    NetworkStatusChanged,
    NodeCore,
)
from l2mesh.edge.node.host_setup import HostSetup
from l2mesh.edge.node.kernel_groups import GroupWatcher, read_link_groups
from l2mesh.edge.node.options import DaemonOptions
from l2mesh.edge.node.portmap import PortMapper
from l2mesh.node.decisions import AnnounceEndpoints
from l2mesh.node.events import ControllerIdentityLearned, FlowRuleMatched, NetworkStatus, RootPinned
from l2mesh.node.join_options import JoinOptions
from l2mesh.node.network_state import NetworkState
from l2mesh.node.ping import PingReply, resolve_node
from l2mesh.node.route_plan import needs_underlay_hosts
from l2mesh.switch.flow_rules import OUTBOUND
from l2mesh.edge.node.state_dir import JoinedNetwork, NodeState, endpoint_text
from l2mesh.edge.node.tap import TapDevice, check_tap_support, tap_name_for
from l2mesh.edge.node.transmit import EdgeTransmit
from l2mesh.ports import DEFAULT_CONTROLLER_PORT
from l2mesh.edge.reactor import Reactor
from l2mesh.edge.sd_notify import notify_ready
from l2mesh.edge.statefile import ensure_state_dir, read_json
from l2mesh.edge.node.tcp_fallback import TcpFallback
from l2mesh.edge.udp import Endpoint, make_socket_drainer, open_udp_socket

DEFAULT_MTU_BYTES = 2800
TAP_DRAIN_BATCH = 256
MAX_FRAME_BYTES = 65536 + 14 + 10
# Subscriptions reach peers within this (plus a round trip) of a socket joining a group.
GROUP_POLL_INTERVAL_S = 0.25
LOCAL_ENDPOINT_SCAN_S = 30.0
REACHABILITY_CHECK_S = 5.0
# `l2mesh ping`: how long one probe is waited for by default and at most (below the control client's
# own timeout), and how often the trio side looks for the reply the core timed.
PING_TIMEOUT_S = 5.0
MAX_PING_TIMEOUT_S = 30.0
PING_POLL_S = 0.01
# After this long without an answer from any root or controller, the node says it is cut off (once).
UNREACHABLE_AFTER_S = 15.0

T = TypeVar("T")
log = logging.getLogger("l2mesh.daemon")


class NodeDaemon:
    def __init__(self, options: DaemonOptions, identity: Identity, static_configs: list[NetworkConfig]) -> None:
        self.options = options
        self.identity = identity
        self.state = NodeState(options.state_dir)
        self.joined = self.state.load_joined()
        self.sock = open_udp_socket(options.port)
        self.transmit = EdgeTransmit(self.sock)
        self.core = NodeCore(identity, self.transmit)
        self.drop_log = DropLog(log, "`l2mesh status --json` counters")
        self.reactor = Reactor(self._tick)
        self.groups = GroupWatcher()
        self._next_group_poll_s = 0.0
        self._next_endpoint_scan_s = 0.0
        # Frames one drain decrypts for a TAP leave coalesced (UDP_L4 super-frames), written before it returns.
        udp_reader = self.transmit.frames_batched(make_socket_drainer(
            self.sock, self.core.datagram_received, time.monotonic, on_segments=self.core.segments_received
        ))
        self.reactor.add_reader(self.sock.fileno(), udp_reader)
        self.tcp_fallback = TcpFallback(
            self.core, self.transmit, self.sock, self.reactor, udp_reader,
            lambda on_datagram: make_socket_drainer(self.sock, on_datagram, time.monotonic), time.monotonic(),
        )
        self.port_mapper = PortMapper(self.reactor, options.port) if options.port_mapping else None
        self.edge = ReactorEdge(self.reactor, self.sock, self.transmit, pause_readers=True)
        self.reactor.after_wakeup = self._after_wakeup
        self.taps: dict[int, TapDevice] = {}  # touched on the reactor thread only
        self.host = HostSetup(identity.node_id, options.port, self.sock, self.reactor)
        self.started_s = time.monotonic()
        self._static_configs = static_configs
        self._next_reachability_check_s = 0.0
        self.unreachable = False  # no root and no controller answers: said once in the log

    # -- lifetime --------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_control, self.options.state_dir, self.handle_control)
                if self.options.metrics_listen is not None:
                    # Imported only with the flag: prometheus_client stays out of an idle daemon (issue 17).
                    from l2mesh.edge.node.metrics import serve_node_metrics

                    await nursery.start(serve_node_metrics, self.options.metrics_listen, self.on_core, self.reactor, self.transmit.drops)
                nursery.start_soon(self.edge.stop_on_signals, nursery.cancel_scope.cancel, "removing TAP devices and exiting")
                nursery.start_soon(self.edge.run_reactor, nursery.cancel_scope)
                for config in self._static_configs:
                    await self.on_core(partial(NodeCore.apply_netconf, config=config))
                await self._add_roots()
                for network_id, joined in list(self.joined.items()):
                    await self.on_core(partial(self._rejoin, network_id=network_id, endpoint=joined.controller))
                log.info("node %s listening on UDP %d", format_node_id(self.identity.node_id), self.options.port)
                # Control socket listening, cached networks rejoined: `systemctl start` may return.
                notify_ready(f"node {format_node_id(self.identity.node_id)} on UDP {self.options.port}")
        finally:
            self.edge.shutdown()
            if self.port_mapper is not None:
                self.port_mapper.close()
            self.groups.close()
            # Before the TAPs go: routes, policy rules, NAT and sysctls are undone while their devices exist.
            self.host.close()
            for device in self.taps.values():
                device.close()
            self.taps.clear()
            self.tcp_fallback.close()
            self.sock.close()

    async def _add_roots(self) -> None:
        async for endpoint, expected_id, pinned in resolved_roots(self.options.roots, self.options.state_dir, log):
            await self.on_core(partial(self._add_root, endpoint=endpoint, expected_id=expected_id, pinned=pinned))

    def _add_root(self, core: NodeCore, endpoint: Endpoint, expected_id: int | None, pinned: PublicIdentity | None) -> None:
        core.add_root(endpoint, expected_id, pinned, time.monotonic())

    def _rejoin(self, core: NodeCore, network_id: int, endpoint: Endpoint | None) -> None:
        core.join(
            network_id,
            endpoint,
            time.monotonic(),
            controller_identity=self.state.load_controller(controller_of(network_id)),
            cached_signed=self.state.load_signed_netconf(network_id),
        )
        self._ensure_tap(network_id, DEFAULT_MTU_BYTES)
        self._update_host(network_id)

    async def on_core(self, function: Callable[[NodeCore], T]) -> T:
        """Run function(core) on the reactor thread and wait for its result."""
        return await self.edge.call(lambda: function(self.core))

    # -- reactor thread: back-pressure and core events ----------------------------------------------
    def _after_wakeup(self) -> None:
        if self.core.events:
            self._deliver_events()
        self.edge.check_backlog()

    def _tick(self, now: float) -> None:
        self.core.tick(now)
        self.drop_log.check(
            now, self.core.drops, self.core.reassembler.drops, self.transmit.drops, *(r.drops for r in self.host.responders.values())
        )
        if self.core.roots.links:
            self.tcp_fallback.tick(now)
        if now >= self._next_reachability_check_s:
            self._next_reachability_check_s = now + REACHABILITY_CHECK_S
            self._check_reachability(now)
        mapping_changed = self.port_mapper is not None and self.port_mapper.tick(now)
        if now >= self._next_endpoint_scan_s or mapping_changed:
            self._next_endpoint_scan_s = now + LOCAL_ENDPOINT_SCAN_S
            addresses = self.groups.local_ipv4_addresses({d.name for d in self.taps.values()})
            # The router's mapping first: it is what reaches us from the Internet.
            mapped = self.port_mapper.endpoints() if self.port_mapper is not None else []
            self.core.paths.local_endpoints = [*mapped, *((a, self.options.port) for a in addresses)]
            if mapping_changed:
                # Controllers hand our endpoints to peers (hints, configs): tell them now, not at the next refresh.
                trusted = [link.node_id for link in self.core.membership.controllers.values() if link.identity is not None]
                self.core.apply([AnnounceEndpoints(node_id) for node_id in trusted], now)
        if now >= self._next_group_poll_s and self.taps:
            self._next_group_poll_s = now + GROUP_POLL_INTERVAL_S
            link_groups = read_link_groups()
            for network_id, device in self.taps.items():
                self.core.set_local_groups(network_id, self.groups.groups_of(link_groups, device.name), now)

    def _reachable(self, core: NodeCore, now: float) -> bool:
        """Some root or controller answered recently (or there is nothing to reach: static configs only)."""
        wanted = [p for p in core.peers.values() if p.is_root or p.is_controller]
        if not wanted and not core.roots.links and not core.membership.controllers:
            return True
        if now - self.started_s < UNREACHABLE_AFTER_S:
            return True
        return any(p.last_rx_s is not None and now - p.last_rx_s <= UNREACHABLE_AFTER_S for p in wanted)

    def _check_reachability(self, now: float) -> None:
        reachable = self._reachable(self.core, now)
        if reachable == (not self.unreachable):
            return
        self.unreachable = not reachable
        if reachable:
            log.info("a root or controller answers again")
        else:
            log.warning(
                "cannot reach any root or controller (%d roots, %d controllers): check the underlay, "
                "`l2mesh roots` and `l2mesh networks`; retrying", len(self.core.roots.links), len(self.core.membership.controllers),
            )

    def _deliver_events(self) -> None:
        events = self.core.events
        while events:
            event = events.popleft()
            try:
                if isinstance(event, NetworkConfigured):
                    me = self._own_member(event.network_id, event.config)
                    self._configure_tap(event.network_id, event.config, me)
                    log.info(
                        "network %s: OK, revision %d, %d members, addresses %s, %d flow rules",
                        format_network_id(event.network_id), event.config.revision, len(event.config.members),
                        ", ".join(me.ips) if me and me.ips else "none", len(event.config.rules.rules),
                    )
                    if event.signed is not None and event.network_id in self.joined:  # not one just left
                        self.state.save_signed_netconf(event.network_id, event.signed)
                    self._update_host(event.network_id, event.config, event.changes)
                elif isinstance(event, NetworkStatusChanged):
                    device = self.taps.get(event.network_id)
                    if device is not None:
                        device.set_addresses(set())
                    log.info("network %s: %s", format_network_id(event.network_id), event.status.value)
                    self._update_host(event.network_id)
                elif isinstance(event, NetworkRemoved):
                    self._remove_tap(event.network_id)
                    self.host.left(event.network_id)
                elif isinstance(event, ControllerIdentityLearned):
                    self.state.save_controller(event.identity)
                elif isinstance(event, RootPinned):
                    save_root_pin(self.options.state_dir, event.endpoint, event.identity)
                    log.info("root %s at %s: keys pinned", format_node_id(event.node_id), endpoint_text(event.endpoint))
                elif isinstance(event, LoopStateChanged):
                    peers = ", ".join(format_node_id(n) for n in event.neighbours) or "none"
                    if event.blocked:
                        log.warning(
                            "network %s: LOOP: bridge member(s) %s share this LAN segment; standing down "
                            "(only this node's own MAC is carried) until they leave it",
                            format_network_id(event.network_id), peers,
                        )
                    else:
                        log.warning("network %s: loop gone; carrying the LAN again", format_network_id(event.network_id))
                elif isinstance(event, FlowRuleMatched):
                    dropped = event.action == "drop"
                    log.log(
                        logging.WARNING if dropped else logging.INFO,
                        "network %s: rule line %d (%s) %s a frame %s %s (logged once per rule, direction and peer; "
                        "counts: l2mesh rules %s)",
                        format_network_id(event.network_id), event.line, event.rule,
                        "dropped" if dropped else "logged",
                        "to" if event.direction == OUTBOUND else "from",
                        format_node_id(event.peer), format_network_id(event.network_id),
                    )
                elif isinstance(event, BroadcastStorm):
                    log.warning(
                        "network %s: broadcast/multicast storm from %s, excess frames dropped (logged once)",
                        format_network_id(event.network_id), format_node_id(event.source),
                    )
            except L2meshError as exc:
                log.error("%s", exc)

    def _update_host(
        self, network_id: int, configured: NetworkConfig | None = None, changes: MemberChanges | None = None
    ) -> None:
        """Hand the network's current config (None unless OK), join flags and underlay peers to the host set-up;
        with what a delta changed, when the config it made (configured) is still the current one."""
        state = self.core.networks.get(network_id)
        device = self.taps.get(network_id)
        if state is None or device is None:
            return
        config = state.config if state.status is NetworkStatus.OK else None
        options = self._join_options(network_id)
        changes = changes if configured is config else None
        me = self._own_member(network_id, config) if config is not None else None
        hosts = self._underlay_hosts(network_id, config) if needs_underlay_hosts(config) else ()
        self.host.update(network_id, device.name, config, me, options, hosts, changes)

    def _own_member(self, network_id: int, config: NetworkConfig) -> MemberConfig | None:
        """This node as config lists it: by id when config is the one held, else (an event behind the
        state) by going through its members."""
        state = self.core.networks.get(network_id)
        if state is not None and state.config is config:
            return self.core.nets.member(network_id, self.identity.node_id)
        return config.member(self.identity.node_id)

    def _underlay_hosts(self, network_id: int, config: NetworkConfig | None) -> tuple[str, ...]:
        """Where this node's UDP goes on the underlay: the controller and every peer's known endpoints.
        A managed route holding one of them would pull the overlay's own traffic into itself."""
        hosts = {peer.endpoint[0] for peer in self.core.peers.values() if peer.endpoint is not None}
        hosts.update(m.last_endpoint[0] for m in self.core.peer_table.idle_members() if m.last_endpoint is not None)
        controller = self.core.membership.controller_endpoint(network_id)
        if controller is not None:
            hosts.add(controller[0])
        if config is not None:
            hosts.update(host for m in config.members if m.node_id != self.identity.node_id for host, _ in m.endpoints)
        return tuple(sorted(hosts))

    def _ensure_tap(self, network_id: int, mtu_bytes: int) -> TapDevice:
        device = self.taps.get(network_id)
        if device is None:
            state = self.core.networks[network_id]
            name = tap_name_for(network_id, {d.name for d in self.taps.values()})
            device = self.taps[network_id] = TapDevice(name, state.mac, mtu_bytes, self.options.offload)
            self.transmit.tap_fds[network_id] = device.fd
            self.reactor.add_reader(device.fd, self._tap_drainer(network_id, device.fd))
            log.info("network %s: TAP %s up", format_network_id(network_id), device.name)
        return device

    def _tap_drainer(self, network_id: int, fd: int) -> Callable[[], None]:
        read = os.read
        frame_from_tap = self.core.vnet_frame_from_tap
        transmit = self.transmit

        frames_last_wakeup = 0

        def drain() -> None:
            nonlocal frames_last_wakeup
            now = time.monotonic()
            # A wake-up that follows a busy one holds what it reads for runs, one send each. After a
            # single frame (a ping, a game tick) the next frame is sent at once instead: a run would
            # make it wait for the read that finds the TAP empty, on the path of every lone packet.
            batching = frames_last_wakeup > 1
            if batching:
                transmit.hold()
            frames = 0
            try:
                for _ in range(TAP_DRAIN_BATCH):
                    try:
                        frame = read(fd, MAX_FRAME_BYTES)
                    except BlockingIOError:
                        return
                    except OSError:
                        self.reactor.remove_reader(fd)  # the device went away
                        return
                    frames += 1
                    frame_from_tap(network_id, frame, now)
            finally:
                frames_last_wakeup = frames
                if batching:
                    transmit.release()

        return drain

    def _configure_tap(self, network_id: int, config: NetworkConfig, me: MemberConfig | None) -> None:
        device = self._ensure_tap(network_id, config.mtu_bytes)
        device.set_mtu(config.mtu_bytes)
        device.set_addresses(set(me.ips) if me else set())

    def _remove_tap(self, network_id: int) -> None:
        device = self.taps.pop(network_id, None)
        self.transmit.tap_fds.pop(network_id, None)
        if device is not None:
            self.reactor.remove_reader(device.fd)
            device.close()

    # -- control socket (trio thread) -------------------------------------------------------------------
    async def handle_control(self, request: dict[str, Any]) -> Any:
        command = request["command"]
        if command == "status":
            return await self.on_core(self._status)
        if command == "networks":
            return await self.on_core(self._networks)
        if command == "peers":
            return await self.on_core(self._peers)
        if command == "roots":
            return await self.on_core(lambda core: core.roots.view(time.monotonic()))
        if command == "macs":
            return await self.on_core(self._macs)
        if command == "rules":
            network_id = parse_network_id(str(request.get("network_id")))
            return await self.on_core(partial(self._rules, network_id=network_id))
        if command == "join":
            return await self._join(request)
        if command == "leave":
            return await self._leave(request)
        if command == "ping":
            return await self._ping(request)
        raise L2meshError(f"unknown command {command!r}")

    async def _join(self, request: dict[str, Any]) -> dict[str, Any]:
        network_id = parse_network_id(str(request.get("network_id")))
        controller = str(request.get("controller") or "")
        endpoint: Endpoint | None = None
        if controller:
            endpoint = await resolve_endpoint(controller, DEFAULT_CONTROLLER_PORT, "controller")
        elif not self.options.roots:
            raise L2meshError(
                "no --controller given and this daemon has no roots to find the controller through "
                "(start it with --root ID@HOST:PORT or L2MESH_ROOTS)"
            )
        # Joining again (with other flags) is how flags change: they are the join's, kept across restarts.
        options = JoinOptions.from_json(request.get("options"))
        self.joined[network_id] = JoinedNetwork(endpoint, options)
        self.state.save_joined(self.joined)

        def join(core: NodeCore) -> None:
            core.join(network_id, endpoint, time.monotonic(),
                      controller_identity=self.state.load_controller(controller_of(network_id)))
            self._ensure_tap(network_id, DEFAULT_MTU_BYTES)
            self._update_host(network_id)

        await self.on_core(join)
        return {
            "id": format_network_id(network_id),
            "controller": endpoint_text(endpoint) if endpoint is not None else "found through the roots",
            "status": "REQUESTING",
            "options": options.to_json(),
        }

    async def _ping(self, request: dict[str, Any]) -> dict[str, Any]:
        """One ping to a node (id or member name): its path and round trip, or {"timeout": true}."""
        target = str(request.get("node"))
        timeout_s = min(max(float(request.get("probe_timeout_s", PING_TIMEOUT_S)), 0.01), MAX_PING_TIMEOUT_S)

        def start(core: NodeCore) -> tuple[int, int | None]:
            configs = [state.config for state in core.networks.values() if state.config is not None]
            node_id = resolve_node(target, configs, core.node_id)
            return node_id, core.ping(node_id, time.monotonic())

        node_id, probe_id = await self.on_core(start)
        if probe_id is None:
            raise L2meshError(f"{format_node_id(node_id)} is not a member of a network this node is in (nor its controller or root)")
        reply: PingReply | None = None
        with trio.move_on_after(timeout_s):
            while reply is None:
                # The round trip is timed in the core when the reply arrives; this only notices it.
                await trio.sleep(PING_POLL_S)
                reply = await self.on_core(lambda core: core.pings.take(probe_id))
        if reply is None:
            await self.on_core(lambda core: core.pings.forget(probe_id))
            return {"id": format_node_id(node_id), "timeout": True, "timeout_s": timeout_s}
        return {
            "id": format_node_id(node_id),
            "path": reply.path,
            "endpoint": endpoint_text(reply.endpoint),
            "relay": format_node_id(reply.relay_id) if reply.relay_id is not None else None,
            "rtt_ms": round(reply.rtt_ms, 3),
        }

    async def _leave(self, request: dict[str, Any]) -> dict[str, Any]:
        network_id = parse_network_id(str(request.get("network_id")))
        if network_id not in self.joined:
            raise L2meshError(f"not a member of network {format_network_id(network_id)}")
        del self.joined[network_id]
        self.state.save_joined(self.joined)

        def leave_then_forget(core: NodeCore) -> None:
            # On the packet thread, after the core lets go: a config that arrived just before
            # cannot be saved again behind the forget.
            core.leave(network_id)
            self.state.forget_network(network_id)

        await self.on_core(leave_then_forget)
        return {"id": format_network_id(network_id), "status": "LEFT"}

    def _status(self, core: NodeCore) -> dict[str, Any]:
        counters = core.counters()
        counters["edge"] = dict(self.transmit.drops)
        counters["uso"] = dict(self.transmit.coalescer.counts)
        counters["dns"] = dict(sum((r.drops for r in self.host.responders.values()), Counter()))
        return {
            "id": format_node_id(self.identity.node_id),
            "port": self.options.port,
            "version": __version__,
            "online": any((p.is_controller or p.is_root) and p.last_rx_s is not None for p in core.peers.values()),
            "uptime_s": round(time.monotonic() - self.started_s, 1),
            "networks": len(core.networks),
            "peers": sum(1 for p in core.peers.values() if not (p.is_controller or p.is_root))
            + len(core.peer_table.idle_members()),
            "reachable": self._reachable(core, time.monotonic()),
            "counters": counters,
            "port_mapping": self.port_mapper.status(time.monotonic()) if self.port_mapper is not None else None,
        }

    def _networks(self, core: NodeCore) -> list[dict[str, Any]]:
        out = []
        reachable = self._reachable(core, time.monotonic())
        for network_id, state in core.networks.items():
            config = state.config
            me = config.member(self.identity.node_id) if config else None
            device = self.taps.get(network_id)
            out.append(
                {
                    "id": format_network_id(network_id),
                    "name": config.name if config else "",
                    "status": state.status.value,
                    "iface": device.name if device else None,
                    "mac": format_mac(state.mac),
                    "ips": [ip.split("/")[0] for ip in me.ips] if me else [],
                    "cidrs": list(me.ips) if me else [],
                    "mtu": config.mtu_bytes if config else DEFAULT_MTU_BYTES,
                    "revision": config.revision if config else None,
                    "members": len(config.members) if config else 0,
                    "controller": endpoint_text(core.membership.controller_endpoint(network_id)),
                    # False: no root and no controller answers; the config held (if any) stays in use.
                    "reachable": reachable,
                    "bridge": state.switch.local_is_bridge,
                    "loop_blocked": state.switch.blocked,
                    "tags": sorted(me.tags) if me else [],
                    "rules": _rule_counts(state)["rules"],
                    "dns_domain": config.effective_dns_domain if config else None,
                    **self._join_options(network_id).to_json(),
                    **self.host.report(network_id),
                }
            )
        return out

    def _join_options(self, network_id: int) -> JoinOptions:
        joined = self.joined.get(network_id)
        return joined.options if joined is not None else JoinOptions()

    def _rules(self, core: NodeCore, network_id: int) -> dict[str, Any]:
        """The network's flow rules with this member's match counts per rule."""
        state = core.networks.get(network_id)
        if state is None:
            raise L2meshError(f"not a member of network {format_network_id(network_id)}")
        return {"id": format_network_id(network_id), **_rule_counts(state)}

    def _macs(self, core: NodeCore) -> list[dict[str, Any]]:
        """Every MAC the switch knows, per network: members' (from the config) and learned ones (behind bridges)."""
        now = time.monotonic()
        out: list[dict[str, Any]] = []
        for network_id, state in core.networks.items():
            switch = state.switch
            for mac, node_id in sorted(switch.owner_of_mac.items()):
                out.append({"network": format_network_id(network_id), "mac": format_mac(mac), "member": format_node_id(node_id),
                            "kind": "member", "age_s": None})
            for mac, entry in sorted(switch.learned.entries.items()):
                out.append({"network": format_network_id(network_id), "mac": format_mac(mac), "member": format_node_id(entry.node_id),
                            "kind": "learned", "age_s": round(now - entry.last_seen_s, 1)})
        return out

    def _peers(self, core: NodeCore) -> list[dict[str, Any]]:
        return peer_listing(core, time.monotonic())


def peer_listing(core: NodeCore, now: float) -> list[dict[str, Any]]:
    """What `l2mesh peers` shows: peers in use with their path and counters, idle known members with path "none"."""
    listing = [
        {
            "id": format_node_id(peer.node_id),
            "role": "controller" if peer.is_controller else "root" if peer.is_root else "member",
            "path": peer.path,
            "relay": format_node_id(peer.relay_id) if peer.via_relay and peer.relay_id is not None else None,
            "endpoint": endpoint_text(peer.endpoint) if not peer.via_relay else endpoint_text(core.paths.relay_for(peer)),
            "latency_ms": None if peer.latency_ms is None else round(peer.latency_ms, 3),
            "rx_bytes": peer.rx_bytes,
            "tx_bytes": peer.tx_bytes,
            "last_handshake_s": None
            if peer.session is None or peer.session.last_handshake_s is None
            else round(now - peer.session.last_handshake_s, 1),
            "networks": [format_network_id(n) for n in sorted(peer.networks)],
            "direct_endpoint": endpoint_text(peer.endpoint),
            "path_changes": peer.path_changes,
        }
        for peer in core.peers.values()
    ]
    # Known members without traffic lately have no session, path or counters: listed with path "none".
    listing.extend(
        {
            "id": format_node_id(member.node_id),
            "role": "member",
            "path": "none",
            "relay": None,
            "endpoint": endpoint_text(member.first_endpoint),
            "latency_ms": None,
            "rx_bytes": 0,
            "tx_bytes": 0,
            "last_handshake_s": None,
            "networks": [format_network_id(n) for n in sorted(member.networks)],
            "direct_endpoint": endpoint_text(member.first_endpoint),
            "path_changes": 0,
        }
        for member in core.peer_table.idle_members()
    )
    return sorted(listing, key=lambda entry: entry["id"])


def _rule_counts(state: NetworkState) -> dict[str, Any]:
    rules = state.switch.rules
    if rules is None:
        return {"text": state.switch.ruleset.text, "rules": [], "drops": 0, "unmatched": {"outbound": 0, "inbound": 0}}
    totals = rules.totals()
    return {
        "text": rules.ruleset.text,
        "rules": rules.report(),
        "drops": totals["drops"],
        "unmatched": {"outbound": totals["outbound_unmatched"], "inbound": totals["inbound_unmatched"]},
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
    identity = load_or_create_identity(options.state_dir)
    configs = [load_static_netconf(p, identity) for p in options.static_netconfs]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trio.run(NodeDaemon(options, identity, configs).run)
    return 0
