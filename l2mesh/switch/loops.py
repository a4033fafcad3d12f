"""Loop protection between bridge members that share a LAN segment.

Two bridge members on one LAN (or a LAN cabled back into itself through the
overlay) would pass every broadcast around forever: LAN -> bridge A ->
overlay -> bridge B -> the same LAN -> bridge A... Each bridge member writes
a small hello frame into its own TAP every second; it crosses the Linux
bridge and the LAN like any frame. A bridge that reads another member's
hello from its TAP knows they share a segment; as in STP's election, the
member with the lower node id keeps carrying the segment and the other
blocks (it carries only its own MAC) until the hellos stop. The frames'
byte formats are in l2mesh/wire/bridge.py.
"""

from __future__ import annotations

from l2mesh.wire.bridge import MAX_TOPOLOGY_CHANGE_BRIDGES, BridgeHello, TopologyChange
from l2mesh.wire.errors import ParseError, parse_exact

HELLO_INTERVAL_S = 1.0
# A new bridge listens this long for other bridges' hellos before carrying
# its LAN (STP's listening state), so two bridges never loop while electing.
LISTEN_S = 1.5
# A neighbour whose hellos stopped this long ago is gone (the loop was removed).
HELLO_TIMEOUT_S = 3.5


def build_hello(local_mac: bytes, network_id: int, node_id: int) -> bytes:
    return bytes(BridgeHello.build(dict(source=local_mac, network_id=network_id, node_id=node_id)))


def build_topology_change(local_mac: bytes, network_id: int, node_id: int, bridges: list[int]) -> bytes:
    """Sent over the overlay when a bridge starts or stops standing down (RSTP's topology-change flush).

    Receivers forget the MACs and ARP bindings they learned behind the listed
    bridges and the sender; the next frames for those hosts are flooded to the
    bridges, and the one carrying the segment now answers and is learned again.
    """
    fields = dict(source=local_mac, network_id=network_id, node_id=node_id, bridges=bridges[:MAX_TOPOLOGY_CHANGE_BRIDGES])
    return bytes(TopologyChange.build(fields))


def parse_topology_change(frame: bytes | memoryview) -> tuple[int, list[int]] | None:
    """(network id, bridges whose learned MACs are to be forgotten, the sender first), or None if frame is not one."""
    try:
        change = parse_exact(TopologyChange, frame)
    except ParseError:
        return None
    return change.network_id, [change.node_id, *change.bridges]


def parse_hello(frame: bytes | memoryview) -> tuple[int, int] | None:
    """(network id, node id) of a hello frame, or None if frame is not one."""
    try:
        hello = parse_exact(BridgeHello, frame)
    except ParseError:
        return None
    return hello.network_id, hello.node_id


class LoopGuard:
    def __init__(self, local_node_id: int) -> None:
        self.local_node_id = local_node_id
        self.neighbours: dict[int, float] = {}  # bridge members heard on our LAN -> last hello

    def heard(self, node_id: int, now: float) -> None:
        self.neighbours[node_id] = now

    def blocking(self, now: float) -> bool:
        """True while a bridge with a lower id shares our LAN segment."""
        for node_id, heard_s in list(self.neighbours.items()):
            if now - heard_s > HELLO_TIMEOUT_S:
                del self.neighbours[node_id]
        return any(node_id < self.local_node_id for node_id in self.neighbours)
