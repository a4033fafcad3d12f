"""What changed in a network's config from one revision to the next (a netconf delta), signed, and applying it.

A member holding revision N gets the members added or changed, the ids
removed and, if any changed, all network-wide settings, instead of the
whole member list. The delta names no recipient: the controller signs one
per change and sends the same bytes to every member. So the per-member
parts of a full config stay as the member's last full config set them
(issued_to), or come for everyone (timestamp, expires: a delta from N to N
only renews them).

A member applies a delta only to the revision it names as its base, and
then checks the result against the digest the delta carries: the digest
of the network settings and the member list, computed the same way on
both sides (content_digest), so a member whose copy diverged (a lost
delta, a controller restart) notices at once and asks for a full config.
The member-list part of the digest is a sum of one hash per member, so a
delta updates it in time proportional to what changed, not to the
network's size.

Signed as JSON (like full configs) under its own context, so a signature
over a delta is never taken for one over a full config, or back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import format_network_id, format_node_id, parse_network_id, parse_node_id
from l2mesh.netconf import (
    SIGNATURE_BYTES,
    MemberConfig,
    NetconfError,
    NetworkConfig,
    canonical_json,
    controllers_json,
    member_json,
    network_fields_json,
    parse_controllers,
    parse_member,
    parse_network_fields,
    parse_revision,
)
from l2mesh.errors import L2meshError

DELTA_SIGNATURE_CONTEXT = b"l2mesh netconf delta v1\0"
DIGEST_BYTES = 32
_SUM_MODULUS = 1 << (8 * DIGEST_BYTES)
_node_id_of = attrgetter("node_id")


def member_hash(member: MemberConfig, network_id: int) -> int:
    """One member's share of the member-list digest."""
    digest = hashlib.blake2b(canonical_json(member_json(member, network_id)), digest_size=DIGEST_BYTES).digest()
    return int.from_bytes(digest, "big")


def members_sum(members: tuple[MemberConfig, ...] | list[MemberConfig], network_id: int) -> int:
    """The member-list part of the digest: order-free, so one member in or out changes it in O(1)."""
    return sum(member_hash(m, network_id) for m in members) % _SUM_MODULUS


def content_digest(config: NetworkConfig, member_list_sum: int) -> bytes:
    """Digest of what a member acts on: network settings and member list (not revision, recipient or times)."""
    body = canonical_json(network_fields_json(config)) + member_list_sum.to_bytes(DIGEST_BYTES, "big")
    return hashlib.sha256(body).digest()


@dataclass(frozen=True)
class ConfigDelta:
    network_id: int
    from_revision: int
    to_revision: int  # == from_revision: only new times (a refresh of an unchanged config)
    timestamp_s: float
    expires_s: float
    digest: bytes  # content_digest of the config at to_revision
    members: tuple[MemberConfig, ...] = ()  # added (appended, in this order) or changed (replaced in place)
    removed: tuple[int, ...] = ()  # node ids, taken out before members are applied
    network: dict[str, Any] | None = None  # all network-wide settings (network_fields_json), if any changed
    # The controller's live instances when it was signed (issue 12), as a full config's "controllers":
    # how members hear of an instance that started or stopped without any change to the network.
    controllers: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": format_network_id(self.network_id),
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "timestamp": self.timestamp_s,
            "expires": self.expires_s,
            "digest": self.digest.hex(),
            "members": [member_json(m, self.network_id) for m in self.members],
            "removed": [format_node_id(n) for n in self.removed],
        }
        if self.network is not None:
            doc["network"] = self.network
        if self.controllers:
            doc["controllers"] = controllers_json(self.controllers)
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> "ConfigDelta":
        try:
            return _parse_delta(doc)
        except NetconfError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError, L2meshError) as exc:
            raise NetconfError(f"malformed netconf delta: {exc}") from None

    def sign(self, controller: Identity) -> bytes:
        body = canonical_json(self.to_json())
        return controller.sign(DELTA_SIGNATURE_CONTEXT + body) + body


def verify_signed_delta(signed: bytes, controller: PublicIdentity, network_id: int) -> ConfigDelta:
    """The delta inside signed, if the controller signed it as a delta, for this network."""
    if len(signed) <= SIGNATURE_BYTES:
        raise NetconfError("netconf delta is not signed")
    signature, body = signed[:SIGNATURE_BYTES], signed[SIGNATURE_BYTES:]
    if not controller.verify(DELTA_SIGNATURE_CONTEXT + body, signature):
        raise NetconfError("netconf delta signature does not verify against the controller's key")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise NetconfError("netconf delta is not valid JSON") from None
    delta = ConfigDelta.from_json(doc)
    if delta.network_id != network_id:
        raise NetconfError("netconf delta is for another network")
    return delta


@dataclass(frozen=True)
class DeltaBase:
    """A config a member holds, with what applying deltas to it needs: its members_sum and member ids in order."""

    config: NetworkConfig
    members_sum: int
    ids: tuple[int, ...]

    @classmethod
    def of(cls, config: NetworkConfig) -> "DeltaBase":
        """For a config that came whole (O(members), once; deltas then keep it up to date)."""
        return cls(config, members_sum(config.members, config.network_id), tuple(map(_node_id_of, config.members)))


def apply_delta(base: DeltaBase, delta: ConfigDelta) -> DeltaBase:
    """What delta makes of the config held: in time for the change's size and C-speed copies of the lists.

    Raises NetconfError when the delta is not for this config's revision or
    the result does not match the delta's digest (our copy diverged).
    """
    config = base.config
    if delta.network_id != config.network_id or delta.from_revision != config.revision:
        raise NetconfError("netconf delta is not based on the revision held")
    network_id = config.network_id
    members = list(config.members)
    ids = list(base.ids)
    total = base.members_sum
    for node_id in set(delta.removed):
        try:
            index = ids.index(node_id)
        except ValueError:
            continue
        total -= member_hash(members[index], network_id)
        del members[index], ids[index]
    for member in delta.members:
        try:
            index = ids.index(member.node_id)
        except ValueError:
            members.append(member)
            ids.append(member.node_id)
        else:
            total -= member_hash(members[index], network_id)
            members[index] = member
        total += member_hash(member, network_id)
    total %= _SUM_MODULUS
    fields = parse_network_fields(delta.network) if delta.network is not None else {}
    result = replace(
        config,
        revision=delta.to_revision,
        timestamp_s=delta.timestamp_s,
        expires_s=delta.expires_s,
        members=tuple(members),
        controllers=delta.controllers or config.controllers,
        **fields,
    )
    if content_digest(result, total) != delta.digest:
        raise NetconfError("config after the netconf delta does not match its digest")
    return DeltaBase(result, total, tuple(ids))


@dataclass(frozen=True)
class MemberChanges:
    """Which members a delta's result differs in from the config it was applied to, handed along with the
    result so the member applies a one-member change in time for one member (node/networks.py, the edge's
    name table), not for the whole member list."""

    base: NetworkConfig  # the config the delta was applied to
    config: NetworkConfig  # the result
    changed: tuple[MemberConfig, ...]  # added or changed, the very objects in config
    removed: frozenset[int]  # node ids config no longer lists (maybe some base did not list either)
    before: tuple[MemberConfig, ...]  # base's members of those changed or removed (that it listed)

    @classmethod
    def of(cls, base: DeltaBase, config: NetworkConfig, delta: ConfigDelta) -> "MemberChanges":
        """What delta changed, applied to base, giving config."""
        listed = {m.node_id for m in delta.members}
        removed = frozenset(n for n in delta.removed if n not in listed)
        ids = base.ids
        # tuple.index: a C-speed scan per member changed, no per-member work in Python.
        before = tuple(base.config.members[ids.index(n)] for n in (*listed, *removed) if n in ids)
        return cls(base.config, config, delta.members, removed, before)

    @property
    def node_ids(self) -> set[int]:
        return {*self.removed, *(m.node_id for m in self.changed)}

    def applies_to(self, held: NetworkConfig) -> bool:
        """Whether held is what these changes were made from: the very base, or a copy differing from it
        only in its times (a refresh since, which nobody is told of; it keeps the very member objects, so
        comparing the member lists costs pointer tests)."""
        untimed = {"timestamp_s": 0.0, "expires_s": 0.0}
        return held is self.base or held.with_changes(**untimed) == self.base.with_changes(**untimed)


def _parse_delta(doc: Any) -> ConfigDelta:
    if not isinstance(doc, dict):
        raise NetconfError("netconf delta must be a JSON object")
    network_id = parse_network_id(doc["id"])
    from_revision = parse_revision(doc["from_revision"], "from_revision")
    to_revision = parse_revision(doc["to_revision"], "to_revision")
    if to_revision < from_revision:
        raise NetconfError("netconf delta goes back in revisions")
    member_docs, removed_docs = doc["members"], doc["removed"]
    if not isinstance(member_docs, list) or not isinstance(removed_docs, list):
        raise NetconfError("netconf delta members and removed must be lists")
    members = tuple(parse_member(m, network_id) for m in member_docs)
    if len({m.node_id for m in members}) != len(members):
        raise NetconfError("netconf delta lists a member twice")
    digest = bytes.fromhex(doc["digest"])
    if len(digest) != DIGEST_BYTES:
        raise NetconfError("netconf delta digest has the wrong length")
    network = doc.get("network")
    if network is not None:
        parse_network_fields(network)  # checked here, so a bad one is refused before it is applied
    return ConfigDelta(
        network_id=network_id,
        from_revision=from_revision,
        to_revision=to_revision,
        timestamp_s=float(doc["timestamp"]),
        expires_s=float(doc["expires"]),
        digest=digest,
        members=members,
        removed=tuple(parse_node_id(n) for n in removed_docs),
        network=network,
        controllers=parse_controllers(doc.get("controllers", [])),
    )
