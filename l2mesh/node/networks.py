"""The networks a node is on: applying and refusing configs, the peer set they imply, multicast
subscriptions announced member to member, bridge hellos, and the switch's timers."""

from __future__ import annotations

import ipaddress
from collections import Counter, deque

from l2mesh.netconf import MemberConfig, NetworkConfig
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
from l2mesh.rules.syntax import format_rule
from l2mesh.switch import MemberPort
from l2mesh.switch.loops import HELLO_INTERVAL_S, build_hello, build_topology_change
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import MulticastSubscriptions

GROUP_TTL_S = 180  # subscriptions announced live this long unless refreshed
GROUP_REFRESH_S = 60.0
SWITCH_EXPIRE_INTERVAL_S = 5.0


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

    def state(self, network_id: int) -> NetworkState:
        state = self.states.get(network_id)
        if state is None:
            state = self.states[network_id] = NetworkState(network_id, self.node_id)
        return state

    # -- configs ---------------------------------------------------------------------------------
    def apply_config(self, config: NetworkConfig, signed: bytes | None, now: float) -> bool:
        """Install a network config (from the controller, or the static-file seam). False if it is stale."""
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
        switch = state.switch
        switch.broadcast_enabled = config.broadcast
        switch.broadcast_limit = config.multicast_limit
        old_members = set(switch.remote_ids)
        switch.set_members(_member_ports(config, current, switch.members))
        switch.set_rules(config.rules)  # compiled here, once per config, never per frame
        self.sync_peers()
        newcomers = [n for n in switch.remote_ids if n not in old_members]
        if state.local_groups and newcomers:
            self._announce_groups(state, newcomers, now)
        self.events.append(NetworkConfigured(config.network_id, config, signed))
        return True

    def deny(self, network_id: int, status: NetworkStatus) -> None:
        """The controller refused us (or the network is gone): stop forwarding on it at once."""
        state = self.states.get(network_id)
        if state is None:
            return
        changed = state.status is not status
        state.status = status
        state.config = None
        state.switch.set_members([])
        self.sync_peers()
        if changed:
            self.events.append(NetworkStatusChanged(network_id, status))

    def mark_ok(self, network_id: int) -> None:
        state = self.states.get(network_id)
        if state is not None and state.config is not None:
            state.status = NetworkStatus.OK

    def remove(self, network_id: int) -> None:
        if self.states.pop(network_id, None) is not None:
            self.sync_peers()
            self.events.append(NetworkRemoved(network_id))

    def sync_peers(self) -> None:
        """Make the peer set the union of members over all networks; peers no longer shared are cut off."""
        wanted: dict[int, tuple[MemberConfig, list[int]]] = {}
        for network_id, state in self.states.items():
            if state.config is None or not state.forwarding:
                continue
            for member in state.config.members:
                if member.node_id != self.node_id:
                    wanted.setdefault(member.node_id, (member, []))[1].append(network_id)
        peers = self.peers
        for gone in [p for n, p in peers.by_id.items() if n not in wanted and not (p.is_controller or p.is_root)]:
            peers.forget(gone)
        for node_id, (member, network_ids) in wanted.items():
            peer = peers.by_id.get(node_id)
            if peer is not None and peer.identity != member.identity:
                peers.forget(peer)
                peer = None
            if peer is None:
                peer = Peer(node_id, member.identity)
                peers.add(peer)
            peer.networks = set(network_ids)
            peer.candidates = list(member.endpoints)
            if peer.endpoint is None and peer.candidates:
                peers.set_endpoint(peer, peer.candidates[0])

    # -- multicast subscriptions ----------------------------------------------------------------------
    def set_local_groups(self, network_id: int, groups: frozenset[bytes], now: float) -> None:
        """The groups our TAP listens to (from the kernel); announced to every member when they change."""
        state = self.states.get(network_id)
        if state is None or groups == state.local_groups:
            return
        state.local_groups = groups
        self._announce_groups(state, state.switch.remote_ids, now)

    def _announce_groups(self, state: NetworkState, node_ids: "tuple[int, ...] | list[int]", now: float) -> None:
        if state.status is not NetworkStatus.OK:
            return
        message = MulticastSubscriptions.build(
            {
                "network_id": state.network_id,
                "ttl_s": GROUP_TTL_S,
                "complete": True,
                "groups": [{"mac": g[:6], "adi": int.from_bytes(g[6:], "big")} for g in sorted(state.local_groups)],
            }
        )
        for node_id in node_ids:
            self.send.send_message(node_id, message, now)
        if len(node_ids) == len(state.switch.remote_ids):
            state.next_group_refresh_s = now + GROUP_REFRESH_S

    def subscriptions_received(self, peer: Peer, message: bytes, now: float) -> None:
        announcement = parse_or_none(MulticastSubscriptions, message)
        if announcement is None:
            self.drops["subscriptions_malformed"] += 1
            return
        state = self.states.get(announcement.network_id)
        if state is None or announcement.network_id not in peer.networks:
            self.drops["subscriptions_for_unshared_network"] += 1
            return
        groups = {bytes(g.mac) + g.adi.to_bytes(4, "big") for g in announcement.groups}
        if not announcement.complete:
            groups |= state.switch.groups.groups_of(peer.node_id)
        state.switch.groups.replace(peer.node_id, groups, now + announcement.ttl_s)

    def _refresh_groups(self, now: float) -> None:
        for state in self.states.values():
            if state.local_groups and now >= state.next_group_refresh_s:
                self._announce_groups(state, state.switch.remote_ids, now)
        # A peer with a new session may have restarted and forgotten our groups.
        for peer in self.peers.by_id.values():
            session = peer.session
            if session is None or session.established_count == peer.groups_sent_session or not session.established:
                continue
            peer.groups_sent_session = session.established_count
            for network_id in peer.networks:
                shared = self.states.get(network_id)
                if shared is not None and shared.local_groups:
                    self._announce_groups(shared, [peer.node_id], now)

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


def _member_ports(config: NetworkConfig, current: NetworkConfig | None, ports: dict[int, MemberPort]) -> list[MemberPort]:
    """The switch's ports for config's members: those the config held already (a delta keeps the very
    objects) keep their port, so a change costs per member changed, not per member (addresses parsed)."""
    held = {m.node_id: m for m in current.members} if current is not None else {}
    return [
        ports[m.node_id] if held.get(m.node_id) is m and m.node_id in ports else _member_port(m, config.network_id)
        for m in config.members
    ]


def _member_port(member: MemberConfig, network_id: int) -> MemberPort:
    ipv4s = tuple(
        ipaddress.ip_interface(ip).ip.packed for ip in member.ips if ipaddress.ip_interface(ip).version == 4
    )
    return MemberPort(member.node_id, member.mac(network_id), member.bridge, ipv4s, member.tags)


def _same_content(a: NetworkConfig, b: NetworkConfig) -> bool:
    return a.with_changes(timestamp_s=0.0, expires_s=0.0) == b.with_changes(timestamp_s=0.0, expires_s=0.0)
