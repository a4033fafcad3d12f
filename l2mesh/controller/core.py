"""The controller's protocol core, sans-IO: answers members' netconf requests and pushes changes.

Members reach the controller over the same Noise IK sessions as peers use
between themselves. Any static key may open a session (anyone may ask to
join); what it gets is decided per network and member. Every admin change
goes through this core: validated, committed to storage, then pushed at once
to every online member of the network, so a deauthorized member is cut off
by its peers within one round trip of the admin command.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from l2mesh.controller.model import (
    Member,
    Network,
    NotFound,
    ValidationError,
    assign_from_pools,
    check_no_duplicate_ips,
    member_interface,
    validate_network_fields,
)
from l2mesh.controller.defaults import DEFAULT_RELAY_LIMIT_MBPS
from l2mesh.controller.storage import Storage
from l2mesh.crypto.timers import DEFAULT_LIMITS
from l2mesh.fragments import DEFAULT_MAX_DATAGRAM_BYTES, fragment
from l2mesh.errors import L2meshError
from l2mesh.identity import Identity, PublicIdentity, node_id_from_public_keys
from l2mesh.ids import controller_of, format_node_id
from l2mesh.netconf import NETCONF_TTL_S, MemberConfig, NetworkConfig, parse_endpoint, usable_endpoint
from l2mesh.ratelimit import KeyedRateLimiter
from l2mesh.session import Session, SessionAction, SessionError, SessionTable
from l2mesh.wire.common import Endpoint
from l2mesh.wire.codec import parse_message
from l2mesh.wire.errors import ParseError, parse_exact
from l2mesh.wire.messages import (
    MAX_NETCONF_CHUNKS,
    NETCONF_CHUNK_BYTES,
    Keepalive,
    MessageKind,
    NetconfResponse,
    EndpointHints,
    NETCONF_PROOF_CONTEXT,
    NetconfStatus,
    PathProbeReply,
)
from l2mesh.wire.packets import (
    MAX_RELAY_HOPS,
    RELAY_HEADER,
    RELAY_HEADER_BYTES,
    IdentityRequest,
    IdentityResponse,
    PacketType,
)

# A member that asked within this window is online and gets pushes.
ONLINE_WINDOW_S = 120.0
SEEN_FLUSH_INTERVAL_S = 10.0
IDENTITY_REQUESTS_PER_SOURCE_PER_S = 5.0
RELAY_BURST_S = 0.05  # the relay budget's bucket holds this much time at the member's rate
RENDEZVOUS_PER_PAIR_PER_S = 1.0
MAX_LOCAL_ENDPOINTS = 8
MAX_NETWORKS_PER_CLIENT = 64
CONTROLLER_SESSION_LIMITS = replace(DEFAULT_LIMITS, handshake_rate_total_per_s=1000.0)
ENDPOINT_PUSHES_PER_MEMBER_PER_S = 0.1
# A session that has not named its node (a netconf request) this soon after
# its handshake is dropped: anyone may handshake, nobody may park state here.
UNIDENTIFIED_CLIENT_S = 10.0
MAX_UNIDENTIFIED_CLIENTS = 10_000


class Transmit(Protocol):
    def send_datagram(self, data: bytes | memoryview, address: Endpoint) -> None: ...

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: Endpoint) -> None: ...


@dataclass(eq=False)
class Client:
    """A node talking to this controller, known by its session's static key."""

    session: Session
    endpoint: Endpoint
    node_id: int | None = None
    identity: PublicIdentity | None = None
    networks: set[int] = field(default_factory=set)
    last_seen_s: float = 0.0
    local_endpoints: list[Endpoint] = field(default_factory=list)
    first_seen_s: float = 0.0


class ControllerCore:
    def __init__(
        self,
        identity: Identity,
        storage: Storage,
        transmit: Transmit,
        wall_clock_s: Callable[[], float] = time.time,
        max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
        relay_limit_mbps: int = DEFAULT_RELAY_LIMIT_MBPS,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.storage = storage
        self.transmit = transmit
        self.wall_clock_s = wall_clock_s
        self.max_datagram_bytes = max_datagram_bytes
        # Anyone may handshake; the overall rate stays below what one core can answer.
        self.table = SessionTable(identity.x25519_private, limits=CONTROLLER_SESSION_LIMITS)
        self.clients: dict[bytes, Client] = {}
        self.drops: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self._identity_requests = KeyedRateLimiter(IDENTITY_REQUESTS_PER_SOURCE_PER_S, 10.0)
        self.by_node: dict[int, Client] = {}
        self._unidentified: set[bytes] = set()  # static keys of sessions that have not named their node
        self._relay_allowed: dict[tuple[int, int], bool] = {}
        relay_bytes_per_s = relay_limit_mbps * 1_000_000 / 8
        self._relay_budget = KeyedRateLimiter(relay_bytes_per_s, relay_bytes_per_s * RELAY_BURST_S)
        self._rendezvous_budget = KeyedRateLimiter(RENDEZVOUS_PER_PAIR_PER_S, 2.0)
        self._endpoint_pushes = KeyedRateLimiter(ENDPOINT_PUSHES_PER_MEMBER_PER_S, 2.0)
        self.relayed_packets = 0
        self.relayed_bytes = 0
        self._seen_dirty: set[tuple[int, int]] = set()
        self._next_seen_flush_s = 0.0
        self._now_s = 0.0

    # -- datagrams --------------------------------------------------------------------------------
    def datagram_received(self, data: memoryview, source: Endpoint, now: float) -> None:
        self._now_s = now
        if not data:
            self.drops["empty_datagram"] += 1
            return
        kind = data[0]
        if kind == PacketType.RELAY:
            self._relay(data, source, now)
            return
        try:
            if kind == PacketType.TRANSPORT:
                self._transport_received(data, source, now)
            elif kind == PacketType.HANDSHAKE_INIT:
                if len(self._unidentified) >= MAX_UNIDENTIFIED_CLIENTS:
                    self.drops["too_many_unidentified_clients"] += 1
                    return
                result = self.table.handle_initiation(data, now, source[0])
                self._client(result.session, source, now)
                assert result.response is not None
                self.transmit.send_datagram(result.response, source)
            elif kind == PacketType.HANDSHAKE_RESPONSE:
                result = self.table.handle_response(data, now)
                client = self._client(result.session, source, now)
                # Confirms the keys, so the member may send on them at once.
                self._send(client, Keepalive.build({}))
            elif kind == PacketType.IDENTITY_REQUEST:
                self._identity_request(data, source, now)
            else:
                self.drops["unexpected_packet_type"] += 1
        except (SessionError, ParseError):
            self.drops[f"rejected_{PacketType(kind).name.lower() if kind in PacketType._value2member_map_ else 'packet'}"] += 1

    def _relay(self, data: memoryview, source: Endpoint, now: float) -> None:
        """Forward an end-to-end encrypted packet between two authorized members of a network we control."""
        if len(data) <= RELAY_HEADER_BYTES:
            self.drops["relay_malformed"] += 1
            return
        target = self._relay_target(data, source, now, len(data))
        if target is not None:
            self.relayed_packets += 1
            self.relayed_bytes += len(data)
            self.transmit.send_datagram(data, target)

    def _relay_target(self, data: memoryview, source: Endpoint, now: float, size: int) -> Endpoint | None:
        """Where an envelope goes, if it may: authentic sender, authorized pair, within the sender's budget."""
        _, hops, destination, origin = RELAY_HEADER.unpack_from(data)
        sender = self.by_node.get(int.from_bytes(origin, "big"))
        # The envelope's source must be the member whose session we hold at this address.
        if sender is None or sender.endpoint != source:
            self.drops["relay_spoofed_or_unknown_source"] += 1
            return None
        target = self.by_node.get(int.from_bytes(destination, "big"))
        if target is None or now - target.last_seen_s > ONLINE_WINDOW_S or hops >= MAX_RELAY_HOPS:
            self.drops["relay_target_offline"] += 1
            return None
        assert sender.node_id is not None and target.node_id is not None
        if not self._may_relay(sender.node_id, target.node_id):
            self.drops["relay_not_authorized"] += 1
            return None
        if not self._relay_budget.take(sender.node_id, now, size):
            self.drops["relay_rate_limited"] += 1
            return None
        return target.endpoint

    def segments_received(self, data: memoryview, segment_bytes: int, source: Endpoint, now: float) -> bool:
        """A run of same-size datagrams from one sender: forward it in one send if all are one relay envelope."""
        if data[0] != PacketType.RELAY or segment_bytes <= RELAY_HEADER_BYTES or len(data) <= segment_bytes:
            return False
        envelope = bytes(data[:RELAY_HEADER_BYTES])
        for start in range(segment_bytes, len(data), segment_bytes):
            if data[start : start + RELAY_HEADER_BYTES] != envelope:
                return False
        target = self._relay_target(data, source, now, len(data))
        if target is not None:
            self.relayed_packets += -(-len(data) // segment_bytes)
            self.relayed_bytes += len(data)
            self.transmit.send_segments(data, segment_bytes, target)
        return True

    def _may_relay(self, a: int, b: int) -> bool:
        """Both authorized in some network of ours (cached; the cache is dropped on every admin change)."""
        key = (a, b) if a < b else (b, a)
        allowed = self._relay_allowed.get(key)
        if allowed is None:
            allowed = False
            for network in self.storage.list_networks():
                members = {m.node_id for m in self.storage.list_members(network.network_id) if m.authorized}
                if a in members and b in members:
                    allowed = True
                    break
            if len(self._relay_allowed) > 100_000:
                self._relay_allowed.clear()
            self._relay_allowed[key] = allowed
        return allowed

    def _endpoint_hints(self, client: Client, hints: Any, now: float) -> None:
        if client.node_id is None:
            return
        if hints.node_id == client.node_id:
            # The member's own local addresses: candidates for peers on its LAN.
            # Checked: they go into every member's config.
            client.local_endpoints = [tuple(e) for e in hints.endpoints if usable_endpoint(tuple(e))][:MAX_LOCAL_ENDPOINTS]
            return
        # A rendezvous request: tell both sides to probe each other now (hole punching).
        target = self.by_node.get(hints.node_id)
        pair = (min(client.node_id, hints.node_id), max(client.node_id, hints.node_id))
        if target is None or now - target.last_seen_s > ONLINE_WINDOW_S:
            self.drops["rendezvous_target_offline"] += 1
            return
        if not self._may_relay(client.node_id, hints.node_id) or not self._rendezvous_budget.take(pair, now):
            self.drops["rendezvous_refused"] += 1
            return
        for one, other in ((client, target), (target, client)):
            assert other.node_id is not None
            self._send(
                one,
                EndpointHints.build(
                    {"node_id": other.node_id, "punch": True, "endpoints": [other.endpoint, *other.local_endpoints][:MAX_LOCAL_ENDPOINTS]}
                ),
            )
        self.sent["rendezvous"] += 1

    def _identity_request(self, data: memoryview, source: Endpoint, now: float) -> None:
        request = parse_exact(IdentityRequest, data)
        if request.node_id != self.node_id or not self._identity_requests.take(source[0], now):
            self.drops["identity_request_refused"] += 1
            return
        public = self.identity.public
        self.transmit.send_datagram(
            IdentityResponse.build({"x25519": public.x25519_public, "ed25519": public.ed25519_public}), source
        )

    def _client(self, session: Session, source: Endpoint, now: float) -> Client:
        client = self.clients.get(session.remote_static)
        if client is None or client.session is not session:
            client = self.clients[session.remote_static] = Client(session, source, first_seen_s=now)
            self._unidentified.add(session.remote_static)
        client.endpoint = source
        client.last_seen_s = now
        return client

    def _transport_received(self, data: memoryview, source: Endpoint, now: float) -> None:
        session, plaintext = self.table.open(data, now)
        message = bytes(plaintext)
        if message and message[0] != MessageKind.KEEPALIVE:
            session.last_data_received_s = now
        client = self._client(session, source, now)
        if client.node_id is not None:
            for network_id in client.networks:
                self._seen_dirty.add((network_id, client.node_id))
        kind, parsed = parse_message(message)
        if kind == MessageKind.NETCONF_REQUEST:
            self._netconf_request(client, parsed)
        elif kind == MessageKind.KEEPALIVE:
            pass
        elif kind == MessageKind.ENDPOINT_HINTS:
            self._endpoint_hints(client, parsed, self._now_s)
        elif kind == MessageKind.PATH_PROBE:
            # The reply tells the member its address as seen from here (its NAT mapping).
            self._send(client, PathProbeReply.build({"probe_id": parsed.probe_id, "observed": source}))
        else:
            self.drops["unhandled_message"] += 1

    def _netconf_request(self, client: Client, request: Any) -> None:
        identity = PublicIdentity(client.session.remote_static, request.ed25519)
        network_id = request.network_id
        proof = NETCONF_PROOF_CONTEXT + identity.x25519_public + network_id.to_bytes(8, "big")
        if not identity.verify(proof, request.proof):
            self.drops["netconf_request_without_proof"] += 1
            return
        node_id = node_id_from_public_keys(identity.x25519_public, identity.ed25519_public)
        if client.node_id not in (None, node_id):
            self.drops["client_changed_identity"] += 1
            return
        network = self._find_network(network_id)
        if network is None:
            self._send_status(client, network_id, NetconfStatus.NOT_FOUND, 0)
            return
        member = self.storage.find_member(network_id, node_id)
        if member is not None and member.identity is not None and member.identity != identity:
            self.drops["member_keys_mismatch"] += 1
            self._send_status(client, network_id, NetconfStatus.ACCESS_DENIED, 0)
            return
        # Only now, with the keys matching what we hold, does this client speak for the id.
        client.node_id, client.identity = node_id, identity
        self.by_node[node_id] = client
        self._unidentified.discard(client.session.remote_static)
        if len(client.networks) < MAX_NETWORKS_PER_CLIENT:
            client.networks.add(network_id)
        self._seen_dirty.add((network_id, node_id))
        changed_others = False
        if member is None:
            member = Member(network_id, node_id, identity, authorized=not network.private, created_s=self.wall_clock_s())
            if member.authorized:
                try:
                    member = self._with_pool_address(network, member)
                except ValidationError:
                    self.drops["pool_full"] += 1  # a member without an address; the admin can add one
            self.storage.save_member(member, bump_revision=member.authorized)
            changed_others = member.authorized
        elif member.identity is None:
            # Pre-authorized by id: the first node with that id binds its keys.
            member = replace(member, identity=identity)
            self.storage.save_member(member, bump_revision=member.authorized)
            changed_others = member.authorized
        observed = f"{client.endpoint[0]}:{client.endpoint[1]}"
        if member.endpoint != observed:
            # Peers find each other through the endpoints in the config: a
            # member that moved (restart, NAT rebinding) is announced to all,
            # but a member hopping ports cannot make us push to everyone at will.
            announce = member.authorized and self._endpoint_pushes.take(node_id, self._now_s)
            member = replace(member, endpoint=observed)
            self.storage.save_member(member, bump_revision=announce)
            changed_others = changed_others or announce
        if changed_others:
            self.push(network_id)
            return
        network = self.storage.get_network(network_id)
        if member.authorized and request.have_revision == network.revision:
            self._send_not_modified(client, network_id, network.revision)
        else:
            self._answer(client, network, self.storage.list_members(network_id))

    def greet_members(self, now: float) -> int:
        """After a (re)start: open sessions towards every known member at its last endpoint.

        Members still hold sessions with the previous process and would only
        notice on their next refresh; a fresh handshake from here makes them
        re-request their configs at once, so pushes reach them again.
        """
        self._now_s = now
        greeted = 0
        for network in self.storage.list_networks():
            for member in self.storage.list_members(network.network_id):
                if not member.authorized or member.identity is None or not member.endpoint:
                    continue
                session = self.table.session_for(member.identity.x25519_public)
                if session.pending is not None:
                    continue
                try:
                    endpoint = parse_endpoint(member.endpoint)
                except L2meshError:
                    continue
                self.transmit.send_datagram(session.create_initiation(now), endpoint)
                greeted += 1
        return greeted

    # -- answering and pushing ----------------------------------------------------------------------
    def _find_network(self, network_id: int) -> Network | None:
        if controller_of(network_id) != self.node_id:
            return None
        try:
            return self.storage.get_network(network_id)
        except NotFound:
            return None

    def push(self, network_id: int) -> int:
        """Send the current state of a network to every online client that asked for it; returns how many."""
        self._relay_allowed.clear()
        network = self._find_network(network_id)
        members = self.storage.list_members(network_id) if network is not None else []
        pushed = 0
        for client in list(self.clients.values()):
            if network_id not in client.networks or self._now_s - client.last_seen_s > ONLINE_WINDOW_S:
                continue
            if network is None:
                self._send_status(client, network_id, NetconfStatus.NOT_FOUND, 0)
            else:
                self._answer(client, network, members)
            pushed += 1
        return pushed

    def _answer(self, client: Client, network: Network, members: list[Member]) -> None:
        assert client.node_id is not None
        me = next((m for m in members if m.node_id == client.node_id), None)
        if me is None or not me.authorized or me.identity != client.identity:
            self._send_status(client, network.network_id, NetconfStatus.ACCESS_DENIED, network.revision)
            return
        config = self.build_config(network, members, client.node_id)
        signed = config.sign(self.identity)
        chunks = [signed[i : i + NETCONF_CHUNK_BYTES] for i in range(0, len(signed), NETCONF_CHUNK_BYTES)]
        if len(chunks) > MAX_NETCONF_CHUNKS:
            self.drops["netconf_too_large"] += 1
            return
        for index, chunk in enumerate(chunks):
            self._send(
                client,
                NetconfResponse.build(
                    {
                        "network_id": network.network_id,
                        "status": "OK",
                        "revision": network.revision,
                        "chunk_index": index,
                        "chunk_count": len(chunks),
                        "signed_config": chunk,
                    }
                ),
            )
        self.sent["netconf"] += 1

    def _send_not_modified(self, client: Client, network_id: int, revision: int) -> None:
        """OK with an empty config: the member's copy is current (cheap periodic refreshes)."""
        self._send_status(client, network_id, NetconfStatus.OK, revision)

    def _send_status(self, client: Client, network_id: int, status: NetconfStatus, revision: int) -> None:
        self._send(
            client,
            NetconfResponse.build(
                {
                    "network_id": network_id,
                    "status": status.name,
                    "revision": revision,
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "signed_config": b"",
                }
            ),
        )
        self.sent[status.name.lower()] += 1

    def _send(self, client: Client, message: bytes) -> None:
        packet = client.session.seal(message, self._now_s)
        if packet is None:
            self.drops["no_session_for_push"] += 1
            return
        if len(packet) <= self.max_datagram_bytes:
            self.transmit.send_datagram(packet, client.endpoint)
        else:
            for piece in fragment(packet, self.max_datagram_bytes):
                self.transmit.send_datagram(piece, client.endpoint)

    def build_config(self, network: Network, members: list[Member], issued_to: int) -> NetworkConfig:
        now = self.wall_clock_s()
        online = {c.node_id: c for c in self.clients.values() if c.node_id is not None}
        entries = []
        for member in members:
            if not member.authorized or member.identity is None:
                continue
            client = online.get(member.node_id)
            if client is not None:
                endpoints: tuple[Endpoint, ...] = (client.endpoint, *client.local_endpoints)
            elif member.endpoint:
                endpoints = (parse_endpoint(member.endpoint),)
            else:
                endpoints = ()
            entries.append(
                MemberConfig(
                    node_id=member.node_id,
                    identity=member.identity,
                    ips=member.ips,
                    bridge=member.bridge,
                    endpoints=tuple(dict.fromkeys(endpoints))[:MAX_LOCAL_ENDPOINTS],
                    name=member.name,
                )
            )
        return NetworkConfig(
            network_id=network.network_id,
            revision=network.revision,
            issued_to=issued_to,
            name=network.name,
            timestamp_s=now,
            expires_s=now + NETCONF_TTL_S,
            mtu_bytes=network.mtu_bytes,
            multicast_limit=network.multicast_limit,
            broadcast=network.broadcast,
            private=network.private,
            members=tuple(entries),
            routes=tuple({"target": r, "via": None} for r in network.routes),
        )

    # -- timers -------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._now_s = now
        for session, action in self.table.poll(now):
            client = self.clients.get(session.remote_static)
            if action & SessionAction.EXPIRED:
                gone = self.clients.pop(session.remote_static, None)
                if gone is not None and gone.node_id is not None and self.by_node.get(gone.node_id) is gone:
                    del self.by_node[gone.node_id]
            elif client is not None and action & SessionAction.SEND_KEEPALIVE:
                self._send(client, Keepalive.build({}))
        for remote_static in list(self._unidentified):
            client = self.clients.get(remote_static)
            if client is None or client.node_id is not None:
                self._unidentified.discard(remote_static)
            elif now - client.first_seen_s > UNIDENTIFIED_CLIENT_S:
                del self.clients[remote_static]
                self._unidentified.discard(remote_static)
                self.table.remove(remote_static)
        if now >= self._next_seen_flush_s:
            self._flush_seen()
            self._next_seen_flush_s = now + SEEN_FLUSH_INTERVAL_S

    def _flush_seen(self) -> None:
        if not self._seen_dirty:
            return
        wall = self.wall_clock_s()
        by_node = {c.node_id: c for c in self.clients.values() if c.node_id is not None}
        rows = []
        for network_id, node_id in self._seen_dirty:
            client = by_node.get(node_id)
            if client is not None:
                rows.append((network_id, node_id, wall - (self._now_s - client.last_seen_s)))
        self._seen_dirty.clear()
        self.storage.record_seen(rows)

    # -- admin operations (called from the API, on the reactor thread) --------------------------------------
    def online_since(self, node_id: int) -> float | None:
        for client in self.clients.values():
            if client.node_id == node_id:
                return self.wall_clock_s() - (self._now_s - client.last_seen_s)
        return None

    def create_network(self, doc: dict[str, Any]) -> dict[str, Any]:
        fields = validate_network_fields(
            name=doc.get("name") or "", pools=doc.get("pools", []), routes=doc.get("routes", []),
            mtu=doc.get("mtu"), multicast_limit=doc.get("multicast_limit"),
        )
        for flag in ("broadcast", "private"):
            if flag in doc:
                fields[flag] = _bool(doc[flag], flag)
        return self.storage.create_network(self.node_id, fields).to_json()

    def list_networks(self) -> list[dict[str, Any]]:
        out = []
        for network in self.storage.list_networks():
            doc = network.to_json()
            members = self.storage.list_members(network.network_id)
            doc["members"] = len(members)
            doc["authorized"] = sum(1 for m in members if m.authorized)
            out.append(doc)
        return out

    def get_network(self, network_id: int) -> dict[str, Any]:
        return self.storage.get_network(network_id).to_json()

    def update_network(self, network_id: int, doc: dict[str, Any]) -> dict[str, Any]:
        known = {"name", "pools", "routes", "mtu", "multicast_limit", "broadcast", "private"}
        unknown = set(doc) - known
        if unknown:
            raise ValidationError(f"unknown network field(s): {', '.join(sorted(unknown))}")
        fields = validate_network_fields(
            name=doc.get("name"), pools=doc.get("pools"), routes=doc.get("routes"),
            mtu=doc.get("mtu"), multicast_limit=doc.get("multicast_limit"),
        )
        if "multicast_limit" in doc and doc["multicast_limit"] is None:
            fields["multicast_limit"] = None
        for flag in ("broadcast", "private"):
            if flag in doc:
                fields[flag] = _bool(doc[flag], flag)
        network = self.storage.update_network(network_id, fields)
        self.push(network_id)
        return network.to_json()

    def delete_network(self, network_id: int) -> None:
        self.storage.delete_network(network_id)
        self.push(network_id)

    def list_members(self, network_id: int) -> list[dict[str, Any]]:
        self.storage.get_network(network_id)
        return [self._member_json(m) for m in self.storage.list_members(network_id)]

    def get_member(self, network_id: int, node_id: int) -> dict[str, Any]:
        return self._member_json(self.storage.get_member(network_id, node_id))

    def _member_json(self, member: Member) -> dict[str, Any]:
        doc = member.to_json()
        seen = self.online_since(member.node_id)
        if seen is not None:
            doc["last_seen"] = seen
            doc["online"] = True
        else:
            doc["online"] = False
        return doc

    def update_member(self, network_id: int, node_id: int, doc: dict[str, Any]) -> dict[str, Any]:
        """Authorize/deauthorize, set IPs, bridge flag or name; creates a pre-authorized member if unknown."""
        known = {"authorized", "ips", "bridge", "name"}
        unknown = set(doc) - known
        if unknown:
            raise ValidationError(f"unknown member field(s): {', '.join(sorted(unknown))}")
        network = self.storage.get_network(network_id)
        member = self.storage.find_member(network_id, node_id) or Member(network_id, node_id, created_s=self.wall_clock_s())
        changes: dict[str, Any] = {}
        if "authorized" in doc:
            changes["authorized"] = _bool(doc["authorized"], "authorized")
        if "bridge" in doc:
            changes["bridge"] = _bool(doc["bridge"], "bridge")
        if "name" in doc:
            if not isinstance(doc["name"], str) or len(doc["name"]) > 64:
                raise ValidationError("member name must be a string of at most 64 characters")
            changes["name"] = doc["name"]
        if "ips" in doc:
            if not isinstance(doc["ips"], list):
                raise ValidationError("ips must be a list of addresses")
            changes["ips"] = tuple(member_interface(network, str(ip)) for ip in doc["ips"])
        member = replace(member, **changes)
        # Bridges carry a LAN; their addresses live on the Linux bridge, not the TAP.
        if member.authorized and not member.ips and "ips" not in doc and not member.bridge:
            member = self._with_pool_address(network, member)
        others = [m for m in self.storage.list_members(network_id) if m.node_id != node_id]
        check_no_duplicate_ips(member.ips, others)
        # A member whose node never asked is in nobody's config yet: no new revision to push.
        visible = member.identity is not None
        self.storage.save_member(member, bump_revision=visible)
        if visible:
            self.push(network_id)
        return self._member_json(member)

    def _with_pool_address(self, network: Network, member: Member) -> Member:
        taken = {ip for m in self.storage.list_members(network.network_id) for ip in m.ips}
        address = assign_from_pools(network, taken)
        if address is None:
            if network.pools:
                raise ValidationError(f"the pools of network {network.name!r} are full")
            return member
        return replace(member, ips=(address,))

    def delete_member(self, network_id: int, node_id: int) -> None:
        self.storage.delete_member(network_id, node_id)
        self.push(network_id)

    def status(self) -> dict[str, Any]:
        return {
            "id": format_node_id(self.node_id),
            "online_members": sum(1 for c in self.clients.values() if c.node_id is not None),
            "sessions": len(self.table.sessions),
            "drops": dict(self.drops),
            "sent": dict(self.sent),
            "relayed_packets": self.relayed_packets,
            "relayed_bytes": self.relayed_bytes,
        }


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false")
    return value
