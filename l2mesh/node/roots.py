"""A node's roots, sans-IO: registering with them, asking them where nodes are, choosing one to relay through.

A root is a rendezvous and relay server that knows where nodes are, not what
they say (l2mesh/root/). A node is given its roots once (`--root
ID@HOST:PORT`, or HOST:PORT alone, whose keys are fetched and pinned on
first use) and registers with all of them over a Noise session, proving its
keys; re-registering every REGISTER_INTERVAL_S also holds its NAT mapping
open. It asks them where a node is (its controller when it joins by network
id alone, a peer it cannot reach directly) and keeps, per node, which roots
know it: a peer with no direct path is relayed through the live root with
the lowest latency that knows it (DERP-style region choice). Roots are
probed every ROOT_PROBE_S, so one that dies is noticed, and left, within
ROOT_DEAD_AFTER_S.

Like membership and paths, Roots answers with decisions (decisions.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import format_node_id
from l2mesh.node.decisions import Decision, NodeLocated, SendDatagram, SendMessage, TrustRoot
from l2mesh.node.peer_table import PeerTable
from l2mesh.node.peers import Peer
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import (
    MAX_REGISTERED_ENDPOINTS,
    ROOT_REGISTER_CONTEXT,
    RootLookup,
    RootLookupReply,
    RootRegister,
    RootRegistered,
)
from l2mesh.wire.packets import ANY_NODE_ID, IdentityRequest, IdentityResponse

REGISTER_INTERVAL_S = 25.0
REGISTER_RETRY_S = 2.0  # until the first ROOT_REGISTERED
PIN_RETRY_S = 1.0
ROOT_PROBE_S = 1.0
ROOT_DEAD_AFTER_S = 3.5
LOOKUP_INTERVAL_S = 2.0  # per node asked about: at most this often
KNOWN_AT_TTL_S = 120.0  # what a root said about a node is trusted this long (nodes re-register every 25 s)
MAX_KNOWN_NODES = 4096


@dataclass
class RootLink:
    """One root we were given: where it is, its keys once known, how it answers."""

    endpoint: Endpoint
    expected_id: int | None = None  # given as ID@HOST:PORT: the keys it sends must hash to ID
    node_id: int | None = None  # None while its keys are being fetched
    identity: PublicIdentity | None = None
    next_pin_request_s: float = 0.0
    next_register_s: float = 0.0
    registered_s: float | None = None  # last ROOT_REGISTERED
    observed: Endpoint | None = None  # our address as the root sees it
    tcp: bool = False  # the edge carries our datagrams to it over TCP (no UDP out)


@dataclass
class KnownAt:
    """What one root said about a node: its registered endpoints, and when."""

    endpoints: list[Endpoint]
    heard_s: float


@dataclass
class Located:
    """What roots said about one node."""

    identity: PublicIdentity | None = None
    at: dict[int, KnownAt] = field(default_factory=dict)  # root id -> what it said
    next_lookup_s: float = 0.0


class Roots:
    def __init__(self, identity: Identity, peers: PeerTable, drops: Counter[str]) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.peers = peers
        self.drops = drops
        self.links: list[RootLink] = []
        self.located: dict[int, Located] = {}
        self._now_s = 0.0

    # -- the roots we were given ----------------------------------------------------------------------
    def add(self, endpoint: Endpoint, expected_id: int | None, identity: PublicIdentity | None, now: float) -> list[Decision]:
        """A root to use: ID@HOST:PORT (expected_id) or HOST:PORT; with its keys if pinned before, else fetched."""
        link = self._link_at(endpoint)
        if link is None:
            link = RootLink(endpoint, expected_id)
            self.links.append(link)
        if identity is not None and expected_id is not None and identity.node_id != expected_id:
            identity = None  # pinned for another id: the operator named a new root at this address
        if identity is None:
            return self._pin_request(link, now)
        if link.identity is not None and link.identity != identity:
            self.drops["root_keys_changed"] += 1
            return []
        return [self._trust(link, identity, learned=False)]

    def _link_at(self, endpoint: Endpoint) -> RootLink | None:
        return next((link for link in self.links if link.endpoint == endpoint), None)

    def link_of(self, node_id: int) -> RootLink | None:
        return next((link for link in self.links if link.node_id == node_id), None)

    def _trust(self, link: RootLink, identity: PublicIdentity, learned: bool) -> TrustRoot:
        link.identity = identity
        link.node_id = identity.node_id
        link.next_register_s = 0.0
        return TrustRoot(identity.node_id, identity, link.endpoint, learned)

    def _pin_request(self, link: RootLink, now: float) -> list[Decision]:
        if link.identity is not None or now < link.next_pin_request_s:
            return []
        link.next_pin_request_s = now + PIN_RETRY_S
        asked = link.expected_id if link.expected_id is not None else ANY_NODE_ID
        return [SendDatagram(IdentityRequest.build({"node_id": asked}), link.endpoint)]

    def identity_response(self, data: memoryview, source: Endpoint) -> list[Decision] | None:
        """Keys from an address we asked to pin (None: not a root we are pinning; someone else's business)."""
        link = self._link_at(source)
        if link is None or link.identity is not None:
            return None
        response = parse_or_none(IdentityResponse, data)
        if response is None:
            self.drops["identity_response_malformed"] += 1
            return []
        identity = PublicIdentity(response.x25519, response.ed25519)
        if link.expected_id is not None and identity.node_id != link.expected_id:
            self.drops["root_keys_mismatch"] += 1
            return []
        return [self._trust(link, identity, learned=True)]

    def is_root_endpoint(self, endpoint: Endpoint) -> bool:
        return any(link.endpoint == endpoint and link.identity is not None for link in self.links)

    # -- registration ----------------------------------------------------------------------------------
    def _register(self, link: RootLink, local_endpoints: list[Endpoint]) -> SendMessage:
        assert link.node_id is not None
        proof = self.identity.sign(ROOT_REGISTER_CONTEXT + self.identity.x25519_public + link.node_id.to_bytes(5, "big"))
        message = RootRegister.build(
            {
                "ed25519": self.identity.ed25519_public,
                "proof": proof,
                "local_endpoints": local_endpoints[:MAX_REGISTERED_ENDPOINTS],
            }
        )
        return SendMessage(link.node_id, message)

    def session_renewed(self, root_id: int) -> None:
        """A new session with a root: it may have restarted and forgotten us; register again now."""
        link = self.link_of(root_id)
        if link is not None:
            link.next_register_s = 0.0

    def registered(self, root_id: int, message: bytes) -> None:
        reply = parse_or_none(RootRegistered, message)
        link = self.link_of(root_id)
        if reply is None or link is None:
            self.drops["root_registered_malformed"] += 1
            return
        link.registered_s = self._now_s
        link.observed = tuple(reply.observed)  # type: ignore[assignment]
        # Renew well within the root's time to live, however short it chose.
        link.next_register_s = self._now_s + min(REGISTER_INTERVAL_S, max(1.0, reply.ttl_s / 3))

    # -- where nodes are -----------------------------------------------------------------------------------
    def lookup(self, node_id: int, now: float) -> list[SendMessage]:
        """Ask every live root where node_id is (at most every LOOKUP_INTERVAL_S per node)."""
        located = self.located.get(node_id)
        if located is None:
            if len(self.located) >= MAX_KNOWN_NODES:
                self._forget_oldest()
            located = self.located[node_id] = Located()
        if now < located.next_lookup_s:
            return []
        located.next_lookup_s = now + LOOKUP_INTERVAL_S
        message = RootLookup.build({"node_id": node_id})
        return [
            SendMessage(link.node_id, message)
            for link in self.links
            if link.node_id is not None and (self.up(link, now) or link.registered_s is None)
        ]

    def _forget_oldest(self) -> None:
        def newest(item: tuple[int, Located]) -> float:
            return max((k.heard_s for k in item[1].at.values()), default=-1e18)

        oldest = min(self.located.items(), key=newest)[0]
        del self.located[oldest]

    def lookup_reply(self, root_id: int, message: bytes, now: float) -> list[Decision]:
        reply = parse_or_none(RootLookupReply, message)
        if reply is None:
            self.drops["root_lookup_reply_malformed"] += 1
            return []
        located = self.located.get(reply.node_id)
        if located is None:
            self.drops["root_lookup_reply_unasked"] += 1
            return []
        if not reply.registered:
            located.at.pop(root_id, None)
            return []
        identity = PublicIdentity(reply.x25519, reply.ed25519)
        # A root cannot lie about keys: they must hash to the id we asked about.
        if identity.node_id != reply.node_id:
            self.drops["root_lookup_keys_mismatch"] += 1
            return []
        if located.identity is not None and located.identity != identity:
            self.drops["root_lookup_keys_changed"] += 1
            return []
        located.identity = identity
        endpoints: list[Endpoint] = [tuple(e) for e in reply.endpoints]  # type: ignore[misc]
        located.at[root_id] = KnownAt(endpoints, now)
        return [NodeLocated(reply.node_id, identity, endpoints)]

    def knows(self, node_id: int, root_id: int, now: float) -> bool:
        located = self.located.get(node_id)
        known = located.at.get(root_id) if located is not None else None
        return known is not None and now - known.heard_s <= KNOWN_AT_TTL_S

    # -- relaying ------------------------------------------------------------------------------------------
    def up(self, link: RootLink, now: float) -> bool:
        """Answering: a session that carried something from it within ROOT_DEAD_AFTER_S."""
        peer = self.peers.by_id.get(link.node_id) if link.node_id is not None else None
        return (
            peer is not None
            and peer.session is not None
            and peer.session.established
            and peer.last_rx_s is not None
            and now - peer.last_rx_s <= ROOT_DEAD_AFTER_S
        )

    def relay_for(self, node_id: int, now: float) -> RootLink | None:
        """The live root with the lowest latency that knows node_id (both of us registered there)."""
        located = self.located.get(node_id)
        if located is None or not located.at:
            return None
        best: RootLink | None = None
        best_ms = float("inf")
        for link in self.links:
            if link.node_id is None or link.node_id not in located.at or not self.up(link, now):
                continue
            if now - located.at[link.node_id].heard_s > KNOWN_AT_TTL_S or link.registered_s is None:
                continue
            peer = self.peers.by_id[link.node_id]
            latency_ms = peer.latency_ms if peer.latency_ms is not None else 1e6
            if latency_ms < best_ms:
                best, best_ms = link, latency_ms
        return best

    def any_up(self, now: float) -> bool:
        return any(self.up(link, now) for link in self.links)

    # -- timers -------------------------------------------------------------------------------------------
    def tick(self, now: float, local_endpoints: list[Endpoint]) -> list[Decision]:
        self._now_s = now
        decisions: list[Decision] = []
        for link in self.links:
            if link.identity is None:
                decisions.extend(self._pin_request(link, now))
            elif now >= link.next_register_s:
                link.next_register_s = now + (REGISTER_INTERVAL_S if link.registered_s is not None else REGISTER_RETRY_S)
                decisions.append(self._register(link, local_endpoints))
        return decisions

    # -- introspection -------------------------------------------------------------------------------------
    def view(self, now: float) -> list[dict[str, Any]]:
        """`l2mesh roots --json`."""
        rows = []
        for link in self.links:
            peer: Peer | None = self.peers.by_id.get(link.node_id) if link.node_id is not None else None
            if link.identity is None:
                status = "pinning"
            elif self.up(link, now) and link.registered_s is not None:
                status = "up"
            elif peer is not None and peer.last_rx_s is not None:
                status = "down"
            else:
                status = "connecting"
            latency = peer.latency_ms if peer is not None and status == "up" else None
            rows.append(
                {
                    "id": format_node_id(link.node_id) if link.node_id is not None else None,
                    "endpoint": f"{link.endpoint[0]}:{link.endpoint[1]}",
                    "latency_ms": round(latency, 3) if latency is not None else None,
                    "status": status,
                    "tcp": link.tcp,
                    "observed": f"{link.observed[0]}:{link.observed[1]}" if link.observed is not None else None,
                }
            )
        return rows
