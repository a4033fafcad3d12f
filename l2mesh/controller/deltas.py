"""What each network's members hold, revision by revision, so a change goes out as one signed delta.

Per network the controller keeps, in memory only, a snapshot: the content
of the config at the current revision (members as the member will parse
them, in the order it will hold them), fixed when the revision is first
issued, so every full config at that revision carries the same content.
A new revision is diffed against the previous snapshot: the difference is
kept (the last MAX_DELTAS of them), and a member that holds any of those
revisions gets all the differences since merged into one delta, signed
once and sent as the same bytes to every member that holds that revision.
Anything older or unknown (after a restart: nothing is kept) gets a full
config. Which revision each member holds is what we last sent it or it
last told us (have_revision); the delta's digest catches a wrong guess,
and a member asking again from the base of the delta it was sent (lost,
or a member too old to know deltas) gets a full config.

Members keep their configs fresh with deltas too: once a config has gone
STAMP_REFRESH_S without a change, an empty delta (same revision, new
timestamp and expiry) is signed once and pushed to every member.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from l2mesh.controller.model import Network
from l2mesh.identity import Identity
from l2mesh.netconf import (
    NETCONF_TTL_S,
    MemberConfig,
    NetworkConfig,
    canonical_json,
    member_json,
    network_fields_json,
    parse_member,
    parse_network_fields,
)
from l2mesh.netconf_delta import ConfigDelta, content_digest, member_hash
from l2mesh.wire.messages import NETCONF_CHUNK_BYTES, NetconfDelta

MAX_DELTAS = 64  # revisions back a member can be and still get a delta
MAX_DELTA_ENTRIES = 64  # members added, changed or removed in one delta; more: full configs (a bulk change)
STAMP_REFRESH_S = 24 * 3600.0  # well inside NETCONF_TTL_S: a few lost refreshes do not expire anyone
_SUM_MODULUS = 1 << 256


@dataclass(frozen=True)
class Snapshot:
    """A network's config content at one revision: what every member holding it holds, but for its own times."""

    config: NetworkConfig  # issued_to 0, no times
    built_from: dict[int, MemberConfig]  # entries as the directory gave them: unchanged ones are not parsed again
    by_id: dict[int, MemberConfig]
    hashes: dict[int, int]
    digest: bytes
    fields_json: bytes  # canonical network settings, to tell whether they changed

    @property
    def revision(self) -> int:
        return self.config.revision


@dataclass(frozen=True)
class Change:
    """One step between two snapshots, unsigned (merged into whatever a member needs)."""

    from_revision: int
    to_revision: int
    members: dict[int, MemberConfig]  # added or changed, in the order added ones are appended
    removed: frozenset[int]
    network: dict[str, Any] | None


@dataclass
class NetworkHistory:
    snapshot: Snapshot
    stamp_s: float  # wall time members last got new times from everyone's delta
    changes: dict[int, Change] = field(default_factory=dict)  # by from_revision, oldest first
    messages: dict[int, bytes | None] = field(default_factory=dict)  # base revision -> signed delta (None: too large)
    held: dict[int, int] = field(default_factory=dict)  # node id -> revision it holds, as far as we know
    # node id -> base of the last delta sent to it. Asked again from that base, it
    # could not use the delta (lost, or a member too old to know deltas): a full config then.
    delta_sent_from: dict[int, int] = field(default_factory=dict)


class DeltaHistory:
    def __init__(
        self,
        identity: Identity,
        wall_clock_s: Callable[[], float],
        sent: Counter[str],
        controller_endpoints: Callable[[], tuple[tuple[str, int], ...]] = tuple,
    ) -> None:
        self.identity = identity
        self.controller_endpoints = controller_endpoints
        self.wall_clock_s = wall_clock_s
        self.sent = sent
        self.networks: dict[int, NetworkHistory] = {}

    def current(self, network: Network, build: Callable[[], NetworkConfig]) -> Snapshot:
        """The snapshot at network's revision, made from build() (a fresh full config) when the revision is new."""
        history = self.networks.get(network.network_id)
        if history is not None and history.snapshot.revision == network.revision:
            return history.snapshot
        previous = history.snapshot if history is not None and history.snapshot.revision < network.revision else None
        snapshot = _snapshot(build(), previous)
        if history is None or previous is None:
            self.networks[network.network_id] = NetworkHistory(snapshot, self.wall_clock_s())
            return snapshot
        change = _change(previous, snapshot)
        if len(change.members) + len(change.removed) > MAX_DELTA_ENTRIES:
            history.changes.clear()  # a bulk change: everyone gets a full config
        else:
            history.changes[change.from_revision] = change
            while len(history.changes) > MAX_DELTAS:
                del history.changes[next(iter(history.changes))]
        history.snapshot = snapshot
        history.stamp_s = self.wall_clock_s()  # its members get new times with the delta
        history.messages.clear()
        history.held = {n: r for n, r in history.held.items() if n in snapshot.by_id}
        history.delta_sent_from = {n: r for n, r in history.delta_sent_from.items() if n in snapshot.by_id}
        return snapshot

    def forget(self, network_id: int, node_id: int | None = None) -> None:
        """A network gone (node_id None), or a member no longer in it."""
        if node_id is None:
            self.networks.pop(network_id, None)
            return
        history = self.networks.get(network_id)
        if history is not None:
            history.held.pop(node_id, None)
            history.delta_sent_from.pop(node_id, None)

    def holds(self, network_id: int, node_id: int) -> int | None:
        history = self.networks.get(network_id)
        return history.held.get(node_id) if history is not None else None

    def note_held(self, network_id: int, node_id: int, revision: int) -> None:
        history = self.networks.get(network_id)
        if history is not None:
            history.held[node_id] = revision

    def delta_for(self, network_id: int, node_id: int, base_revision: int, asked: bool) -> bytes | None:
        """The delta a member holding base_revision is sent, or None: it gets a full config.

        asked: it asked from that base (a request), rather than being pushed to.
        """
        history = self.networks.get(network_id)
        if history is None:
            return None
        if asked and history.delta_sent_from.get(node_id) == base_revision:
            history.delta_sent_from.pop(node_id)
            return None
        message = self.delta_from(network_id, base_revision)
        if message is None:
            history.delta_sent_from.pop(node_id, None)
        else:
            history.delta_sent_from[node_id] = base_revision
        return message

    def delta_from(self, network_id: int, base_revision: int) -> bytes | None:
        """The NetconfDelta message taking base_revision to the current one, if we still know the way."""
        history = self.networks.get(network_id)
        if history is None or base_revision >= history.snapshot.revision:
            return None
        if base_revision in history.messages:
            return history.messages[base_revision]
        chain = []
        revision = base_revision
        while revision != history.snapshot.revision:
            change = history.changes.get(revision)
            if change is None:
                return None
            chain.append(change)
            revision = change.to_revision
        message = self._sign(history, _merged(chain))
        history.messages[base_revision] = message
        return message

    def restamp(self) -> None:
        """The controller's instances changed (issue 12): every network's members get an empty delta naming them."""
        for history in self.networks.values():
            history.stamp_s = float("-inf")

    def stamps_due(self) -> list[tuple[int, bytes]]:
        """(network id, delta) for networks whose members' configs are due new times: same revision, one signature."""
        now = self.wall_clock_s()
        due = []
        for network_id, history in self.networks.items():
            if now - history.stamp_s < STAMP_REFRESH_S:
                continue
            revision = history.snapshot.revision
            history.stamp_s = now
            history.messages.clear()  # those carry older times
            message = self._sign(history, Change(revision, revision, {}, frozenset(), None))
            if message is not None:
                due.append((network_id, message))
        return due

    def _sign(self, history: NetworkHistory, change: Change) -> bytes | None:
        now = self.wall_clock_s()
        snapshot = history.snapshot
        delta = ConfigDelta(
            network_id=snapshot.config.network_id,
            from_revision=change.from_revision,
            to_revision=change.to_revision,
            timestamp_s=now,
            expires_s=now + NETCONF_TTL_S,
            digest=snapshot.digest,
            members=tuple(change.members.values()),
            removed=tuple(sorted(change.removed)),
            network=change.network,
            controllers=self.controller_endpoints(),
        )
        signed = delta.sign(self.identity)
        if len(signed) > NETCONF_CHUNK_BYTES:
            self.sent["netconf_delta_too_large"] += 1
            return None
        self.sent["netconf_delta_signed"] += 1
        return NetconfDelta.build(
            {
                "network_id": delta.network_id,
                "from_revision": delta.from_revision,
                "to_revision": delta.to_revision,
                "signed_delta": signed,
            }
        )


def _snapshot(fresh: NetworkConfig, previous: Snapshot | None) -> Snapshot:
    """The content of a fresh full config, each part as a member parses it back.

    Members kept from previous keep their place; new ones come after, so
    members that follow deltas (which append) hold them in the same order.
    """
    network_id = fresh.network_id
    built_from = {m.node_id: m for m in fresh.members}
    by_id: dict[int, MemberConfig] = {}
    hashes: dict[int, int] = {}
    if previous is not None:
        for node_id in previous.by_id:
            if node_id in built_from:
                by_id[node_id] = previous.by_id[node_id]  # its place; the entry is settled below
    for node_id, entry in built_from.items():
        if previous is not None and previous.built_from.get(node_id) == entry:
            by_id[node_id] = previous.by_id[node_id]
            hashes[node_id] = previous.hashes[node_id]
        else:
            by_id[node_id] = parse_member(member_json(entry, network_id), network_id)
            hashes[node_id] = member_hash(by_id[node_id], network_id)
    fields = parse_network_fields(network_fields_json(fresh))  # as members will parse them
    config = NetworkConfig(network_id, fresh.revision, 0, members=tuple(by_id.values()), **fields)
    total = sum(hashes.values()) % _SUM_MODULUS
    return Snapshot(config, built_from, by_id, hashes, content_digest(config, total), canonical_json(network_fields_json(config)))


def _change(previous: Snapshot, snapshot: Snapshot) -> Change:
    members = {n: m for n, m in snapshot.by_id.items() if previous.by_id.get(n) != m}
    removed = frozenset(previous.by_id.keys() - snapshot.by_id.keys())
    network = network_fields_json(snapshot.config) if snapshot.fields_json != previous.fields_json else None
    return Change(previous.revision, snapshot.revision, members, removed, network)


def _merged(chain: list[Change]) -> Change:
    """One change with the effect of the chain applied in order (removals apply before members)."""
    members: dict[int, MemberConfig] = {}
    removed: set[int] = set()
    network = None
    for change in chain:
        for node_id in change.removed:
            members.pop(node_id, None)
            removed.add(node_id)
        members.update(change.members)
        if change.network is not None:
            network = change.network
    return Change(chain[0].from_revision, chain[-1].to_revision, members, frozenset(removed), network)
