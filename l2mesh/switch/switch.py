"""Forwarding decisions for one network: which peers a frame from the TAP goes to, and whether a
frame from a peer may reach the TAP.

Members' MACs come from the network config (derived from node ids, never
learned); MACs behind bridge members are learned with aging. The unicast
path looks at six bytes of destination MAC and one dict; everything else
(broadcast, multicast, unknown unicast) takes the slower, counted path.
Frames from peers only ever go to the local TAP (split horizon), so the
overlay can never loop a frame back into itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from l2mesh.switch.mactable import DEFAULT_MAC_AGING_S, MacTable

BROADCAST_MAC = b"\xff\xff\xff\xff\xff\xff"
ETHERNET_HEADER_BYTES = 14


@dataclass(frozen=True)
class MemberPort:
    """What the switch knows of a member: its MAC and whether it may carry other MACs."""

    node_id: int
    mac: bytes
    bridge: bool = False


class NetworkSwitch:
    def __init__(
        self,
        network_id: int,
        local_node_id: int,
        local_mac: bytes,
        mac_aging_s: float = DEFAULT_MAC_AGING_S,
    ) -> None:
        self.network_id = network_id
        self.local_node_id = local_node_id
        self.local_mac = local_mac
        self.local_is_bridge = False
        self.broadcast_enabled = True
        # Only bounds plain broadcast when set (ZeroTier's fixed 32 made mDNS
        # and ARP fail on bigger networks; we deliver to all unless told).
        self.broadcast_limit: int | None = None
        self.members: dict[int, MemberPort] = {}
        self.owner_of_mac: dict[bytes, int] = {}  # member MACs (other than ours) -> node id
        self.bridges: tuple[int, ...] = ()
        self.remote_ids: tuple[int, ...] = ()
        self.learned = MacTable(mac_aging_s)
        self.drops: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()

    # -- configuration --------------------------------------------------------
    def set_members(self, members: list[MemberPort]) -> None:
        """Replace the member list (from a new network config). Members gone are forgotten."""
        self.members = {m.node_id: m for m in members}
        me = self.members.get(self.local_node_id)
        self.local_is_bridge = bool(me and me.bridge)
        self.owner_of_mac = {m.mac: m.node_id for m in members if m.node_id != self.local_node_id}
        self.remote_ids = tuple(sorted(self.owner_of_mac.values()))
        self.bridges = tuple(m.node_id for m in members if m.bridge and m.node_id != self.local_node_id)
        for mac, entry in list(self.learned.entries.items()):
            still_bridge = entry.node_id in self.bridges
            if not still_bridge or mac in self.owner_of_mac:
                del self.learned.entries[mac]

    # -- frames from the local TAP --------------------------------------------
    def route_from_tap(self, frame: bytes, now: float) -> int | tuple[int, ...] | None:
        """Where a frame read from the local TAP goes: one node id, several, or None (dropped)."""
        if len(frame) < ETHERNET_HEADER_BYTES:
            self.drops["runt"] += 1
            return None
        if frame[6:12] != self.local_mac and not self.local_is_bridge:
            # A non-bridge member speaks only with its own MAC (a kernel bridge
            # on an unauthorized member would otherwise leak a LAN in).
            self.drops["tap_foreign_source"] += 1
            return None
        destination = frame[:6]
        if not destination[0] & 1:
            owner = self.owner_of_mac.get(destination)
            if owner is not None:
                return owner
            owner = self.learned.lookup(destination, now)
            if owner is not None:
                return owner
            return self._unknown_unicast(destination)
        return self._flood()

    def _unknown_unicast(self, destination: bytes) -> tuple[int, ...] | None:
        # Every member MAC is known from the config, so an unknown unicast MAC
        # can only live behind a bridge: flood to bridges, not to everyone.
        if destination == self.local_mac:
            self.drops["to_self"] += 1
            return None
        if not self.bridges:
            self.drops["unknown_unicast"] += 1
            return None
        self.forwarded["unknown_unicast_to_bridges"] += 1
        return self.bridges

    def _flood(self) -> tuple[int, ...] | None:
        if not self.broadcast_enabled:
            self.drops["broadcast_disabled"] += 1
            return None
        targets = self.remote_ids
        if self.broadcast_limit is not None and len(targets) > self.broadcast_limit:
            targets = targets[: self.broadcast_limit]
        if not targets:
            return None
        self.forwarded["flood"] += 1
        return targets

    # -- frames from peers ----------------------------------------------------------
    def accept_from_peer(self, sender: int, frame: bytes, now: float) -> bool:
        """Whether a frame a peer sent may be written to the local TAP (learning bridged MACs on the way)."""
        if len(frame) < ETHERNET_HEADER_BYTES:
            self.drops["runt"] += 1
            return False
        port = self.members.get(sender)
        if port is None:
            self.drops["not_a_member"] += 1
            return False
        source = frame[6:12]
        if source != port.mac:
            if not self._accept_foreign_source(port, source, now):
                return False
        destination = frame[:6]
        if destination[0] & 1:
            if not self.broadcast_enabled:
                self.drops["broadcast_disabled"] += 1
                return False
            return True
        # A bridge carries unknown MACs onto its LAN, but never a MAC that
        # belongs to another member (that member is not behind us).
        if destination == self.local_mac or (self.local_is_bridge and destination not in self.owner_of_mac):
            return True
        self.drops["not_for_us"] += 1
        return False

    def _accept_foreign_source(self, port: MemberPort, source: bytes, now: float) -> bool:
        if source[0] & 1:
            self.drops["multicast_source"] += 1
            return False
        if not port.bridge:
            self.drops["spoofed_source"] += 1
            return False
        if source in self.owner_of_mac or source == self.local_mac:
            # A bridge may never claim a member's MAC.
            self.drops["bridge_claims_member_mac"] += 1
            return False
        if not self.learned.learn(source, port.node_id, now):
            self.drops["mac_flapping"] += 1
            return False
        return True

    def counters(self) -> dict[str, dict[str, int]]:
        return {
            "drops": dict(self.drops),
            "forwarded": dict(self.forwarded),
            "learned": dict(self.learned.events),
        }
