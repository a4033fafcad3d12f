"""Netconfs, sans-IO: a member's signed network config built from the directory, cut into chunks, and status answers.

A config lists the network's authorized members that hold keys, each with
the endpoints peers may try: where its session with us is now and the
local addresses it told us, else the last endpoint stored. It is JSON
signed with the controller's Ed25519 key and sent in NETCONF_CHUNK_BYTES
chunks, so its size is not bound by a datagram's. A member holding a recent
revision gets a delta instead (deltas.py): one signed document per change,
the same bytes for every member. Everything here returns the messages to
send; the core seals and sends them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from l2mesh.controller.clients import MAX_LOCAL_ENDPOINTS, Client
from l2mesh.controller.deltas import DeltaHistory
from l2mesh.controller.model import Member, Network
from l2mesh.identity import Identity
from l2mesh.netconf import NETCONF_TTL_S, MemberConfig, NetworkConfig, parse_endpoint
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import MAX_NETCONF_CHUNKS, NETCONF_CHUNK_BYTES, NetconfResponse, NetconfStatus


def status_message(network_id: int, status: NetconfStatus, revision: int) -> bytes:
    """A config-less answer: NOT_FOUND, ACCESS_DENIED, or OK meaning "yours is current" (cheap refreshes)."""
    return NetconfResponse.build(
        {"network_id": network_id, "status": status.name, "revision": revision, "chunk_index": 0, "chunk_count": 1, "signed_config": b""}
    )


class Issuer:
    def __init__(
        self,
        identity: Identity,
        wall_clock_s: Callable[[], float],
        drops: Counter[str],
        sent: Counter[str],
        controller_endpoints: Callable[[], tuple[Endpoint, ...]] = tuple,
    ) -> None:
        self.identity = identity
        self.controller_endpoints = controller_endpoints  # every live instance's (issue 12), for the configs
        self.wall_clock_s = wall_clock_s
        self.drops = drops
        self.sent = sent
        self.history = DeltaHistory(identity, wall_clock_s, sent, controller_endpoints)

    def status(self, network_id: int, status: NetconfStatus, revision: int) -> list[bytes]:
        self.sent[status.name.lower()] += 1
        return [status_message(network_id, status, revision)]

    def answer(
        self,
        network: Network,
        members: list[Member],
        me: Member | None,
        client: Client,
        online: Mapping[int, Client],
        have_revision: int | None = None,
    ) -> list[bytes]:
        """What a client gets for a network if it is an authorized member with these keys.

        have_revision: what it says it holds (a request), else (a push) what
        we last sent it. Current: OK alone; a recent revision: the delta
        since; anything else: the whole config in chunks.
        """
        node_id = client.node_id
        assert node_id is not None
        network_id = network.network_id
        if me is None or not me.authorized or me.identity != client.identity:
            self.history.forget(network_id, node_id)
            return self.status(network_id, NetconfStatus.ACCESS_DENIED, network.revision)
        snapshot = self.history.current(network, lambda: self.build_config(network, members, 0, online))
        base = have_revision if have_revision is not None else self.history.holds(network_id, node_id)
        self.history.note_held(network_id, node_id, network.revision)
        if base == network.revision:
            # OK with no config: the member's copy is current (cheap periodic refreshes).
            return self.status(network_id, NetconfStatus.OK, network.revision)
        if base is not None:
            delta = self.history.delta_for(network_id, node_id, base, asked=have_revision is not None)
            if delta is not None:
                self.sent["netconf_delta"] += 1
                return [delta]
        now = self.wall_clock_s()
        config = snapshot.config.with_changes(
            issued_to=node_id, timestamp_s=now, expires_s=now + NETCONF_TTL_S, controllers=self.controller_endpoints()
        )
        return self._chunks(network, config.sign(self.identity))

    def _chunks(self, network: Network, signed: bytes) -> list[bytes]:
        chunks = [signed[i : i + NETCONF_CHUNK_BYTES] for i in range(0, len(signed), NETCONF_CHUNK_BYTES)]
        if len(chunks) > MAX_NETCONF_CHUNKS:
            self.drops["netconf_too_large"] += 1
            return []
        self.sent["netconf"] += 1
        return [
            NetconfResponse.build(
                {
                    "network_id": network.network_id,
                    "status": "OK",
                    "revision": network.revision,
                    "chunk_index": index,
                    "chunk_count": len(chunks),
                    "signed_config": chunk,
                }
            )
            for index, chunk in enumerate(chunks)
        ]

    def build_config(self, network: Network, members: list[Member], issued_to: int, online: Mapping[int, Client]) -> NetworkConfig:
        """A fresh full config, built from scratch (what a member following deltas must end up holding)."""
        now = self.wall_clock_s()
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
            members=tuple(self.member_entries(members, online)),
            routes=network.routes,
            rules=network.rules,
            dns_domain=network.effective_dns_domain,
            controllers=self.controller_endpoints(),
        )

    @staticmethod
    def member_entries(members: list[Member], online: Mapping[int, Client]) -> list[MemberConfig]:
        """The config's member list: authorized members with keys; online: clients by node id, whose current endpoints beat the stored ones."""
        entries = []
        for member in members:
            if not member.authorized or member.identity is None:
                continue
            client = online.get(member.node_id)
            if client is not None:
                endpoints: tuple[Endpoint, ...] = client.endpoints
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
                    tags=frozenset(member.tags),
                )
            )
        return entries
