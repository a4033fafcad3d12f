"""A network's flow rules as the switch enforces them: compiled rules, per-rule counters, causes to log.

The switch asks before a frame leaves (outbound, per destination member)
and again before a frame from a peer reaches the TAP (inbound, per sending
member): a sender that skips its own rules is still stopped by the receiver.
The switch only counts; the node reports each new cause (a drop or log rule,
a direction, a peer) once, and the daemon logs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l2mesh.rules.compile import NO_MATCH, CompiledRules, compile_rules
from l2mesh.rules.fields import frame_fields
from l2mesh.rules.syntax import RuleSet, format_rule

OUTBOUND = "outbound"
INBOUND = "inbound"


class FlowRules:
    def __init__(self, ruleset: RuleSet, local_node: int, tags_of: Mapping[int, frozenset[str]]) -> None:
        self.ruleset = ruleset
        self.local_node = local_node
        self.compiled: CompiledRules = compile_rules(ruleset.rules, local_node, tags_of)
        count = len(ruleset.rules)
        self.outbound_matches = [0] * count
        self.inbound_matches = [0] * count
        self.outbound_unmatched = 0  # accepted because no rule matched
        self.inbound_unmatched = 0
        self.drops = 0
        self.causes_seen: set[tuple[int, str, int]] = set()
        self.new_causes: list[tuple[int, str, int]] = []  # (rule index, direction, peer), for the node to report

    def retag(self, tags_of: Mapping[int, frozenset[str]]) -> None:
        """Members or their tags changed: recompile, keeping the counters (the rules are the same)."""
        self.compiled = compile_rules(self.ruleset.rules, self.local_node, tags_of)

    # -- per frame --------------------------------------------------------------------------------
    def outbound(self, frame: bytes | memoryview, destination: int) -> bool:
        """Whether a frame from our TAP may go to the member destination."""
        compiled = self.compiled
        index = compiled.outbound.first_match(frame_fields(frame) if compiled.needs_fields else None, destination)
        if index == NO_MATCH:
            self.outbound_unmatched += 1
            return True
        self.outbound_matches[index] += 1
        if compiled.report_mask >> index & 1:
            return self._reported(index, OUTBOUND, destination)
        return True

    def outbound_to(self, frame: bytes | memoryview, targets: tuple[int, ...]) -> tuple[int, ...] | None:
        """The members of targets a broadcast or multicast frame may go to; None if none. The frame is read once."""
        compiled = self.compiled
        fields = frame_fields(frame) if compiled.needs_fields else None
        first_match = compiled.outbound.first_match
        allowed = []
        for destination in targets:
            index = first_match(fields, destination)
            if index == NO_MATCH:
                self.outbound_unmatched += 1
                allowed.append(destination)
                continue
            self.outbound_matches[index] += 1
            if not compiled.report_mask >> index & 1 or self._reported(index, OUTBOUND, destination):
                allowed.append(destination)
        return tuple(allowed) if allowed else None

    def inbound(self, frame: bytes | memoryview, sender: int) -> bool:
        """Whether a frame the member sender sent may reach our TAP."""
        compiled = self.compiled
        index = compiled.inbound.first_match(frame_fields(frame) if compiled.needs_fields else None, sender)
        if index == NO_MATCH:
            self.inbound_unmatched += 1
            return True
        self.inbound_matches[index] += 1
        if compiled.report_mask >> index & 1:
            return self._reported(index, INBOUND, sender)
        return True

    def _reported(self, index: int, direction: str, peer: int) -> bool:
        """Count a drop or log match; note its cause the first time. Whether the frame passes."""
        cause = (index, direction, peer)
        if cause not in self.causes_seen:
            self.causes_seen.add(cause)
            self.new_causes.append(cause)
        if self.compiled.drop_mask >> index & 1:
            self.drops += 1
            return False
        return True

    # -- introspection -------------------------------------------------------------------------------
    def report(self) -> list[dict[str, Any]]:
        """Per rule: its line in the operator's text, the rule, its action and how many frames it matched."""
        return [
            {
                "line": rule.line,
                "rule": format_rule(rule),
                "action": rule.action,
                "matches": self.outbound_matches[i] + self.inbound_matches[i],
                "outbound": self.outbound_matches[i],
                "inbound": self.inbound_matches[i],
            }
            for i, rule in enumerate(self.ruleset.rules)
        ]

    def totals(self) -> dict[str, int]:
        return {"drops": self.drops, "outbound_unmatched": self.outbound_unmatched, "inbound_unmatched": self.inbound_unmatched}
