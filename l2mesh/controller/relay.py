"""The controller's relay and rendezvous, sans-IO: who may reach whom through us (l2mesh.relaying does the rest).

The controller forwards an envelope when the origin is the member whose
session we hold at the packet's source address, the destination is online,
both are authorized in one of our networks, and the sender is within its
byte budget. A rendezvous tells two such members to probe each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from l2mesh.controller.clients import Client
from l2mesh.controller.directory import Directory
from l2mesh.relaying import RELAY_BURST_S, RelayBudget, RendezvousBudget, envelope_of, may_hop, punch_hints
from l2mesh.wire.common import Endpoint

__all__ = ["RELAY_BURST_S", "Relay"]


class Relay:
    def __init__(self, relay_limit_mbps: int, drops: Counter[str]) -> None:
        self.budget = RelayBudget(relay_limit_mbps, drops)
        self._rendezvous_budget = RendezvousBudget(drops)
        self.drops = drops

    @property
    def relayed_packets(self) -> int:
        return self.budget.relayed_packets

    @property
    def relayed_bytes(self) -> int:
        return self.budget.relayed_bytes

    def target(
        self, data: memoryview, source: Endpoint, now: float, packets: int, by_node: Mapping[int, Client], directory: Directory
    ) -> Endpoint | None:
        """Where an envelope (of this many packets, all of data) goes, if it may; counted as relayed then."""
        hops, destination, origin = envelope_of(data)
        sender = by_node.get(origin)
        # The envelope's source must be the member whose session we hold at this address.
        if sender is None or sender.endpoint != source or sender.via_root:
            self.drops["relay_spoofed_or_unknown_source"] += 1
            return None
        target = by_node.get(destination)
        if target is None or not target.online(now) or not may_hop(hops):
            self.drops["relay_target_offline"] += 1
            return None
        assert sender.node_id is not None and target.node_id is not None
        if not directory.authorized_together(sender.node_id, target.node_id):
            self.drops["relay_not_authorized"] += 1
            return None
        if not self.budget.take(sender.node_id, now, len(data), packets):
            return None
        return target.endpoint

    def rendezvous(
        self, client: Client, peer_id: int, now: float, by_node: Mapping[int, Client], directory: Directory
    ) -> list[tuple[Client, bytes]]:
        """A member asks to meet peer_id: the hints to send to each side (none when refused)."""
        assert client.node_id is not None
        target = by_node.get(peer_id)
        if target is None or not target.online(now):
            self.drops["rendezvous_target_offline"] += 1
            return []
        if not directory.authorized_together(client.node_id, peer_id):
            self.drops["rendezvous_refused"] += 1
            return []
        if not self._rendezvous_budget.take(client.node_id, peer_id, now):
            return []
        return [(client, punch_hints(peer_id, target.endpoints)), (target, punch_hints(client.node_id, client.endpoints))]
