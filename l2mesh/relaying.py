"""What every relay does with an envelope, whoever decides who may use it (the controller, a root), sans-IO.

Relayed packets stay end-to-end encrypted: a relay reads only the envelope
(RELAY_HEADER: hops, destination, origin), forwards the rest as is, and
bounds each origin to a byte budget. A rendezvous tells two nodes to probe
each other at once (UDP hole punching), at most RENDEZVOUS_PER_PAIR_PER_S
per pair and RENDEZVOUS_PER_ASKER_PER_S per asker, so a node cannot make a
relay spray hints (each costs two sealed sends).
"""

from __future__ import annotations

from collections import Counter

from l2mesh.ratelimit import KeyedLimit, KeyedRateLimiter
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import EndpointHints
from l2mesh.wire.packets import MAX_RELAY_HOPS, RELAY_HEADER, RELAY_HEADER_BYTES, PacketType

RELAY_BURST_S = 0.05  # the relay budget's bucket holds this much time at the origin's rate
RENDEZVOUS_PER_PAIR_PER_S = 1.0
# A node asks once per PUNCH_REQUEST_INTERVAL_S (5 s) for each peer it cannot reach directly:
# 20/s covers one reaching a hundred peers through relays at once.
RENDEZVOUS_PER_ASKER_PER_S = 20.0
RENDEZVOUS_BURST_PER_ASKER = 50.0
MAX_RENDEZVOUS_KEYS = 65536
MAX_PUNCH_ENDPOINTS = 8


def envelope_of(data: memoryview) -> tuple[int, int, int]:
    """(hops, destination node id, origin node id) of a relay envelope at least RELAY_HEADER_BYTES long."""
    _, hops, destination, origin = RELAY_HEADER.unpack_from(data)
    return hops, int.from_bytes(destination, "big"), int.from_bytes(origin, "big")


def may_hop(hops: int) -> bool:
    """Bounded, so two relays can never bounce a packet between them forever."""
    return hops < MAX_RELAY_HOPS


def envelope_run_packets(data: memoryview, segment_bytes: int) -> int | None:
    """How many envelopes a run of same-size segments (UDP GRO) holds when all share one envelope, else None.

    Such a run (a sealed frame's fragments, relayed) is forwarded whole in one segmented send.
    """
    if data[0] != PacketType.RELAY or segment_bytes <= RELAY_HEADER_BYTES or len(data) <= segment_bytes:
        return None
    envelope = bytes(data[:RELAY_HEADER_BYTES])
    for start in range(segment_bytes, len(data), segment_bytes):
        if data[start : start + RELAY_HEADER_BYTES] != envelope:
            return None
    return -(-len(data) // segment_bytes)


def same_size_runs(datagrams: list[bytes]) -> list[list[bytes]]:
    """Datagrams in order, cut into runs as UDP GRO would join them: equal sizes, the last of a run may be shorter.

    What a stream delivered in one read becomes runs a relay can forward in
    one segmented send each (envelope_run_packets checks they share an envelope).
    """
    runs: list[list[bytes]] = []
    run: list[bytes] = []
    for datagram in datagrams:
        if run and (len(datagram) > len(run[0]) or len(run[-1]) < len(run[0])):
            runs.append(run)
            run = []
        run.append(datagram)
    if run:
        runs.append(run)
    return runs


class RelayBudget:
    """Bytes per second each origin may send through the relay, and what was relayed."""

    def __init__(self, relay_limit_mbps: int, drops: Counter[str]) -> None:
        relay_bytes_per_s = relay_limit_mbps * 1_000_000 / 8
        self._budget = KeyedRateLimiter(relay_bytes_per_s, relay_bytes_per_s * RELAY_BURST_S)
        self.drops = drops
        self.relayed_packets = 0
        self.relayed_bytes = 0

    def take(self, origin: int, now: float, size_bytes: int, packets: int) -> bool:
        """True (and counted as relayed) when the origin is within its budget."""
        if not self._budget.take(origin, now, size_bytes):
            self.drops["relay_rate_limited"] += 1
            return False
        self.relayed_packets += packets
        self.relayed_bytes += size_bytes
        return True


class RendezvousBudget:
    """How often a pair may be told to meet, and how often one node may ask (refusals counted)."""

    def __init__(self, drops: Counter[str]) -> None:
        self._per_pair = KeyedLimit("rendezvous_rate_limited", RENDEZVOUS_PER_PAIR_PER_S, 2.0, drops, MAX_RENDEZVOUS_KEYS)
        self._per_asker = KeyedLimit(
            "rendezvous_per_asker_rate_limited", RENDEZVOUS_PER_ASKER_PER_S, RENDEZVOUS_BURST_PER_ASKER, drops, MAX_RENDEZVOUS_KEYS
        )

    def take(self, asker: int, other: int, now: float) -> bool:
        return self._per_asker.take(asker, now) and self._per_pair.take((min(asker, other), max(asker, other)), now)


def punch_hints(node_id: int, endpoints: tuple[Endpoint, ...] | list[Endpoint]) -> bytes:
    """The message telling a node to probe node_id at these endpoints now."""
    return EndpointHints.build({"node_id": node_id, "punch": True, "endpoints": list(endpoints[:MAX_PUNCH_ENDPOINTS])})
