"""The controller's protocol core, sans-IO: takes datagrams and committed changes, sends answers and pushes.

It dispatches to the parts next to it: clients.py (sessions, who is who),
relay.py (relay and rendezvous), issuing.py (configs), directory.py (the
networks and members it answers from), joins.py and seen.py (the writes it
wants), admin.py (the admin views). It never touches storage: writes it
wants are collected for the edge's storage writer (take_writes), and what
was committed comes back through committed(), in commit order, with admin
changes, which are pushed at once to every online member of the network,
so a deauthorized member is cut off by its peers within one round trip of
the admin command.

Given roots (`l2mesh-ctl serve --root`), it registers with them like any
node (root_client.py), so members that know only the network id find it,
and a controller behind a NAT is reached through them: a root's punch
hints make it send towards the member (opening its NAT), and members that
still cannot get through reach it in relay envelopes via the root, which it
opens here and answers the same way.

Several instances of one controller (one identity) may share one database
(issue 12): each heartbeats its row (heartbeat.py), puts every live
instance's endpoints into the configs it issues, and hears of the others'
commits through external_change(), which reloads what changed (reload.py)
and pushes it to the members connected here.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from l2mesh.controller import admin
from l2mesh.controller.changes import Committed, StorageWrite
from l2mesh.controller.clients import Client, Clients, printable_version
from l2mesh.controller.defaults import DEFAULT_RELAY_LIMIT_MBPS
from l2mesh.controller.directory import Directory
from l2mesh.controller.heartbeat import Heartbeat
from l2mesh.controller.instances import HEARTBEAT_S, MAX_INSTANCE_ENDPOINTS, ControllerInstance
from l2mesh.controller.issuing import Issuer
from l2mesh.controller.joins import MemberAsked
from l2mesh.controller.model import Member, Network
from l2mesh.controller.multicast import MulticastRegistry, Push
from l2mesh.controller.relay import Relay
from l2mesh.controller.reload import Reload
from l2mesh.controller.seen import SeenTracker
from l2mesh.errors import L2meshError
from l2mesh.fragments import DEFAULT_MAX_DATAGRAM_BYTES, fragment
from l2mesh.identity import Identity, PublicIdentity, node_id_from_public_keys
from l2mesh.ids import controller_of, format_node_id
from l2mesh.netconf import MAX_CONTROLLER_ENDPOINTS, format_endpoint, parse_endpoint
from l2mesh.ratelimit import KeyedLimit, KeyedRateLimiter
from l2mesh.relaying import envelope_run_packets
from l2mesh.session import SessionError
from l2mesh.session_server import IdentityDesk
from l2mesh.switch.multicast import group_key
from l2mesh.wire.codec import parse_message
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import ParseError, parse_or_none
from l2mesh.root_client import PIN_RETRY_S, RootLink, register_message
from l2mesh.wire.messages import NETCONF_PROOF_CONTEXT, EndpointHints, Keepalive, MessageKind, NetconfStatus, PathProbeReply
from l2mesh.wire.packets import MAX_RELAY_HOPS, RELAY_HEADER, RELAY_HEADER_BYTES, IdentityRequest, PacketType

PUNCHES_PER_MEMBER_PER_S = 1.0
MAX_PUNCH_ENDPOINTS = 8
MULTICAST_EXPIRE_INTERVAL_S = 5.0
ROOT_SILENT_S = 60.0  # a root unheard this long is shown as connecting again (keepalives come every ~10 s)

ENDPOINT_PUSHES_PER_MEMBER_PER_S = 0.1
# A member asks per network every NETCONF_REFRESH_S (25 s), every 2 s while waiting, and again on a
# new session or a delta it cannot apply; each request costs a signature check and a (large) answer.
NETCONF_REQUESTS_PER_NETWORK_PER_S = 1.0
NETCONF_REQUEST_BURST = 5.0
# Members probe a controller every 1-10 s (path_probe); `l2mesh netcheck` a few more at once.
PATH_PROBES_PER_SESSION_PER_S = 5.0
PATH_PROBE_BURST = 20.0
MAX_LIMITED_KEYS = 65536
# A push for members' own writes (joins, moved endpoints) or another instance's commits goes out at
# once unless the network's last such push went out less than this ago; then once at the end of the
# window (tick), carrying every change since: a storm of n joins costs one push per window, not n.
# Admin changes are pushed at once always (a deauthorization cuts the member off within a round trip).
PUSH_COALESCE_S = 0.2
# Member writes waiting for the storage writer; past this, requests that need
# one go unanswered (members retry) rather than queue without bound.
MAX_MEMBER_WRITES_IN_FLIGHT = 10_000


class Transmit(Protocol):
    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None: ...

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None: ...


class ControllerCore:
    def __init__(
        self,
        identity: Identity,
        directory: Directory,
        transmit: Transmit,
        wall_clock_s: Callable[[], float] = time.time,
        max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
        relay_limit_mbps: int = DEFAULT_RELAY_LIMIT_MBPS,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.directory = directory
        self.transmit = transmit
        self.wall_clock_s = wall_clock_s
        self.max_datagram_bytes = max_datagram_bytes
        self.drops: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.pushes: Counter[int] = Counter()  # network id -> members a push of it reached (metrics)
        self.requests: Counter[str] = Counter()  # "netconf" requests with a valid proof; "join": a node's first per network
        self.clients = Clients(identity.x25519_private, self.drops)
        self.relay = Relay(relay_limit_mbps, self.drops)
        self.issuer = Issuer(identity, wall_clock_s, self.drops, self.sent, self.controller_endpoints)
        self.seen = SeenTracker()
        self.identity_desk = IdentityDesk(identity, frozenset({self.node_id}), self.drops)
        self._endpoint_pushes = KeyedRateLimiter(ENDPOINT_PUSHES_PER_MEMBER_PER_S, 2.0)
        self._punches = KeyedRateLimiter(PUNCHES_PER_MEMBER_PER_S, 3.0)
        self._netconf_requests = KeyedLimit(
            "netconf_request_rate_limited", NETCONF_REQUESTS_PER_NETWORK_PER_S, NETCONF_REQUEST_BURST, self.drops, MAX_LIMITED_KEYS
        )
        self._path_probes = KeyedLimit(
            "path_probe_rate_limited", PATH_PROBES_PER_SESSION_PER_S, PATH_PROBE_BURST, self.drops, MAX_LIMITED_KEYS
        )
        self._node_id_bytes = identity.node_id.to_bytes(5, "big")
        self.pinned_roots: list[tuple[Endpoint, PublicIdentity]] = []  # for the edge to save (trust on first use)
        self._writes: list[StorageWrite] = []
        self._asked: set[tuple[int, int]] = set()  # (network id, node id) with a MemberAsked in flight
        self._now_s = 0.0
        self.roots: list[RootLink] = []
        self.local_endpoints: list[Endpoint] = []  # the edge's addresses, registered with the roots
        self.multicast = MulticastRegistry(self.drops)
        self._next_multicast_expiry_s = 0.0
        # Instances sharing our database (issue 12): ours is announced with instance_endpoints (set by the edge).
        self.instance_id = secrets.token_hex(8)
        self.started_wall_s = wall_clock_s()
        self.instance_endpoints: list[Endpoint] = []
        self.instances: tuple[ControllerInstance, ...] = ()  # live ones, ours included, as the last heartbeat read
        self._next_heartbeat_s = 0.0
        self._reloads_wanted: set[int | None] = set()  # reloads queued, not yet committed (None: every network)
        self._last_push_s: dict[int, float] = {}  # network id -> when its last push went out
        self._pushes_due: set[int] = set()  # networks with a push held back to the end of their window

    # -- datagrams --------------------------------------------------------------------------------
    def datagram_received(self, data: memoryview, source: Endpoint, now: float) -> None:
        self._now_s = now
        if not data:
            self.drops["empty_datagram"] += 1
            return
        kind = data[0]
        if kind == PacketType.RELAY:
            if len(data) <= RELAY_HEADER_BYTES:
                self.drops["relay_malformed"] += 1
                return
            if data[2:7] == self._node_id_bytes:
                self._relayed_to_us(data, source, now)
                return
            target = self.relay.target(data, source, now, 1, self.clients.by_node, self.directory)
            if target is not None:
                self.transmit.send_datagram(data, target)
            return
        self._session_packet(data, source, now, None)

    def _session_packet(self, data: memoryview, source: Endpoint, now: float, via_root: int | None) -> None:
        """A packet straight from its sender, or (via_root: the sender's id) opened from a root's envelope."""
        kind = data[0]
        relayed = via_root is not None
        try:
            if kind == PacketType.TRANSPORT:
                self._transport_received(data, source, now, relayed)
            elif kind == PacketType.HANDSHAKE_INIT:
                response = self.clients.handshake_initiation(data, source, now, via_root)
                if response is not None:
                    self._deliver(response, source, via_root)
            elif kind == PacketType.HANDSHAKE_RESPONSE:
                # Confirms the keys, so the member may send on them at once.
                self._send(self.clients.handshake_response(data, source, now, relayed), Keepalive.build({}))
            elif kind == PacketType.COOKIE_REPLY:
                self.clients.table.handle_cookie_reply(data, now)  # a member under load: our retry carries mac2
            elif kind == PacketType.IDENTITY_REQUEST and not relayed:
                answer = self.identity_desk.answer(data, source, now)
                if answer is not None:
                    self.transmit.send_datagram(answer, source)
            elif kind == PacketType.IDENTITY_RESPONSE and not relayed:
                self._root_keys(data, source)
            else:
                self.drops["unexpected_packet_type"] += 1
        except (SessionError, ParseError):
            self.drops[f"rejected_{PacketType(kind).name.lower() if kind in PacketType._value2member_map_ else 'packet'}"] += 1

    def _relayed_to_us(self, data: memoryview, source: Endpoint, now: float) -> None:
        """An envelope for us from one of our roots: a member that reaches us only through it."""
        _, hops, _, origin = RELAY_HEADER.unpack_from(data)
        if hops > MAX_RELAY_HOPS or not any(link.endpoint == source and link.identity is not None for link in self.roots):
            self.drops["relay_to_us_from_stranger"] += 1
            return
        self._session_packet(data[RELAY_HEADER_BYTES:], source, now, int.from_bytes(origin, "big"))

    def _deliver(self, packet: bytes | memoryview, endpoint: Endpoint, via_root: int | None) -> None:
        """A datagram to a member: straight to it, or (via_root: its id) in an envelope to the root at endpoint."""
        if via_root is None:
            self.transmit.send_datagram(packet, endpoint)
            return
        header = RELAY_HEADER.pack(PacketType.RELAY, 0, via_root.to_bytes(5, "big"), self._node_id_bytes)
        self.transmit.send_datagram(header + bytes(packet), endpoint)

    def segments_received(self, data: memoryview, segment_bytes: int, source: Endpoint, now: float) -> bool:
        """A run of same-size datagrams from one sender: forward it in one send if all are one relay envelope."""
        packets = envelope_run_packets(data, segment_bytes)
        if packets is None:
            return False
        target = self.relay.target(data, source, now, packets, self.clients.by_node, self.directory)
        if target is not None:
            self.transmit.send_segments(data, segment_bytes, target)
        return True

    def _transport_received(self, data: memoryview, source: Endpoint, now: float, relayed: bool) -> None:
        client, message = self.clients.open(data, source, now, relayed)
        if client.is_root:
            self._from_root(client, message, now)
            return
        if client.node_id is not None:
            for network_id in client.networks:
                self.seen.heard(network_id, client.node_id)
        kind, parsed = parse_message(message)
        if kind == MessageKind.NETCONF_REQUEST:
            self._netconf_request(client, parsed)
        elif kind == MessageKind.KEEPALIVE:
            pass
        elif kind == MessageKind.ENDPOINT_HINTS:
            if client.node_id is None:
                return
            if parsed.node_id == client.node_id:
                # The member's own local addresses: candidates for peers on its LAN.
                self.clients.set_local_endpoints(client, [tuple(e) for e in parsed.endpoints])
                return
            # A rendezvous request: tell both sides to probe each other now (hole punching).
            hints = self.relay.rendezvous(client, parsed.node_id, now, self.clients.by_node, self.directory)
            for one, message in hints:
                self._send(one, message)
            if hints:
                self.sent["rendezvous"] += 1
        elif kind == MessageKind.MULTICAST_LIKE or kind == MessageKind.MULTICAST_GATHER:
            self._multicast(client, kind, parsed, now)
        elif kind == MessageKind.PATH_PROBE:
            if not self._path_probes.take(client.session.key, now):
                return
            # The reply tells the member its address as seen from here (its NAT mapping).
            self._send(client, PathProbeReply.build({"probe_id": parsed.probe_id, "observed": source}))
        else:
            self.drops["unhandled_message"] += 1

    def _multicast(self, client: Client, kind: MessageKind, parsed: Any, now: float) -> None:
        """A member likes its groups, or gathers a group's subscribers: only on a network it is authorized on."""
        member = None if client.node_id is None else self.directory.member(parsed.network_id, client.node_id)
        if member is None or not member.authorized or self._find_network(parsed.network_id) is None:
            self.drops["multicast_from_non_member"] += 1
            return
        if kind == MessageKind.MULTICAST_LIKE:
            groups = [group_key(bytes(g.mac), g.adi) for g in parsed.groups]
            self._push_multicast(self.multicast.like(parsed.network_id, member.node_id, groups, parsed.complete, parsed.ttl_s, now))
        else:
            group = group_key(bytes(parsed.group.mac), parsed.group.adi)
            self._send_all(client, self.multicast.gather(parsed.network_id, member.node_id, group, parsed.gather_id, parsed.limit, now))

    def _push_multicast(self, pushes: list[Push]) -> None:
        for push in pushes:
            for node_id in push.node_ids:
                client = self.clients.online(node_id, self._now_s)
                if client is not None:
                    self._send(client, push.message)
                    self.sent["multicast_push"] += 1

    def _netconf_request(self, client: Client, request: Any) -> None:
        # Before the signature check: that is what a member asking in a loop would make us spend.
        if not self._netconf_requests.take((client.session.key, request.network_id), self._now_s):
            return
        identity = PublicIdentity(client.session.remote_static, request.ed25519)
        network_id = request.network_id
        proof = NETCONF_PROOF_CONTEXT + identity.x25519_public + network_id.to_bytes(8, "big")
        if not identity.verify(proof, request.proof):
            self.drops["netconf_request_without_proof"] += 1
            return
        self.requests["netconf"] += 1
        node_id = node_id_from_public_keys(identity.x25519_public, identity.ed25519_public)
        if client.node_id not in (None, node_id):
            self.drops["client_changed_identity"] += 1
            return
        network = self._find_network(network_id)
        if network is None:
            self._send_all(client, self.issuer.status(network_id, NetconfStatus.NOT_FOUND, 0))
            return
        member = self.directory.member(network_id, node_id)
        if member is not None and member.identity is not None and member.identity != identity:
            self.drops["member_keys_mismatch"] += 1
            self._send_all(client, self.issuer.status(network_id, NetconfStatus.ACCESS_DENIED, 0))
            return
        # Only now, with the keys matching what we hold, does this client speak for the id.
        self.clients.identify(client, node_id, identity, network_id)
        client.client_version = printable_version(request.client_version)
        self.seen.heard(network_id, node_id)
        self.issuer.history.note_held(network_id, node_id, request.have_revision)  # what the commit's answer builds on
        if (network_id, node_id) in self._asked:
            return  # its write is on the way to storage; the commit answers
        # A member we hear only through a root has no address of its own here: peers find it through the roots.
        observed = "" if client.reachable_at is None else f"{client.endpoint[0]}:{client.endpoint[1]}"
        if member is None or member.identity is None or member.endpoint != observed:
            self._ask_storage(member, network_id, node_id, identity, observed)
            return
        self._answer(client, network, have_revision=request.have_revision)

    def _ask_storage(self, member: Member | None, network_id: int, node_id: int, identity: PublicIdentity, observed: str) -> None:
        """Hand the member's write (join, keys, endpoint) to storage; its commit answers the member."""
        if len(self._asked) >= MAX_MEMBER_WRITES_IN_FLIGHT:
            self.drops["storage_backlog"] += 1
            return
        # Peers find each other through the endpoints in the config: a member
        # that moved (restart, NAT rebinding) is announced to all, but a member
        # hopping ports cannot make us push to everyone at will.
        announce = (
            member is not None and member.authorized and member.endpoint != observed
            and self._endpoint_pushes.take(node_id, self._now_s)
        )
        if member is None or member.identity is None:
            self.requests["join"] += 1  # a node's first ask for this network (pre-authorized or not)
        self._asked.add((network_id, node_id))
        self._writes.append(MemberAsked(network_id, node_id, identity, observed, announce, self.wall_clock_s()))

    def greet_members(self, now: float) -> int:
        """After a (re)start: open sessions towards every known member at its last endpoint.

        Members still hold sessions with the previous process and would only
        notice on their next refresh; a fresh handshake from here makes them
        re-request their configs at once, so pushes reach them again.
        """
        self._now_s = now
        if self.other_instances_live():
            # Members are with another instance: greeting them would pull them here, away from a working one.
            return 0
        greeted = 0
        for network_id in list(self.directory.networks):
            for member in self.directory.members(network_id):
                if not member.authorized or member.identity is None or not member.endpoint:
                    continue
                try:
                    endpoint = parse_endpoint(member.endpoint)
                except L2meshError:
                    continue
                initiation = self.clients.greeting(member.identity, now)
                if initiation is not None:
                    self.transmit.send_datagram(initiation, endpoint)
                    greeted += 1
        return greeted

    # -- answering and pushing ----------------------------------------------------------------------
    def _find_network(self, network_id: int) -> Network | None:
        if controller_of(network_id) != self.node_id:
            return None
        return self.directory.network(network_id)

    def push(self, network_id: int, coalesce: bool = False) -> int:
        """Send the current state of a network to every online client; returns how many (-1: held back).

        coalesce: within PUSH_COALESCE_S of the network's last coalesced
        push, hold it back; tick() sends it once that window ends, carrying
        every change since. A lone change goes out at once either way, and
        an admin change's push (coalesce False) opens no window.
        """
        if coalesce:
            last = self._last_push_s.get(network_id)
            if last is not None and self._now_s - last < PUSH_COALESCE_S:
                self._pushes_due.add(network_id)
                return -1
            self._last_push_s[network_id] = self._now_s
        return self._push_now(network_id)

    def _push_due(self) -> None:
        for network_id in sorted(self._pushes_due):
            if self._now_s - self._last_push_s.get(network_id, -PUSH_COALESCE_S) >= PUSH_COALESCE_S:
                self._last_push_s[network_id] = self._now_s
                self._push_now(network_id)

    def _push_now(self, network_id: int) -> int:
        """Members holding a recent revision get the same signed delta (signed once, sealed per session); others a full config."""
        self._pushes_due.discard(network_id)  # this push carries what was held back
        clients = self.clients.online_in(network_id, self._now_s)
        network = self._find_network(network_id)
        if network is None:
            self.issuer.history.forget(network_id)
            self.pushes.pop(network_id, None)  # its series goes with it
        else:
            self.pushes[network_id] += len(clients)
        members = self.directory.members(network_id)
        for client in clients:
            if network is None:
                self._send_all(client, self.issuer.status(network_id, NetconfStatus.NOT_FOUND, 0))
            else:
                self._answer(client, network, members)
        return len(clients)

    def _push_stamps(self) -> None:
        """New times for configs unchanged a long while: one signed empty delta to the members holding them."""
        for network_id, message in self.issuer.history.stamps_due():
            network = self._find_network(network_id)
            if network is None:
                continue
            for client in self.clients.online_in(network_id, self._now_s):
                if client.node_id is not None and self.issuer.history.holds(network_id, client.node_id) == network.revision:
                    self._send(client, message)

    def _answer(
        self, client: Client, network: Network, members: list[Member] | None = None, have_revision: int | None = None
    ) -> None:
        assert client.node_id is not None
        me = self.directory.member(network.network_id, client.node_id)
        if members is None:
            members = self.directory.members(network.network_id)
        self._send_all(client, self.issuer.answer(network, members, me, client, self.clients.by_node, have_revision))

    def _send_all(self, client: Client, messages: list[bytes]) -> None:
        for message in messages:
            self._send(client, message)

    def _send(self, client: Client, message: bytes) -> None:
        packet = client.session.seal(message, self._now_s)
        if packet is None:
            self.drops["no_session_for_push"] += 1
            return
        via_root = client.node_id if client.via_root else None
        room = self.max_datagram_bytes - (RELAY_HEADER_BYTES if via_root is not None else 0)
        if len(packet) <= room:
            self._deliver(packet, client.endpoint, via_root)
        else:
            for piece in fragment(packet, room):
                self._deliver(piece, client.endpoint, via_root)

    # -- roots ----------------------------------------------------------------------------------------------
    def add_root(self, endpoint: Endpoint, expected_id: int | None, identity: PublicIdentity | None) -> None:
        """A root to register with (identity None: its keys are fetched, checked against expected_id, pinned)."""
        link = RootLink(endpoint, expected_id)
        self.roots.append(link)
        identity = link.accept_given(identity)
        if identity is not None:
            self._trust_root(link, identity)

    def _trust_root(self, link: RootLink, identity: PublicIdentity) -> None:
        link.trust(identity)
        self.clients.add_root(identity)

    def _root_keys(self, data: memoryview, source: Endpoint) -> None:
        link = next((r for r in self.roots if r.endpoint == source and r.identity is None), None)
        if link is None:
            self.drops["identity_response_unexpected"] += 1
            return
        keys = link.pinned_keys(data)
        if isinstance(keys, str):
            self.drops[keys] += 1
            return
        self._trust_root(link, keys)
        self.pinned_roots.append((link.endpoint, keys))

    def _from_root(self, client: Client, message: bytes, now: float) -> None:
        link = next((r for r in self.roots if r.node_id == client.node_id), None)
        if link is None or not message:
            return
        kind = message[0]
        if kind == MessageKind.ROOT_REGISTERED:
            if not link.registered(message, now):
                self.drops["root_registered_malformed"] += 1
        elif kind == MessageKind.ENDPOINT_HINTS:
            self._punch_towards(message, now)
        elif kind not in (MessageKind.KEEPALIVE, MessageKind.PATH_PROBE_REPLY, MessageKind.ROOT_LOOKUP_REPLY):
            self.drops["unhandled_root_message"] += 1

    def _punch_towards(self, message: bytes, now: float) -> None:
        """A root says a member wants to reach us: send towards its addresses, opening our NAT for its packets."""
        hints = parse_or_none(EndpointHints, message)
        if hints is None or not hints.punch:
            self.drops["hints_malformed"] += 1
            return
        if not self._punches.take(hints.node_id, now):
            self.drops["punch_rate_limited"] += 1
            return
        known = self.directory.identity_of(hints.node_id)
        # A handshake if we know its keys (it will answer); else any small datagram opens our NAT just the same.
        packet = self.clients.greeting(known, now) if known is not None else None
        if packet is None:
            packet = IdentityRequest.build({"node_id": hints.node_id})
        for endpoint in hints.endpoints[:MAX_PUNCH_ENDPOINTS]:
            self.transmit.send_datagram(packet, tuple(endpoint))
        self.sent["punches"] += 1

    def _root_tick(self, now: float) -> None:
        for link in self.roots:
            request = link.pin_request(now)
            if request is not None:
                self.transmit.send_datagram(request, link.endpoint)
            elif link.register_due(now):
                assert link.identity is not None and link.node_id is not None
                client = self.clients.by_static.get(link.identity.x25519_public)
                if client is None or not client.session.established or not client.online(now):
                    initiation = self.clients.greeting(link.identity, now)
                    if initiation is not None:
                        self.transmit.send_datagram(initiation, link.endpoint)
                    link.next_register_s = now + PIN_RETRY_S  # register once the session is up
                    continue
                self._send(client, register_message(self.identity, link.node_id, self.local_endpoints))

    def roots_view(self, now: float) -> list[dict[str, Any]]:
        rows = []
        for link in self.roots:
            client = self.clients.by_static.get(link.identity.x25519_public) if link.identity is not None else None
            up = client is not None and link.registered_s is not None and now - client.last_seen_s <= ROOT_SILENT_S
            rows.append(
                {
                    "id": format_node_id(link.node_id) if link.node_id is not None else None,
                    "endpoint": f"{link.endpoint[0]}:{link.endpoint[1]}",
                    "status": "up" if up else "pinning" if link.identity is None else "connecting",
                    "observed": f"{link.observed[0]}:{link.observed[1]}" if link.observed is not None else None,
                }
            )
        return rows

    # -- storage: what the core wants written, and what was committed -------------------------------------
    def take_writes(self) -> list[StorageWrite]:
        """The writes wanted since the last call, for the storage writer (in this order)."""
        writes, self._writes = self._writes, []
        return writes

    def committed(self, change: Committed) -> dict[str, Any] | None:
        """A commit (the core's own write or an admin change), in commit order: update, push, answer.

        Returns the admin view of what an admin change changed.
        """
        if change.reloaded or change.instances is not None:
            self._shared_state(change)
            return None
        self.directory.apply(change)
        for reason in change.drops:
            self.drops[reason] += 1
        # Members' own writes are what comes in storms; an admin change goes out at once.
        held_back = {network_id for network_id in change.push if self.push(network_id, coalesce=change.asked is not None) < 0}
        if change.asked is not None:
            self._asked.discard(change.asked)
            if not change.failed and (change.asked[0] not in change.push or change.asked[0] in held_back):
                self._answer_asker(*change.asked)  # no push answered it (yet): its config now, the others' later
        if isinstance(change.answer, Member):
            return self.member_doc(change.answer)
        if isinstance(change.answer, Network):
            return change.answer.to_json()
        return None

    # -- other instances on the same database (issue 12) ---------------------------------------------------
    def external_change(self, network_id: int | None) -> None:
        """The database changed, maybe by another instance (network_id None: somewhere): reload it, push what moved."""
        if None in self._reloads_wanted or network_id in self._reloads_wanted:
            return  # a reload queued and not yet read covers it
        self._reloads_wanted.add(network_id)
        self._writes.append(Reload(network_id))

    def controller_endpoints(self) -> tuple[Endpoint, ...]:
        """Where members reach this controller: every live instance's endpoints (ours first), for the configs."""
        texts = [format_endpoint(e) for e in self.instance_endpoints]
        texts += [e for instance in self.instances if instance.instance_id != self.instance_id for e in instance.endpoints]
        out: list[Endpoint] = []
        for text in dict.fromkeys(texts):
            try:
                out.append(parse_endpoint(text))
            except L2meshError:
                self.drops["instance_endpoint_malformed"] += 1
        return tuple(out[:MAX_CONTROLLER_ENDPOINTS])

    def _shared_state(self, change: Committed) -> None:
        if change.reloaded:
            self._reloads_wanted.discard(change.reload_of)
            for network_id in self.directory.replace(change):
                self.push(network_id, coalesce=True)
            return
        assert change.instances is not None
        before = self.controller_endpoints()
        self.instances = change.instances
        if self.controller_endpoints() != before:
            # Same revision, new instance list: members hold configs naming the old one. An empty
            # delta per network (new times, the new list), signed once, tells them.
            self.issuer.history.restamp()
            self._push_stamps()

    def _heartbeat(self) -> None:
        endpoints = tuple(format_endpoint(e) for e in self.instance_endpoints)
        instance = ControllerInstance(self.instance_id, endpoints[:MAX_INSTANCE_ENDPOINTS], self.started_wall_s, self.wall_clock_s())
        self._writes.append(Heartbeat(instance))

    def other_instances_live(self) -> bool:
        """Another instance heartbeats elsewhere. A row at our own endpoints is this controller's previous
        process (killed less than INSTANCE_LIVE_S ago), not another instance: its members need greeting."""
        ours = {format_endpoint(e) for e in self.instance_endpoints}
        return any(i.instance_id != self.instance_id and set(i.endpoints) != ours for i in self.instances)

    def _answer_asker(self, network_id: int, node_id: int) -> None:
        client = self.clients.online(node_id, self._now_s)
        if client is None or network_id not in client.networks:
            return
        network = self._find_network(network_id)
        if network is None:
            self._send_all(client, self.issuer.status(network_id, NetconfStatus.NOT_FOUND, 0))
        else:
            self._answer(client, network)

    # -- timers -------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._now_s = now
        if self.roots:
            self._root_tick(now)
        self._push_due()
        self._push_stamps()
        for client in self.clients.poll(now):
            self._send(client, Keepalive.build({}))
        if now >= self._next_multicast_expiry_s:
            self._next_multicast_expiry_s = now + MULTICAST_EXPIRE_INTERVAL_S
            self._push_multicast(self.multicast.expire(now))
        seen = self.seen.due(now, self.online_since)
        if seen is not None:
            self._writes.append(seen)
        if now >= self._next_heartbeat_s:
            self._next_heartbeat_s = now + HEARTBEAT_S
            self._heartbeat()

    # -- admin views (reactor thread, from the directory) ------------------------------------------------
    def online_since(self, node_id: int) -> float | None:
        """Wall time a node with a session here was last heard from."""
        client = self.clients.by_node.get(node_id)
        if client is None:
            return None
        return self.wall_clock_s() - (self._now_s - client.last_seen_s)

    def list_networks(self) -> list[dict[str, Any]]:
        return admin.network_list(self.directory)

    def get_network(self, network_id: int) -> dict[str, Any]:
        return admin.network_doc(self.directory, network_id)

    def get_rules(self, network_id: int) -> dict[str, Any]:
        return admin.rules_doc(self.directory, network_id)

    def list_members(self, network_id: int) -> list[dict[str, Any]]:
        admin.known_network(self.directory, network_id)
        return [self.member_doc(m) for m in self.directory.members(network_id)]

    def get_member(self, network_id: int, node_id: int) -> dict[str, Any]:
        return self.member_doc(admin.known_member(self.directory, network_id, node_id))

    def member_doc(self, member: Member) -> dict[str, Any]:
        return admin.member_doc(member, self.online_since(member.node_id), self.reported_version(member.node_id))

    def reported_version(self, node_id: int) -> str | None:
        """The l2mesh version an online member reported in its last netconf request."""
        client = self.clients.by_node.get(node_id)
        return (client.client_version or None) if client is not None else None

    def status(self) -> dict[str, Any]:
        return {
            "id": format_node_id(self.node_id),
            "online_members": self.clients.identified(),
            "sessions": len(self.clients.table.sessions),
            "drops": dict(self.drops),
            "sent": dict(self.sent),
            "relayed_packets": self.relay.relayed_packets,
            "relayed_bytes": self.relay.relayed_bytes,
            "roots": self.roots_view(self._now_s),
            "multicast": self.multicast.counts(),
            "instance": self.instance_id,
            "instances": [{"id": i.instance_id, "endpoints": list(i.endpoints)} for i in self.instances],
        }
