"""Rules compiled for one member, so that a frame costs a few table lookups however many rules there are.

Every condition is a range test on one integer field of the frame
(fields.py). For each field the rules test, the bounds of all their ranges
cut the field's values into intervals, and each interval holds the bitmask
of the rules whose conditions on that field hold there. The rules a frame
matches are the AND of one mask per field; the first match is the lowest bit
set. Tag conditions depend on who sends and who receives, not on the frame:
they become one mask per member when the config arrives. On the sending
side our own tags are fixed (we are the source), on the receiving side too
(we are the destination), so each direction keeps one mask per peer.

Two meanings are added here, not written by the operator:
- A rule that tests IP (src, dst, tcp/udp/icmp/icmpv6, ports) never matches
  ARP or IPv6 neighbour discovery: an IP rule must not cut a member off from
  addresses it is allowed to reach.
- A `drop` rule that names tcp or a port matches a TCP segment only when it
  opens a connection (SYN without ACK), as ZeroTier's `chr tcp_syn`: replies
  within connections the other side opened pass, with no connection table.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

from l2mesh.rules import fields as F
from l2mesh.rules.syntax import (
    BROADCAST,
    DPORT,
    DROP,
    DST,
    DST_MAC,
    DST_TAG,
    ETHERTYPE,
    LOG,
    MULTICAST,
    PROTOCOL,
    PROTOCOL_NUMBERS,
    SPORT,
    SRC,
    SRC_MAC,
    SRC_TAG,
    Condition,
    Rule,
)

NO_TAGS: frozenset[str] = frozenset()
NO_MATCH = -1
# Frames of one flow have the same fields, so answers are remembered: a hit
# costs one hash of the fields instead of one lookup per table. Bounded, and
# emptied when full, so frames with ever-new fields cost memory only this much.
MAX_CACHED_ANSWERS = 4096
_IP_KINDS = (PROTOCOL, SPORT, DPORT, SRC, DST)
_PORT_KINDS = (SPORT, DPORT)


@dataclass(frozen=True)
class Range:
    """A condition as a range test: field value in [low, high], or outside it when negated."""

    field: int
    low: int
    high: int
    negated: bool = False

    def holds(self, value: int) -> bool:
        return (self.low <= value <= self.high) != self.negated


@dataclass(frozen=True)
class FieldTable:
    """One field's intervals: values below bounds[0] take masks[0], values from bounds[i-1] masks[i]."""

    field: int
    bounds: tuple[int, ...]
    masks: tuple[int, ...]


class Matcher:
    """First-match evaluation for one direction; the peer is the destination (sending) or the source (receiving)."""

    __slots__ = ("peer_masks", "default_mask", "tables", "answers")

    def __init__(self, peer_masks: dict[int, int], default_mask: int, tables: tuple[FieldTable, ...]) -> None:
        self.peer_masks = peer_masks  # only peers whose tags make a difference
        self.default_mask = default_mask
        self.tables = tuple((t.field, t.bounds, t.masks) for t in tables)
        self.answers: dict[tuple[tuple[int, ...] | None, int], int] = {}

    def first_match(self, fields: tuple[int, ...] | None, peer: int) -> int:
        """Index of the first rule that matches, or NO_MATCH. fields may be None when no table needs them."""
        key = (fields, peer)
        index = self.answers.get(key)
        if index is None:
            index = self.evaluate(fields, peer)
            if len(self.answers) >= MAX_CACHED_ANSWERS:
                self.answers.clear()
            self.answers[key] = index
        return index

    def evaluate(self, fields: tuple[int, ...] | None, peer: int) -> int:
        """first_match without the remembered answers: one table lookup per field the rules test."""
        mask = self.peer_masks.get(peer, self.default_mask)
        for field, bounds, masks in self.tables:
            if not mask:
                return NO_MATCH
            mask &= masks[bisect_right(bounds, fields[field])]  # type: ignore[index]
        return (mask & -mask).bit_length() - 1  # NO_MATCH when no bit is left


@dataclass(frozen=True)
class CompiledRules:
    rules: tuple[Rule, ...]
    drop_mask: int  # bit i: rule i drops
    report_mask: int  # bit i: rule i drops or logs (its matches are logged once per cause)
    outbound: Matcher
    inbound: Matcher
    needs_fields: bool  # False when only tags decide: frames need not be read at all

    def drops(self, index: int) -> bool:
        return index >= 0 and bool(self.drop_mask >> index & 1)


def compile_rules(rules: tuple[Rule, ...], local_node: int, tags_of: Mapping[int, frozenset[str]]) -> CompiledRules:
    """Compile rules for the member local_node, with every member's tags (from the signed config)."""
    ranges = [rule_ranges(rule) for rule in rules]
    tables = tuple(_table(field, ranges) for field in sorted({r.field for rs in ranges for r in rs}))
    src_masks: dict[frozenset[str], int] = {}
    dst_masks: dict[frozenset[str], int] = {}

    def src_mask(tags: frozenset[str]) -> int:
        if tags not in src_masks:
            src_masks[tags] = _tag_mask(rules, SRC_TAG, tags)
        return src_masks[tags]

    def dst_mask(tags: frozenset[str]) -> int:
        if tags not in dst_masks:
            dst_masks[tags] = _tag_mask(rules, DST_TAG, tags)
        return dst_masks[tags]

    local_tags = tags_of.get(local_node, NO_TAGS)
    # Sending, we are the source; receiving, we are the destination.
    out_base, in_base = src_mask(local_tags), dst_mask(local_tags)
    out_default, in_default = out_base & dst_mask(NO_TAGS), in_base & src_mask(NO_TAGS)
    out_peers: dict[int, int] = {}
    in_peers: dict[int, int] = {}
    for node, tags in tags_of.items():
        if not tags:
            continue
        if (mask := out_base & dst_mask(tags)) != out_default:
            out_peers[node] = mask
        if (mask := in_base & src_mask(tags)) != in_default:
            in_peers[node] = mask
    drop_mask = sum(1 << i for i, rule in enumerate(rules) if rule.action == DROP)
    report_mask = drop_mask | sum(1 << i for i, rule in enumerate(rules) if rule.action == LOG)
    return CompiledRules(
        rules=rules,
        drop_mask=drop_mask,
        report_mask=report_mask,
        outbound=Matcher(out_peers, out_default, tables),
        inbound=Matcher(in_peers, in_default, tables),
        needs_fields=bool(tables),
    )


def rule_ranges(rule: Rule) -> list[Range]:
    """The rule's frame conditions as range tests, with the two implied ones (module docstring); tags left out."""
    out = [_range(c) for c in rule.conditions if c.kind not in (SRC_TAG, DST_TAG)]
    kinds = {c.kind for c in rule.conditions}
    if kinds & set(_IP_KINDS):
        out.append(Range(F.RESOLUTION, 0, 0))
    names_tcp = any(c.kind == PROTOCOL and c.value == "tcp" for c in rule.conditions)
    if rule.action == DROP and (names_tcp or kinds & set(_PORT_KINDS)):
        out.append(Range(F.TCP_ONGOING, 0, 0))
    return out


def _range(condition: Condition) -> Range:
    kind, value, negated = condition.kind, condition.value, condition.negated
    if kind == ETHERTYPE:
        assert isinstance(value, int)
        return Range(F.ETHERTYPE, value, value, negated)
    if kind == PROTOCOL:
        assert isinstance(value, str)
        number = PROTOCOL_NUMBERS[value]
        return Range(F.PROTOCOL, number, number, negated)
    if kind in _PORT_KINDS:
        assert isinstance(value, tuple)
        return Range(F.SPORT if kind == SPORT else F.DPORT, value[0], value[1], negated)
    if kind in (SRC, DST):
        assert value is not None and not isinstance(value, (int, str, bytes, tuple))
        flag = F.IPV6_FLAG if value.version == 6 else 0
        field = F.SRC_IP if kind == SRC else F.DST_IP
        return Range(field, flag | int(value.network_address), flag | int(value.broadcast_address), negated)
    if kind in (SRC_MAC, DST_MAC):
        assert isinstance(value, bytes)
        number = int.from_bytes(value, "big")
        return Range(F.SRC_MAC if kind == SRC_MAC else F.DST_MAC, number, number, negated)
    if kind == BROADCAST:
        return Range(F.CAST, F.BROADCAST, F.BROADCAST, negated)
    if kind == MULTICAST:
        return Range(F.CAST, F.MULTICAST, F.MULTICAST, negated)
    raise ValueError(f"no frame field for condition {kind!r}")


def _table(field: int, ranges: list[list[Range]]) -> FieldTable:
    """Sweep the field's values once, upward: each bound enters or leaves some ranges, flipping their rules' bits.

    Linear in the number of ranges, so a thousand rules compile in milliseconds
    on the thread that forwards frames.
    """
    wanted: dict[int, int] = {}  # rule -> how many of its ranges on this field are positive
    inside: dict[int, list[int]] = {}  # rule -> [positive ranges containing the value, negated ones containing it]
    events: dict[int, list[tuple[int, int, int]]] = {}  # bound -> (rule, change in positive, change in negated)
    mask = 0
    for index, rule_ranges_ in enumerate(ranges):
        mine = [r for r in rule_ranges_ if r.field == field]
        if not mine:
            mask |= 1 << index  # no test on this field: holds everywhere
            continue
        wanted[index] = sum(not r.negated for r in mine)
        inside[index] = [0, 0]
        for r in mine:
            positive, negated = (0, 1) if r.negated else (1, 0)
            events.setdefault(r.low, []).append((index, positive, negated))
            events.setdefault(r.high + 1, []).append((index, -positive, -negated))
    for index, positives in wanted.items():
        if positives == 0:  # below every bound the value is inside no range: only negated tests, all hold
            mask |= 1 << index
    bounds = sorted(events)
    masks = [mask]
    for bound in bounds:
        for index, positive, negated in events[bound]:
            counts = inside[index]
            counts[0] += positive
            counts[1] += negated
        for index in {e[0] for e in events[bound]}:
            counts = inside[index]
            if counts[0] == wanted[index] and counts[1] == 0:
                mask |= 1 << index
            else:
                mask &= ~(1 << index)
        masks.append(mask)
    return FieldTable(field, tuple(bounds), tuple(masks))


def _tag_mask(rules: tuple[Rule, ...], kind: str, tags: frozenset[str]) -> int:
    """Bit i set when every `kind` tag condition of rule i holds for a member with these tags."""
    mask = 0
    for index, rule in enumerate(rules):
        if all((c.value in tags) != c.negated for c in rule.conditions if c.kind == kind):
            mask |= 1 << index
    return mask


def first_match_reference(rules: tuple[Rule, ...], fields: tuple[int, ...], src_tags: frozenset[str], dst_tags: frozenset[str]) -> int:
    """The same answer as a compiled Matcher, rule by rule: the specification the tables are tested against."""
    for index, rule in enumerate(rules):
        if not all(r.holds(fields[r.field]) for r in rule_ranges(rule)):
            continue
        if all((c.value in src_tags) != c.negated for c in rule.conditions if c.kind == SRC_TAG) and all(
            (c.value in dst_tags) != c.negated for c in rule.conditions if c.kind == DST_TAG
        ):
            return index
    return NO_MATCH
