"""Forwarding decisions for one network: which peers a frame from the TAP goes to, and whether a
frame from a peer may reach the TAP.

Members' MACs come from the network config (derived from node ids, never
learned); MACs behind bridge members are learned with aging. The unicast
path looks at six bytes of destination MAC and one dict. Everything else
takes the slower, counted path: ARP is answered locally or scoped to the
owner of the address, multicast goes to the members subscribed to the group
(and to bridges, which carry whole LANs), plain broadcast to every member
when the network allows it. Frames from peers only ever go to the local TAP
(split horizon), so the overlay never loops a frame back into itself.

Flow rules, when the network has any, are asked on both ends: before a
frame leaves for a member, and before a frame from a member reaches the TAP.
Without rules that costs one test per frame.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from l2mesh.ratelimit import KeyedRateLimiter
from l2mesh.rules.syntax import NO_RULES, RuleSet
from l2mesh.switch.arp import ETHERTYPE_ARP, ARP_REQUEST, ArpRequest, ArpTable, build_reply, parse_arp
from l2mesh.switch.flow_rules import FlowRules
from l2mesh.switch.loops import LISTEN_S, LoopGuard, parse_hello, parse_topology_change
from l2mesh.switch.mactable import DEFAULT_MAC_AGING_S, MacTable
from l2mesh.switch.multicast import BROADCAST_MAC, GatheredGroups, MulticastGroups, arp_group
from l2mesh.wire.bridge import HELLO_MAC

ETHERNET_HEADER_BYTES = 14
_ARP_TYPE = ETHERTYPE_ARP.to_bytes(2, "big")
_NO_ADI = b"\0\0\0\0"
# Multicast and broadcast frames per second one source may put on the
# network before the rest is dropped (a storm guard, not a shaper).
STORM_FRAMES_PER_S = 2000.0
STORM_BURST_FRAMES = 5000.0


@dataclass(frozen=True, slots=True)
class MemberPort:
    """What the switch knows of a member: its MAC, whether it may carry other MACs, its managed IPv4s, its tags."""

    node_id: int
    mac: bytes
    bridge: bool = False
    ipv4s: tuple[bytes, ...] = ()
    tags: frozenset[str] = frozenset()


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
        self._flood_cursor = 0
        self.members: dict[int, MemberPort] = {}
        self.owner_of_mac: dict[bytes, int] = {}  # member MACs (other than ours) -> node id
        self.bridges: tuple[int, ...] = ()
        self.remote_ids: tuple[int, ...] = ()
        self.learned = MacTable(mac_aging_s)
        self.groups = MulticastGroups()  # announced by members themselves (static networks, older peers)
        self.drops: Counter[str] = Counter()
        # On a network with a controller, subscribers are gathered from it instead (ZeroTier's GATHER).
        self.gathering = False
        self.gathered = GatheredGroups(self.drops)
        self.arp = ArpTable()
        # Frames the switch answers itself (ARP replies); the caller writes them to the TAP.
        self.local_replies: list[bytes] = []
        self.storm_guard = KeyedRateLimiter(STORM_FRAMES_PER_S, STORM_BURST_FRAMES)
        self.storming: set[int] = set()  # sources caught storming, for logging once
        self.loop_guard = LoopGuard(local_node_id)
        self.blocked = False  # a bridge sharing our LAN with a lower id carries it; we stand down
        self.listening_until_s: float | None = None  # a new bridge listens for hellos before carrying
        self.forwarded: Counter[str] = Counter()
        # None when the network has no rules: the only cost rules add to such a network is testing this.
        self.rules: FlowRules | None = None

    # -- configuration --------------------------------------------------------------------------
    def set_members(self, members: list[MemberPort]) -> None:
        """Replace the member list (from a new network config). Members gone are forgotten."""
        self.members = {m.node_id: m for m in members}
        me = self.members.get(self.local_node_id)
        was_bridge = self.local_is_bridge
        self.local_is_bridge = bool(me and me.bridge)
        if self.local_is_bridge and not was_bridge:
            self.listening_until_s = None
        self.owner_of_mac = {m.mac: m.node_id for m in members if m.node_id != self.local_node_id}
        self.remote_ids = tuple(sorted(self.owner_of_mac.values()))
        self.bridges = tuple(sorted(m.node_id for m in members if m.bridge and m.node_id != self.local_node_id))
        for mac, entry in list(self.learned.entries.items()):
            if entry.node_id not in self.bridges or mac in self.owner_of_mac:
                del self.learned.entries[mac]
        self.arp.set_managed({ip: (m.mac, m.node_id) for m in members for ip in m.ipv4s})
        self.groups.keep_only(set(self.remote_ids))
        self.gathered.keep_only(set(self.remote_ids))
        for node_id in {e[1] for e in self.arp.learned.values()} - set(self.members):
            self.arp.forget_node(node_id)
        if self.rules is not None:
            self.rules.retag(self._tags())

    def update_members(self, ports: list[MemberPort], removed: Collection[int]) -> None:
        """set_members for a change of a few members (a netconf delta): ports added or changed, node ids
        removed; the rest stay as they are. Costs per member changed (plus C-speed copies of the id
        tuples when members come or go), not per member."""
        gone = [self.members.pop(n) for n in removed if n in self.members]
        before = {p.node_id: self.members.get(p.node_id) for p in ports}
        for port in ports:
            self.members[port.node_id] = port
        arp = self.arp
        # The managed addresses of the old ports go (unless another member now holds them), the new ones come.
        for old in [*gone, *(p for p in before.values() if p is not None)]:
            for ip in old.ipv4s:
                if arp.managed.get(ip, (None, None))[1] == old.node_id:
                    del arp.managed[ip]
        for port in ports:
            for ip in port.ipv4s:
                arp.managed[ip] = (port.mac, port.node_id)
                arp.learned.pop(ip, None)
        local = self.local_node_id
        leaving = [old for old in gone if old.node_id != local]
        joining = [port for port in ports if before[port.node_id] is None and port.node_id != local]
        if leaving or joining:  # a copy of the sorted ids (C speed), only when who is a member changes
            remote = list(self.remote_ids)
            for old in leaving:
                del self.owner_of_mac[old.mac]
                del remote[bisect_left(remote, old.node_id)]
            for port in joining:
                self.owner_of_mac[port.mac] = port.node_id
                insort(remote, port.node_id)
            self.remote_ids = tuple(remote)
        bridges = set(self.bridges)
        for old in gone:
            bridges.discard(old.node_id)
        for port in ports:
            if port.bridge and port.node_id != local:
                bridges.add(port.node_id)
            else:
                bridges.discard(port.node_id)
        unbridged = set(self.bridges) - bridges
        self.bridges = tuple(sorted(bridges))
        me = self.members.get(self.local_node_id)
        was_bridge = self.local_is_bridge
        self.local_is_bridge = bool(me and me.bridge)
        if self.local_is_bridge and not was_bridge:
            self.listening_until_s = None
        # MACs learned behind a member that is no longer a bridge, or that are now a member's own.
        new_macs = {p.mac for p in ports if p.node_id != self.local_node_id}
        if unbridged or any(mac in self.learned.entries for mac in new_macs):
            for mac, entry in list(self.learned.entries.items()):
                if entry.node_id in unbridged or mac in new_macs:
                    del self.learned.entries[mac]
        gone_ids = {old.node_id for old in gone}
        for node_id in gone_ids:
            self.groups.forget_node(node_id)
            self.arp.forget_node(node_id)
        if gone_ids:
            for gathered in self.gathered.entries.values():
                gathered.subscribers -= gone_ids
        retag = any(p.tags for p in gone) or any(
            p.tags != (b.tags if b is not None else frozenset()) for p, b in zip(ports, before.values())
        )
        if self.rules is not None and retag:
            self.rules.retag(self._tags())

    def set_rules(self, ruleset: RuleSet) -> None:
        """Compile the network's rules (from a new config); counters survive when the rules did not change."""
        if not ruleset:
            self.rules = None
        elif self.rules is not None and self.rules.ruleset == ruleset:
            self.rules.retag(self._tags())
        else:
            self.rules = FlowRules(ruleset, self.local_node_id, self._tags())

    @property
    def ruleset(self) -> RuleSet:
        return self.rules.ruleset if self.rules is not None else NO_RULES

    def _tags(self) -> dict[int, frozenset[str]]:
        return {node_id: port.tags for node_id, port in self.members.items() if port.tags}

    # -- frames from the local TAP ----------------------------------------------------------------
    def route_from_tap(self, frame: bytes | memoryview, now: float) -> int | tuple[int, ...] | None:
        """Where a frame read from the local TAP goes: one node id, several, or None (dropped or answered)."""
        if len(frame) < ETHERNET_HEADER_BYTES:
            self.drops["runt"] += 1
            return None
        if frame[6:12] != self.local_mac:
            if not self.local_is_bridge:
                # A non-bridge member speaks only with its own MAC (a kernel bridge
                # on an unauthorized member would otherwise leak a LAN in).
                self.drops["tap_foreign_source"] += 1
                return None
            if not self._lan_frame_allowed(frame, now):
                return None
        destination = bytes(frame[:6])  # frames may be views; MACs are used as keys
        if not destination[0] & 1:
            owner = self.owner_of_mac.get(destination)
            if owner is None:
                owner = self.learned.lookup(destination, now)
                if owner is None:
                    return self._rules_allow_to(frame, self._unknown_unicast(destination))
            if self.rules is None:
                return owner
            if self.rules.outbound(frame, owner):
                return owner
            self.drops["rules"] += 1
            return None
        if not self.storm_guard.take(self.local_node_id, now):
            self._storm(self.local_node_id)
            return None
        if destination == BROADCAST_MAC:
            if frame[12:14] == _ARP_TYPE:
                return self._rules_allow_to(frame, self._route_arp(frame, now))
            return self._rules_allow_to(frame, self._broadcast())
        return self._rules_allow_to(frame, self._multicast(destination, now))

    def _rules_allow_to(self, frame: bytes | memoryview, targets: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """The targets of a flooded frame that the rules let it go to (each member may be tagged differently)."""
        if targets is None or self.rules is None:
            return targets
        allowed = self.rules.outbound_to(frame, targets)
        if allowed is None:
            self.drops["rules"] += 1
        return allowed

    def _lan_frame_allowed(self, frame: bytes | memoryview, now: float) -> bool:
        """Loop protection for frames a bridge reads from its LAN (any source but its own MAC)."""
        if frame[:6] == HELLO_MAC:
            hello = parse_hello(frame)
            if hello is not None and hello[0] == self.network_id:
                port = self.members.get(hello[1])
                if port is not None and port.bridge and hello[1] != self.local_node_id:
                    self.loop_guard.heard(hello[1], now)
                    self.forwarded["bridge_hello_heard"] += 1
            return False  # hellos never cross the overlay
        if frame[6:12] in self.owner_of_mac:
            # Another member's own MAC on our LAN side: its frames reached our
            # LAN through a path that is not us; sending them back would loop.
            self.drops["member_mac_on_lan"] += 1
            return False
        if self.listening_until_s is None:
            self.listening_until_s = now + LISTEN_S
        if now < self.listening_until_s:
            self.drops["bridge_listening"] += 1
            return False
        if self.blocked:
            self.drops["loop_blocked"] += 1
            return False
        return True

    def update_loop_state(self, now: float) -> bool | None:
        """Re-evaluate blocking; returns the new state when it changed, else None."""
        blocked = self.local_is_bridge and self.loop_guard.blocking(now)
        if blocked == self.blocked:
            return None
        self.blocked = blocked
        return blocked

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

    def _broadcast(self) -> tuple[int, ...] | None:
        if not self.broadcast_enabled:
            self.drops["broadcast_disabled"] += 1
            return None
        return self._to_all("flood")

    def _to_all(self, counter: str) -> tuple[int, ...] | None:
        targets = self.remote_ids
        if self.broadcast_limit is not None and len(targets) > self.broadcast_limit:
            # Bridges first (they carry whole LANs), then members in rotation,
            # so every member hears some broadcasts (a DHCP server on any of them).
            rest = [n for n in targets if n not in self.bridges]
            start = self._flood_cursor % len(rest) if rest else 0
            self._flood_cursor += 1
            targets = (self.bridges + tuple(rest[start:] + rest[:start]))[: self.broadcast_limit]
        if not targets:
            return None
        self.forwarded[counter] += 1
        return targets

    def _multicast(self, destination: bytes, now: float) -> tuple[int, ...] | None:
        group = destination + _NO_ADI
        targets = set(self.groups.subscribers(group, now))
        if self.gathering:
            # Sent to the subscribers known now (none before the first answer); the
            # answer, or the controller's push, covers the frames that follow.
            targets.update(self.gathered.subscribers(group, now))
        targets.update(self.bridges)
        targets.discard(self.local_node_id)
        if not targets:
            self.drops["multicast_no_subscribers"] += 1
            return None
        self.forwarded["multicast"] += 1
        return tuple(targets)

    def _route_arp(self, frame: bytes | memoryview, now: float) -> tuple[int, ...] | None:
        arp = parse_arp(frame)
        if arp is None:
            self.drops["arp_malformed"] += 1
            return None
        if arp.op != ARP_REQUEST or arp.spa == arp.tpa:
            # Replies sent to broadcast and gratuitous announcements refresh everyone's caches.
            return self._to_all("arp_announce")
        request = ArpRequest(arp.sha, arp.spa, arp.tpa)
        owners = self._arp_owners(request.target_ip, now)
        entry = self.arp.lookup(request.target_ip, now)
        if entry is not None and owners and entry[1] not in owners and request.target_ip not in self.arp.managed:
            # Learned from traffic, but the address is now announced by someone
            # else (it moved, e.g. a new DHCP lease): the announcement wins.
            self.arp.learned.pop(request.target_ip, None)
            entry = None
        if entry is not None and entry[1] != self.local_node_id:
            self.local_replies.append(build_reply(request, entry[0]))
            self.forwarded["arp_answered_locally"] += 1
            return None
        if entry is None and len(owners) == 1 and owners[0] not in self.bridges:
            # A member announced the address (e.g. DHCP on its TAP): its MAC is its member MAC.
            self.local_replies.append(build_reply(request, self.members[owners[0]].mac))
            self.forwarded["arp_answered_locally"] += 1
            return None
        targets = set(owners)
        targets.update(self.bridges)
        if targets:
            self.forwarded["arp_scoped"] += 1
            return tuple(targets)
        if entry is not None:
            self.drops["arp_for_own_address"] += 1
            return None
        # Nobody claims the address: ask everyone, as a plain LAN would.
        return self._to_all("arp_flooded")

    def _arp_owners(self, ipv4: bytes, now: float) -> list[int]:
        """Members that announced they hold an address (not from the config: DHCP on their TAP, say)."""
        group = arp_group(ipv4)
        owners = set(self.groups.subscribers(group, now))
        if self.gathering and ipv4 not in self.arp.managed:
            owners.update(self.gathered.subscribers(group, now))
        owners.discard(self.local_node_id)
        return sorted(owners)

    # -- gathered subscribers (from the controller) ---------------------------------------------
    def gathered_page(self, group: bytes, gather_id: int, index: int, count: int, subscribers: list[int], now: float) -> bool:
        """One page of the controller's answer; only members of our config are kept."""
        members = [n for n in subscribers if n in self.members and n != self.local_node_id]
        return self.gathered.page(group, gather_id, index, count, members, now)

    def subscribers_changed(self, group: bytes, added: list[int], removed: list[int]) -> bool:
        return self.gathered.changed(group, [n for n in added if n in self.members and n != self.local_node_id], removed)

    def _storm(self, source: int) -> None:
        self.drops["broadcast_storm"] += 1
        self.storming.add(source)

    # -- frames from peers -------------------------------------------------------------------------------
    def accept_from_peer(self, sender: int, frame: bytes | memoryview, now: float) -> bool:
        """Whether a frame a peer sent may be written to the local TAP (learning bridged MACs on the way)."""
        if len(frame) < ETHERNET_HEADER_BYTES:
            self.drops["runt"] += 1
            return False
        port = self.members.get(sender)
        if port is None:
            self.drops["not_a_member"] += 1
            return False
        # Copies: the frame may be a view of a reused decryption buffer, and
        # both MACs are used as dictionary keys below.
        source = bytes(frame[6:12])
        if source != port.mac:
            if not self._accept_foreign_source(port, source, now):
                return False
        destination = bytes(frame[:6])
        if destination == HELLO_MAC:
            self._topology_change(sender, frame)
            return False
        if self.local_is_bridge and sender in self.loop_guard.neighbours and destination != self.local_mac:
            # That bridge reaches our LAN segment itself; carrying its frames
            # onto the segment again would loop them.
            self.drops["from_lan_neighbour"] += 1
            return False
        if destination[0] & 1:
            if not self.storm_guard.take(sender, now):
                self._storm(sender)
                return False
            if self.blocked:
                # The bridge carrying our LAN delivers these; a second copy through us would loop.
                self.drops["loop_blocked"] += 1
                return False
            if frame[12:14] == _ARP_TYPE:
                return self._arp_from_peer(port, frame, now)
            if destination == BROADCAST_MAC and not self.broadcast_enabled:
                self.drops["broadcast_disabled"] += 1
                return False
            return self.rules is None or self._rules_allow_from(frame, sender)
        if frame[12:14] == _ARP_TYPE:
            return self._arp_from_peer(port, frame, now) and self._deliverable(destination)
        if destination == self.local_mac:
            return self.rules is None or self._rules_allow_from(frame, sender)
        return self._deliverable(destination) and (self.rules is None or self._rules_allow_from(frame, sender))

    def _deliverable(self, destination: bytes) -> bool:
        """Whether a unicast frame from a peer is ours to write to the TAP."""
        if destination == self.local_mac:
            return True
        # A bridge carries unknown MACs onto its LAN, but never a MAC that
        # belongs to another member (that member is not behind us).
        if self.local_is_bridge and destination not in self.owner_of_mac:
            if self.blocked:
                self.drops["loop_blocked"] += 1
                return False
            return True
        self.drops["not_for_us"] += 1
        return False

    def _arp_from_peer(self, port: MemberPort, frame: bytes | memoryview, now: float) -> bool:
        """ARP from a peer: refused when it claims another member's address or the rules drop it, else learned from."""
        if not self._arp_claim_allowed(port, frame):
            return False
        if self.rules is not None and not self._rules_allow_from(frame, port.node_id):
            return False  # before learning: a frame the rules drop teaches us nothing
        self._learn_arp(port.node_id, frame, now)
        return True

    def _rules_allow_from(self, frame: bytes | memoryview, sender: int) -> bool:
        assert self.rules is not None
        if self.rules.inbound(frame, sender):
            return True
        self.drops["rules"] += 1
        return False

    def _topology_change(self, sender: int, frame: bytes | memoryview) -> None:
        change = parse_topology_change(bytes(frame))
        if change is None or change[0] != self.network_id or change[1][0] != sender:
            self.drops["bad_topology_change"] += 1
            return
        for bridge in change[1]:
            if bridge in self.members and self.members[bridge].bridge:
                self.learned.forget_node(bridge)
                self.arp.forget_node(bridge)
        self.forwarded["topology_change"] += 1

    def _arp_claim_allowed(self, port: MemberPort, frame: bytes | memoryview) -> bool:
        """A member may not claim, in ARP, an address the config gives to another member (ARP poisoning)."""
        arp = parse_arp(frame)
        if arp is None:
            return True
        owner = self.arp.managed.get(arp.spa)
        if owner is not None and owner[1] != port.node_id:
            self.drops["arp_claims_other_members_address"] += 1
            return False
        return True

    def _learn_arp(self, sender: int, frame: bytes | memoryview, now: float) -> None:
        arp = parse_arp(frame)
        if arp is not None and arp.sha == frame[6:12]:
            self.arp.learn(arp.spa, arp.sha, sender, now)

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

    def expire(self, now: float) -> None:
        self.learned.expire(now)
        self.arp.expire(now)
        self.groups.expire(now)
        self.gathered.expire(now)

    def counters(self) -> dict[str, dict[str, int]]:
        out = {
            "drops": dict(self.drops),
            "forwarded": dict(self.forwarded),
            "learned": dict(self.learned.events),
        }
        if self.rules is not None:
            out["rules"] = self.rules.totals()
        return out
