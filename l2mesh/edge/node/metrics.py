"""The node's metrics (`l2mesh daemon --metrics-listen HOST:PORT`), read from its core at each scrape.

Peers by role and path, bytes and packets per peer, drops by reason,
handshakes, each network's status and config revision, and how late the
reactor runs its ticks. Nothing is counted for metrics on the packet path:
the counters read here are the ones the core keeps anyway. The daemon
imports this module (and prometheus_client) only when the flag is given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import trio
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from l2mesh.edge.metrics_http import serve_page
from l2mesh.edge.metrics_text import CONTENT_TYPE_LATEST, exposition, lateness_family
from l2mesh.edge.reactor import Reactor
from l2mesh.ids import format_network_id, format_node_id
from l2mesh.node.core import NetworkStatus, NodeCore
from l2mesh.node.peers import Peer
from l2mesh.wire.common import Endpoint

ROLES = ("member", "controller", "root")
PATHS = ("direct", "relay", "none")
HANDSHAKE_EVENTS = ("initiated", "completed", "answered", "failed")


def role_of(peer: Peer) -> str:
    return "controller" if peer.is_controller else "root" if peer.is_root else "member"


class NodeCollector:
    """A prometheus_client Collector over a NodeCore; collect() only on the core's (reactor) thread.

    edge_drops: what the edge dropped (a full TAP queue, a TAP gone), beside the core's own reasons.
    """

    def __init__(self, core: NodeCore, reactor: Reactor, edge_drops: Mapping[str, int]) -> None:
        self.core = core
        self.reactor = reactor
        self.edge_drops = edge_drops

    def collect(self) -> Iterator[Metric]:
        yield from self._peers()
        yield from self._networks()
        core = self.core
        drops = CounterMetricFamily("l2mesh_node_drops", "Packets and frames dropped, by reason", labels=["reason"])
        for reason, count in sorted((Counter(core.drops) + core.receive.reassembler.drops + Counter(self.edge_drops)).items()):
            drops.add_metric([reason], count)
        yield drops
        handshakes = CounterMetricFamily(
            "l2mesh_node_handshakes",
            "Noise handshakes: initiated (each initiation sent, retries too), completed (ours answered), "
            "answered (a peer's accepted), failed (given up)",
            labels=["event"],
        )
        for event in HANDSHAKE_EVENTS:
            handshakes.add_metric([event], core.table.handshakes[event])
        yield handshakes
        yield lateness_family(
            "l2mesh_node_reactor_tick_lateness_seconds",
            "How far past its deadline the packet thread ran each 100 ms tick (busy with packets, or not scheduled)",
            self.reactor.tick_lateness,
        )
        errors = CounterMetricFamily("l2mesh_node_reactor_internal_errors", "Bugs survived on the packet thread (see the log)")
        errors.add_metric([], self.reactor.internal_errors)
        yield errors

    def _peers(self) -> Iterator[Metric]:
        peers = GaugeMetricFamily("l2mesh_node_peers", "Peers by role and path (known members without traffic: path none)",
                                  labels=["role", "path"])
        peer_bytes = CounterMetricFamily("l2mesh_node_peer_bytes", "Session bytes to and from each peer in use (since it was last idle)",
                                       labels=["peer", "role", "direction"])
        packets = CounterMetricFamily("l2mesh_node_peer_packets", "Session packets to and from each peer in use (since it was last idle)",
                                      labels=["peer", "role", "direction"])
        by_path: Counter[tuple[str, str]] = Counter()
        for peer in self.core.peers.values():
            role = role_of(peer)
            by_path[role, peer.path] += 1
            node = format_node_id(peer.node_id)
            peer_bytes.add_metric([node, role, "rx"], peer.rx_bytes)
            peer_bytes.add_metric([node, role, "tx"], peer.tx_bytes)
            packets.add_metric([node, role, "rx"], peer.rx_packets)
            packets.add_metric([node, role, "tx"], peer.tx_packets)
        by_path["member", "none"] += len(self.core.peer_table.idle_members())
        for role in ROLES:
            for path in PATHS:
                peers.add_metric([role, path], by_path[role, path])
        yield from (peers, peer_bytes, packets)

    def _networks(self) -> Iterator[Metric]:
        status = GaugeMetricFamily("l2mesh_node_network_status", "Each joined network's status (1 for the one it is in)",
                                   labels=["network", "status"])
        revision = GaugeMetricFamily("l2mesh_node_netconf_revision", "The revision of the config held for each network",
                                     labels=["network"])
        switch_drops = CounterMetricFamily("l2mesh_node_switch_drops", "Frames the network's switch dropped, by reason",
                                           labels=["network", "reason"])
        for network_id, state in self.core.networks.items():
            label = format_network_id(network_id)
            for value in NetworkStatus:
                status.add_metric([label, value.value], 1 if state.status is value else 0)
            if state.config is not None:
                revision.add_metric([label], state.config.revision)
            for reason, count in sorted(state.switch.drops.items()):
                switch_drops.add_metric([label, reason], count)
        yield from (status, revision, switch_drops)


async def serve_node_metrics(
    listen: Endpoint,
    on_core: Callable[[Callable[[NodeCore], list[Metric]]], Awaitable[list[Metric]]],
    reactor: Reactor,
    edge_drops: Mapping[str, int],
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve GET /metrics on listen until cancelled; on_core runs a function on the reactor thread (the daemon's)."""

    async def page() -> bytes:
        families = await on_core(lambda core: list(NodeCollector(core, reactor, edge_drops).collect()))
        return exposition(families)

    await serve_page(listen, "/metrics", CONTENT_TYPE_LATEST, page, task_status=task_status)
