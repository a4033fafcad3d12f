"""Loop protection between bridge members that share a LAN segment.

Two bridge members on one LAN (or a LAN cabled back into itself through the
overlay) would pass every broadcast around forever: LAN -> bridge A ->
overlay -> bridge B -> the same LAN -> bridge A... Each bridge member writes
a small hello frame into its own TAP every second; it crosses the Linux
bridge and the LAN like any frame. A bridge that reads another member's
hello from its TAP knows they share a segment; as in STP's election, the
member with the lower node id keeps carrying the segment and the other
blocks (it carries only its own MAC) until the hellos stop.
"""

from __future__ import annotations

import struct

HELLO_ETHERTYPE = 0x88B5  # IEEE 802 local experimental ethertype
# Locally administered group address: Linux bridges flood it like any multicast.
HELLO_MAC = bytes.fromhex("034c326d6c70")
HELLO_INTERVAL_S = 1.0
# A new bridge listens this long for other bridges' hellos before carrying
# its LAN (STP's listening state), so two bridges never loop while electing.
LISTEN_S = 1.5
# A neighbour whose hellos stopped this long ago is gone (the loop was removed).
HELLO_TIMEOUT_S = 3.5
_HELLO = struct.Struct(">6s6sH8s5s")
_HELLO_TYPE = HELLO_ETHERTYPE.to_bytes(2, "big")


def build_hello(local_mac: bytes, network_id: int, node_id: int) -> bytes:
    frame = _HELLO.pack(HELLO_MAC, local_mac, HELLO_ETHERTYPE, network_id.to_bytes(8, "big"), node_id.to_bytes(5, "big"))
    return frame + bytes(60 - len(frame))  # minimum Ethernet payload


def build_topology_change(local_mac: bytes, network_id: int, node_id: int, bridges: list[int]) -> bytes:
    """Sent over the overlay when a bridge starts or stops standing down (RSTP's topology-change flush).

    Receivers forget the MACs and ARP bindings they learned behind the listed
    bridges; the next frames for those hosts are flooded to the bridges, and
    the one carrying the segment now answers and is learned again.
    """
    header = _HELLO.pack(HELLO_MAC, local_mac, HELLO_ETHERTYPE, network_id.to_bytes(8, "big"), node_id.to_bytes(5, "big"))
    body = bytes([len(bridges)]) + b"".join(n.to_bytes(5, "big") for n in bridges[:255])
    frame = header + body
    return frame + bytes(max(0, 60 - len(frame)))


def parse_topology_change(frame: bytes) -> tuple[int, list[int]] | None:
    """(network id, bridges whose learned MACs are to be forgotten) of a topology-change frame."""
    hello = parse_hello(frame)
    if hello is None or len(frame) < _HELLO.size + 1:
        return None
    count = frame[_HELLO.size]
    start = _HELLO.size + 1
    if len(frame) < start + 5 * count:
        return None
    bridges = [int.from_bytes(frame[start + 5 * i : start + 5 * i + 5], "big") for i in range(count)]
    return hello[0], [hello[1], *bridges]


def parse_hello(frame: bytes | memoryview) -> tuple[int, int] | None:
    """(network id, node id) of a hello frame, or None if frame is not one."""
    if len(frame) < _HELLO.size or frame[:6] != HELLO_MAC or frame[12:14] != _HELLO_TYPE:
        return None
    _, _, _, network_id, node_id = _HELLO.unpack_from(frame)
    return int.from_bytes(network_id, "big"), int.from_bytes(node_id, "big")


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
