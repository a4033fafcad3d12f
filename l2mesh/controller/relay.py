"""The controller's relay and rendezvous, sans-IO: who may reach whom through us, and how much.

Members with no direct path (symmetric NAT, blocked UDP) send through the
controller. Relayed packets stay end-to-end encrypted: the relay reads only
the envelope (RELAY_HEADER: hops, destination, origin) and forwards it when
the origin is the member whose session we hold at the packet's source
address, the destination is online, both are authorized in one of our
networks, and the sender is within its byte budget. A rendezvous tells two
such members to probe each other at once (UDP hole punching), at most
RENDEZVOUS_PER_PAIR_PER_S per pair.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from l2mesh.controller.clients import MAX_LOCAL_ENDPOINTS, Client
from l2mesh.controller.directory import Directory
from l2mesh.ratelimit import KeyedRateLimiter
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import EndpointHints
from l2mesh.wire.packets import MAX_RELAY_HOPS, RELAY_HEADER

RELAY_BURST_S = 0.05  # the relay budget's bucket holds this much time at the member's rate
RENDEZVOUS_PER_PAIR_PER_S = 1.0


class Relay:
    def __init__(self, relay_limit_mbps: int, drops: Counter[str]) -> None:
        relay_bytes_per_s = relay_limit_mbps * 1_000_000 / 8
        self._budget = KeyedRateLimiter(relay_bytes_per_s, relay_bytes_per_s * RELAY_BURST_S)
        self._rendezvous_budget = KeyedRateLimiter(RENDEZVOUS_PER_PAIR_PER_S, 2.0)
        self.drops = drops
        self.relayed_packets = 0
        self.relayed_bytes = 0

    def target(
        self, data: memoryview, source: Endpoint, now: float, packets: int, by_node: Mapping[int, Client], directory: Directory
    ) -> Endpoint | None:
        """Where an envelope (of this many packets, all of data) goes, if it may; counted as relayed then."""
        _, hops, destination, origin = RELAY_HEADER.unpack_from(data)
        sender = by_node.get(int.from_bytes(origin, "big"))
        # The envelope's source must be the member whose session we hold at this address.
        if sender is None or sender.endpoint != source or sender.via_root:
            self.drops["relay_spoofed_or_unknown_source"] += 1
            return None
        target = by_node.get(int.from_bytes(destination, "big"))
        if target is None or not target.online(now) or hops >= MAX_RELAY_HOPS:
            self.drops["relay_target_offline"] += 1
            return None
        assert sender.node_id is not None and target.node_id is not None
        if not directory.authorized_together(sender.node_id, target.node_id):
            self.drops["relay_not_authorized"] += 1
            return None
        if not self._budget.take(sender.node_id, now, len(data)):
            self.drops["relay_rate_limited"] += 1
            return None
        self.relayed_packets += packets
        self.relayed_bytes += len(data)
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
        pair = (min(client.node_id, peer_id), max(client.node_id, peer_id))
        if not directory.authorized_together(client.node_id, peer_id) or not self._rendezvous_budget.take(pair, now):
            self.drops["rendezvous_refused"] += 1
            return []
        return [(one, _punch_hints(other)) for one, other in ((client, target), (target, client))]


def _punch_hints(other: Client) -> bytes:
    assert other.node_id is not None
    return EndpointHints.build({"node_id": other.node_id, "punch": True, "endpoints": list(other.endpoints[:MAX_LOCAL_ENDPOINTS])})
