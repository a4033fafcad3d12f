"""Ethernet frames bridge members write themselves for loop protection: the hello and the topology change.

Both start with the same header: a group MAC no host claims, the sender's
member MAC, an IEEE 802 local experimental ethertype, the network and the
sender's node id. The policy that uses them is l2mesh/switch/loops.py.
"""

from __future__ import annotations

import construct as c

from l2mesh.wire.common import NetworkIdField, NodeIdField

HELLO_ETHERTYPE = 0x88B5  # IEEE 802 local experimental ethertype: no host stack takes it for its own
# Locally administered group address: Linux bridges and LAN switches flood it
# like any multicast, so a hello reaches every bridge on the segment.
HELLO_MAC = bytes.fromhex("034c326d6c70")
# Ethernet's shortest frame without the FCS; shorter ones are padded with zeros.
ETHERNET_MIN_FRAME_BYTES = 60
MAX_TOPOLOGY_CHANGE_BRIDGES = 255


def _padding_to_minimum(ctx: c.Container) -> bytes:
    return bytes(max(0, ETHERNET_MIN_FRAME_BYTES - ctx.content_bytes))


_HEADER = (
    "destination" / c.Const(HELLO_MAC),
    # The sender's member MAC on this network (its TAP's address): a unicast
    # source as Ethernet wants, and one every member's switch knows as the sender's.
    "source" / c.Bytes(6),
    "ethertype" / c.Const(HELLO_ETHERTYPE, c.Int16ub),
    # Several l2mesh networks may be bridged onto one segment: a hello of
    # another network is no loop on this one.
    "network_id" / NetworkIdField,
    # The sender: receivers check it is a member flagged as bridge, and the
    # election keeps the segment with the lower node id (as STP's does).
    "node_id" / NodeIdField,
)
_PADDING = (
    "content_bytes" / c.Tell,
    # Zeros up to 60 bytes when built; whatever a NIC or bridge added is ignored when parsed.
    "padding" / c.Default(c.GreedyBytes, _padding_to_minimum),
)

BridgeHello = "BridgeHello" / c.Struct(*_HEADER, *_PADDING)
"""Bridge member -> its own TAP, every second: crosses the Linux bridge and the LAN like any frame.

A bridge that reads another bridge member's hello from its TAP shares a LAN
segment with it; hellos never cross the overlay. 60 bytes.
"""

TopologyChange = "TopologyChange" / c.Struct(
    *_HEADER,
    # The other bridges of the segment (the sender is implied): receivers
    # forget the MACs and ARP bindings they learned behind any of them.
    "bridges" / c.PrefixedArray(c.Int8ub, NodeIdField),
    *_PADDING,
)
"""Bridge member -> every member, over the overlay (inside a Frame), when it starts or stops standing down.

RSTP's topology-change flush: the next frames for the hosts of that segment
are flooded to its bridges, and the one carrying the segment now answers and
is learned again. Receivers take it from the overlay only, never write it to
their TAP. At least 60 bytes.
"""
