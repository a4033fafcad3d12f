"""The networks a node is on: applying and refusing configs, the peer set they imply, multicast
subscriptions (liked to and gathered from the network's controller; announced member to member on
static networks, which have none), bridge hellos, and the switch's timers."""

from __future__ import annotations

from collections import Counter, deque

from l2mesh.ids import controller_of
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.netconf_delta import MemberChanges
from l2mesh.node.events import (
    BroadcastStorm,
    FlowRuleMatched,
    LoopStateChanged,
    NetworkConfigured,
    NetworkRemoved,
    NetworkStatus,
    NetworkStatusChanged,
)
from l2mesh.node.network_state import NetworkState
from l2mesh.node.peer_table import PeerTable
from l2mesh.node.peers import Peer
from l2mesh.node.send import SendPath
from l2mesh.ratelimit import KeyedLimit
from l2mesh.rules.syntax import format_rule
from l2mesh.switch import MemberPort
from l2mesh.switch.loops import HELLO_INTERVAL_S, build_hello, build_topology_change
from l2mesh.switch.multicast import group_fields, group_key
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import (
    MessageKind,
    MulticastGather,
    MulticastGatherReply,
    MulticastLike,
    MulticastSubscribersChanged,
    MulticastSubscriptions,
)

GROUP_TTL_S = 180  # subscriptions announced live this long unless refreshed
GROUP_REFRESH_S = 60.0
LIKE_GROUPS_PER_MESSAGE = 100  # 1 KiB of groups: one LIKE fits one datagram
SWITCH_EXPIRE_INTERVAL_S = 5.0
# A member announces on each change of its kernel's groups (polled every 0.25 s), every minute, and
# to a peer with a new session: per peer and network, real bursts stay far below this.
ANNOUNCEMENTS_PER_PEER_PER_S = 10.0
ANNOUNCEMENT_BURST = 40.0


class Networks:
    def __init__(
        self,
        node_id: int,
        states: dict[int, NetworkState],
        peers: PeerTable,
        send: SendPath,
        events: deque[object],
        drops: Counter[str],
    ) -> None:
        self.node_id = node_id
        self.states = states
        self.peers = peers
        self.send = send
        self.events = events
        self.drops = drops
        self._next_switch_expiry_s = 0.0
        self._announcements = KeyedLimit(
            "multicast_announcement_rate_limited", ANNOUNCEMENTS_PER_PEER_PER_S, ANNOUNCEMENT_BURST, drops
        )
        # Each configured network's members by node id (the MemberConfigs of its config): what a change
        # of a few members is applied against without going through the whole member list.
        self._members: dict[int, dict[int, MemberConfig]] = {}

    def state(self, network_id: int) -> NetworkState:
        state = self.states.get(network_id)
        if state is None:
            state = self.states[network_id] = NetworkState(network_id, self.node_id)
        return state

    # -- configs ---------------------------------------------------------------------------------
    def apply_config(
        self, config: NetworkConfig, signed: bytes | None, now: float, changes: MemberChanges | None = None
    ) -> bool:
        """Install a network config (from the controller, or the static-file seam). False if it is stale.

        With changes (a delta's result, and what it changed from the config held), the work is per member
        changed; without them (a full config), per member."""
        state = self.state(config.network_id)
        current = state.config
        if current is not None and config.revision < current.revision:
            self.drops["stale_netconf"] += 1
            return False
        was_ok = state.status is NetworkStatus.OK
        state.config = config
        state.status = NetworkStatus.OK
        if was_ok and current is not None and _same_content(current, config):
            return True  # a refresh that changed nothing but timestamps
        if changes is not None and not (was_ok and changes.base is current and changes.config is config):
            changes = None  # not a change from what we hold: take the config whole
        switch = state.switch
        switch.broadcast_enabled = config.broadcast
        switch.broadcast_limit = config.multicast_limit
        if changes is None:
            old_members = set(switch.remote_ids)
            held = self._members.get(config.network_id, {})
            self._members[config.network_id] = {m.node_id: m for m in config.members}
            switch.set_members(_member_ports(config, held, switch.members))
            switch.set_rules(config.rules)  # compiled here, once per config, never per frame
            self.sync_peers()
            newcomers = [n for n in switch.remote_ids if n not in old_members]
        else:
            assert current is not None  # changes.base is current
            listed = self._members[config.network_id]
            newcomers = [m.node_id for m in changes.changed if m.node_id not in listed and m.node_id != self.node_id]
            for node_id in changes.removed:
                listed.pop(node_id, None)
            listed.update((m.node_id, m) for m in changes.changed)
            switch.update_members([_member_port(m, config.network_id) for m in changes.changed], changes.removed)
            if config.rules != current.rules:
                switch.set_rules(config.rules)
            self._sync_members(changes.node_ids)
        if state.local_groups and newcomers:
            self._announce_groups(state, newcomers, now)
        self.events.append(NetworkConfigured(config.network_id, config, signed, changes))
        return True

    def member(self, network_id: int, node_id: int) -> MemberConfig | None:
        """A member as the config held lists it, found by id (NetworkConfig.member searches the list)."""
        return self._members.get(network_id, {}).get(node_id)

    def deny(self, network_id: int, status: NetworkStatus) -> None:
        """The controller refused us (or the network is gone): stop forwarding on it at once."""
        state = self.states.get(network_id)
        if state is None:
            return
        changed = state.status is not status
        state.status = status
        state.config = None
        self._members.pop(network_id, None)
        state.switch.set_members([])
        self.sync_peers()
        if changed:
            self.events.append(NetworkStatusChanged(network_id, status))

    def mark_ok(self, network_id: int) -> None:
        state = self.states.get(network_id)
        if state is not None and state.config is not None:
            state.status = NetworkStatus.OK

    def remove(self, network_id: int) -> None:
        self._members.pop(network_id, None)
        if self.states.pop(network_id, None) is not None:
            self.sync_peers()
            self.events.append(NetworkRemoved(network_id))

    def sync_peers(self) -> None:
        """Make the known members the union of members over all networks; those no longer shared are cut off.

        Members are only recorded here (peer_table.py): a Peer, a session and
        a handshake wait for traffic to or from the member."""
        wanted: dict[int, tuple[MemberConfig, list[int]]] = {}
        for network_id, state in self.states.items():
            if state.config is None or not state.forwarding:
                continue
            for member in state.config.members:
                if member.node_id != self.node_id:
                    wanted.setdefault(member.node_id, (member, []))[1].append(network_id)
        peers = self.peers
        peers.keep_only(wanted)
        shared: dict[tuple[int, ...], tuple[int, ...]] = {}  # one tuple per set of networks, not one per member
        for node_id, (member, network_ids) in wanted.items():
            networks = tuple(network_ids)
            peers.know(node_id, member.identity, member.endpoints, shared.setdefault(networks, networks))

    def _sync_members(self, node_ids: set[int]) -> None:
        """sync_peers for these members only: the others are listed as they were."""
        listings = [
            (network_id, self._members[network_id])
            for network_id, state in self.states.items()
            if state.forwarding and network_id in self._members
        ]
        peers = self.peers
        for node_id in node_ids:
            if node_id == self.node_id:
                continue
            first: MemberConfig | None = None
            network_ids = []
            for network_id, listed in listings:
                member = listed.get(node_id)
                if member is not None:
                    first = first or member
                    network_ids.append(network_id)
            if first is None:
                peers.unknow(node_id)
                continue
            networks = tuple(network_ids)
            known = peers.known.get(node_id)
            if known is not None and known.networks == networks:
                networks = known.networks  # shared with the members on the same networks, as sync_peers leaves it
            peers.know(node_id, first.identity, first.endpoints, networks)

    # -- multicast subscriptions ----------------------------------------------------------------------
    def set_local_groups(self, network_id: int, groups: frozenset[bytes], now: float) -> None:
        """The groups our TAP listens to (from the kernel); told to the controller (or every member) when they change."""
        state = self.states.get(network_id)
        if state is None or groups == state.local_groups:
            return
        state.local_groups = groups
        self._publish_groups(state, now)

    def _controller_peer(self, network_id: int) -> Peer | None:
        """The network's controller, when we joined through it (a static network has none)."""
        peer = self.peers.by_id.get(controller_of(network_id))
        return peer if peer is not None and peer.is_controller else None

    def _publish_groups(self, state: NetworkState, now: float) -> None:
        if self._controller_peer(state.network_id) is not None:
            self._like(state, now)
        else:
            self._announce_groups(state, state.switch.remote_ids, now)

    def _like(self, state: NetworkState, now: float) -> None:
        """Our complete group set to the controller (MULTICAST_LIKE), in as many messages as it takes."""
        if state.status is not NetworkStatus.OK:
            return
        groups = [group_fields(g) for g in sorted(state.local_groups)]
        pages = [groups[i : i + LIKE_GROUPS_PER_MESSAGE] for i in range(0, len(groups), LIKE_GROUPS_PER_MESSAGE)] or [[]]
        for index, page in enumerate(pages):
            message = MulticastLike.build(
                {"network_id": state.network_id, "ttl_s": GROUP_TTL_S, "complete": index == 0, "groups": page}
            )
            self.send.send_message(controller_of(state.network_id), message, now)
        state.next_group_refresh_s = now + GROUP_REFRESH_S

    def _announce_groups(self, state: NetworkState, node_ids: "tuple[int, ...] | list[int]", now: float) -> None:
        """Our groups to members, on a network without a controller to gather them."""
        if state.status is not NetworkStatus.OK or self._controller_peer(state.network_id) is not None:
            return
        message = MulticastSubscriptions.build(
            {
                "network_id": state.network_id,
                "ttl_s": GROUP_TTL_S,
                "complete": True,
                "groups": [group_fields(g) for g in sorted(state.local_groups)],
            }
        )
        for node_id in node_ids:
            self.send.send_message(node_id, message, now)
        if len(node_ids) == len(state.switch.remote_ids):
            state.next_group_refresh_s = now + GROUP_REFRESH_S

    def subscriptions_received(self, peer: Peer, message: bytes, now: float) -> None:
        """A member's own groups (a static network's members, or an older peer on any network): used as announced."""
        announcement = parse_or_none(MulticastSubscriptions, message)
        if announcement is None:
            self.drops["subscriptions_malformed"] += 1
            return
        state = self.states.get(announcement.network_id)
        if state is None or announcement.network_id not in peer.networks:
            self.drops["subscriptions_for_unshared_network"] += 1
            return
        if not self._announcements.take((peer.node_id, announcement.network_id), now):
            return
        groups = {group_key(bytes(g.mac), g.adi) for g in announcement.groups}
        if not announcement.complete:
            groups |= state.switch.groups.groups_of(peer.node_id)
        state.switch.groups.replace(peer.node_id, groups, now + announcement.ttl_s)

    def gathered_received(self, peer: Peer, message: bytes, now: float) -> None:
        """The controller's answer to a GATHER (one page), or its push of a change to a group we gathered."""
        is_reply = message[0] == MessageKind.MULTICAST_GATHER_REPLY
        parsed = parse_or_none(MulticastGatherReply if is_reply else MulticastSubscribersChanged, message)
        if parsed is None:
            self.drops["gathered_malformed"] += 1
            return
        state = self.states.get(parsed.network_id)
        if state is None or controller_of(parsed.network_id) != peer.node_id:
            self.drops["gathered_from_other_than_controller"] += 1
            return
        group = group_key(bytes(parsed.group.mac), parsed.group.adi)
        if is_reply:
            state.switch.gathered_page(group, parsed.gather_id, parsed.page_index, parsed.page_count, list(parsed.subscribers), now)
        else:
            state.switch.subscribers_changed(group, list(parsed.added), list(parsed.removed))

    def _gather(self, state: NetworkState, now: float) -> None:
        """Ask the controller for the groups our TAP sends to that have no (fresh) answer."""
        gathered = state.switch.gathered
        if state.status is not NetworkStatus.OK:
            gathered.wanted.clear()
            return
        controller_id = controller_of(state.network_id)
        for group, gather_id in gathered.due(now):
            message = MulticastGather.build(
                # limit 0: every subscriber, however many (no fixed fan-out cap).
                {"network_id": state.network_id, "group": group_fields(group), "gather_id": gather_id, "limit": 0}
            )
            self.send.send_message(controller_id, message, now)

    def _refresh_groups(self, now: float) -> None:
        for state in self.states.values():
            gathering = self._controller_peer(state.network_id) is not None
            state.switch.gathering = gathering
            if gathering:
                self._gather(state, now)
                if now >= state.next_group_refresh_s:
                    self._like(state, now)
            elif state.local_groups and now >= state.next_group_refresh_s:
                self._announce_groups(state, state.switch.remote_ids, now)
        # A peer with a new session may have restarted and forgotten our groups.
        for peer in self.peers.by_id.values():
            session = peer.session
            if session is None or session.established_count == peer.groups_sent_session or not session.established:
                continue
            peer.groups_sent_session = session.established_count
            if peer.is_controller:
                self._controller_session_renewed(peer.node_id, now)
            for network_id in peer.networks:
                shared = self.states.get(network_id)
                if shared is not None and shared.local_groups:
                    self._announce_groups(shared, [peer.node_id], now)

    def _controller_session_renewed(self, controller_id: int, now: float) -> None:
        """A (maybe restarted) controller: like our groups again, and gather again what we send to, to be told of changes."""
        for state in self.states.values():
            if controller_of(state.network_id) == controller_id and state.switch.gathering:
                self._like(state, now)
                state.switch.gathered.ask_all_again()

    # -- bridges ---------------------------------------------------------------------------------
    def _bridge_duties(self, state: NetworkState, now: float) -> None:
        switch = state.switch
        if not switch.local_is_bridge:
            return
        if now >= state.next_hello_s:
            state.next_hello_s = now + HELLO_INTERVAL_S
            self.send.transmit.write_frame(state.network_id, build_hello(state.mac, state.network_id, self.node_id))
        changed = switch.update_loop_state(now)
        if changed is not None:
            neighbours = tuple(sorted(set(switch.loop_guard.neighbours) | state.loop_neighbours_before))
            state.loop_neighbours_before = set(switch.loop_guard.neighbours)
            self.events.append(LoopStateChanged(state.network_id, changed, neighbours))
            # Everyone forgets what they learned behind the bridges of this segment.
            flush = build_topology_change(state.mac, state.network_id, self.node_id, list(neighbours))
            plaintext = state.frame_header + flush
            for node_id in switch.remote_ids:
                self.send.send_message(node_id, plaintext, now)
        elif switch.blocked:
            state.loop_neighbours_before = set(switch.loop_guard.neighbours)

    # -- timers ------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._refresh_groups(now)
        if now >= self._next_switch_expiry_s:
            self._next_switch_expiry_s = now + SWITCH_EXPIRE_INTERVAL_S
            for state in self.states.values():
                state.switch.expire(now)
        for state in self.states.values():
            self._bridge_duties(state, now)
            for source in state.switch.storming - state.storms_reported:
                state.storms_reported.add(source)
                self.events.append(BroadcastStorm(state.network_id, source))
            rules = state.switch.rules
            if rules is not None and rules.new_causes:
                for index, direction, peer in rules.new_causes:
                    rule = rules.ruleset.rules[index]
                    self.events.append(
                        FlowRuleMatched(state.network_id, rule.line, format_rule(rule), rule.action, direction, peer)
                    )
                rules.new_causes.clear()


def _member_ports(config: NetworkConfig, held: dict[int, MemberConfig], ports: dict[int, MemberPort]) -> list[MemberPort]:
    """The switch's ports for config's members: those the config held already (the very MemberConfig
    objects: a delta keeps them) keep their port, so no member's addresses are parsed again."""
    return [
        ports[m.node_id] if held.get(m.node_id) is m and m.node_id in ports else _member_port(m, config.network_id)
        for m in config.members
    ]


def _member_port(member: MemberConfig, network_id: int) -> MemberPort:
    # The config holds canonical CIDRs (netconf.py normalizes them): dotted quads read directly, not by
    # ipaddress, which was most of the cost of applying a config of thousands of members.
    addresses = [ip.partition("/")[0] for ip in member.ips]
    ipv4s = tuple(bytes(map(int, address.split("."))) for address in addresses if ":" not in address)
    return MemberPort(member.node_id, member.mac(network_id), member.bridge, ipv4s, member.tags)


def _same_content(a: NetworkConfig, b: NetworkConfig) -> bool:
    return a.with_changes(timestamp_s=0.0, expires_s=0.0) == b.with_changes(timestamp_s=0.0, expires_s=0.0)
