"""The flow-rules language: text to rule objects and back.

One rule per line: an action, then conditions that must all hold, each with
an optional `not`. `#` starts a comment; blank lines are skipped; the first
rule that matches a frame decides, and a frame no rule matches is accepted.

    drop tcp dport 22 src-tag guest
    drop dst 10.147.17.0/28 src-tag guest
    drop ethertype 0x88b5 not src-tag plc
    accept

A bad line is one error naming its line number and what is wrong with it,
so an operator fixes a file in one look; nothing of a bad file is used.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Union

from l2mesh.errors import L2meshError

ACCEPT = "accept"
DROP = "drop"
LOG = "log"  # accept, and count (and log) under the rule's line
ACTIONS = (ACCEPT, DROP, LOG)

# Condition kinds; tcp, udp, icmp and icmpv6 are all of kind PROTOCOL.
ETHERTYPE = "ethertype"
PROTOCOL = "protocol"
SPORT = "sport"
DPORT = "dport"
SRC = "src"
DST = "dst"
SRC_TAG = "src-tag"
DST_TAG = "dst-tag"
SRC_MAC = "src-mac"
DST_MAC = "dst-mac"
BROADCAST = "broadcast"
MULTICAST = "multicast"

ETHERTYPE_NAMES = {"arp": 0x0806, "ipv4": 0x0800, "ipv6": 0x86DD}
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
# Bounds on what a signed config may make every member compile.
MAX_RULES = 1000
MAX_RULES_TEXT_BYTES = 65536
MAX_TAG_CHARS = 64

TAG_SYNTAX = f"1 to {MAX_TAG_CHARS} letters, digits or _ . : - (not starting with . : -), and not 'not'"
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,%d}" % (MAX_TAG_CHARS - 1))
_PORTS_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_ETHERTYPE_RE = re.compile(r"0[xX][0-9A-Fa-f]{1,4}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")

IpNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
ConditionValue = Union[int, str, bytes, tuple[int, int], IpNetwork, None]


class RuleSyntaxError(L2meshError):
    """A line of a rules file is malformed; the message names the line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"rules line {line}: {problem}" if line else f"rules: {problem}")
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class Condition:
    """One test on a frame. value: ethertype int, protocol name, (low, high) ports, network, tag, MAC bytes, or None."""

    kind: str
    value: ConditionValue = None
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    action: str
    conditions: tuple[Condition, ...] = ()
    # Where the rule stood in the operator's file: counters and logs name it. Not part of what the rule means.
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class RuleSet:
    """Rules as the operator wrote them (comments and line numbers kept) and as parsed."""

    text: str = ""
    rules: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)


NO_RULES = RuleSet()


# -- parsing -----------------------------------------------------------------------------------------
def parse_rules(text: str) -> RuleSet:
    """The rules in text; the first bad line raises RuleSyntaxError naming it."""
    if not isinstance(text, str):
        raise RuleSyntaxError(0, "rules must be text")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RULES_TEXT_BYTES:
        raise RuleSyntaxError(0, f"rules text is longer than {MAX_RULES_TEXT_BYTES} bytes")
    rules: list[Rule] = []
    for number, line in enumerate(text.splitlines(), start=1):
        rule = parse_line(line, number)
        if rule is None:
            continue
        if len(rules) == MAX_RULES:
            raise RuleSyntaxError(number, f"more than {MAX_RULES} rules")
        rules.append(rule)
    return RuleSet(text, tuple(rules))


def parse_line(line: str, number: int = 1) -> Rule | None:
    """One line: a rule, or None for a blank or comment-only line."""
    tokens = line.split("#", 1)[0].split()
    if not tokens:
        return None
    action = tokens[0].lower()
    if action not in ACTIONS:
        raise RuleSyntaxError(number, f"{_show(tokens[0])} is not an action: a rule starts with accept, drop or log")
    conditions: list[Condition] = []
    at = 1
    while at < len(tokens):
        negated = tokens[at].lower() == "not"
        if negated:
            at += 1
            if at == len(tokens):
                raise RuleSyntaxError(number, "'not' at the end of the line: a condition must follow it")
        condition, at = _condition(tokens, at, number)
        conditions.append(condition if not negated else Condition(condition.kind, condition.value, True))
    return Rule(action, tuple(conditions), number)


def _condition(tokens: list[str], at: int, number: int) -> tuple[Condition, int]:
    """The condition starting at tokens[at], and where the next one starts."""
    keyword = tokens[at].lower()
    if keyword == "not":
        raise RuleSyntaxError(number, "'not not': one 'not' per condition")
    if keyword in PROTOCOL_NUMBERS:
        return Condition(PROTOCOL, keyword), at + 1
    if keyword in (BROADCAST, MULTICAST):
        return Condition(keyword), at + 1
    parse_value = _VALUE_PARSERS.get(keyword)
    if parse_value is None:
        raise RuleSyntaxError(number, f"unknown condition {_show(tokens[at])}{_hint(keyword)}")
    if at + 1 == len(tokens) or tokens[at + 1].lower() == "not":
        raise RuleSyntaxError(number, f"{keyword} needs {_VALUE_NAMES[keyword]}")
    try:
        value = parse_value(tokens[at + 1])
    except ValueError as exc:
        raise RuleSyntaxError(number, f"{keyword} {_show(tokens[at + 1])}: {exc}") from None
    return Condition(keyword, value), at + 2


def _ethertype(text: str) -> int:
    named = ETHERTYPE_NAMES.get(text.lower())
    if named is not None:
        return named
    if not _ETHERTYPE_RE.fullmatch(text):
        raise ValueError("expected arp, ipv4, ipv6 or a hex number 0xNNNN")
    return int(text, 16)


def _ports(text: str) -> tuple[int, int]:
    match = _PORTS_RE.fullmatch(text)
    if match is None:
        raise ValueError("expected a port N or a range N-M")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else low
    if high > 65535:
        raise ValueError("ports go up to 65535")
    if low > high:
        raise ValueError("the range is empty (its first port is above its last)")
    return low, high


def _network(text: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError("expected an address or a network in CIDR form, e.g. 10.147.17.0/28 or fd00::/64") from None
    # A firewall rule that silently meant another range than written is worse than an error.
    raise ValueError(f"host bits are set; did you mean {loose}?")


def _tag(text: str) -> str:
    if not is_valid_tag(text):
        raise ValueError(f"a tag is {TAG_SYNTAX}")
    return text


def _mac(text: str) -> bytes:
    if not _MAC_RE.fullmatch(text):
        raise ValueError("expected six colon-separated hex bytes, e.g. 52:54:00:12:34:56")
    return bytes.fromhex(text.replace(":", ""))


def is_valid_tag(text: object) -> bool:
    # "not" is reserved: `src-tag not tcp` would otherwise read two ways.
    return isinstance(text, str) and _TAG_RE.fullmatch(text) is not None and text.lower() != "not"


_VALUE_PARSERS: dict[str, Callable[[str], ConditionValue]] = {
    ETHERTYPE: _ethertype,
    SPORT: _ports,
    DPORT: _ports,
    SRC: _network,
    DST: _network,
    SRC_TAG: _tag,
    DST_TAG: _tag,
    SRC_MAC: _mac,
    DST_MAC: _mac,
}
_VALUE_NAMES = {
    ETHERTYPE: "a type: arp, ipv4, ipv6 or 0xNNNN",
    SPORT: "a port N or a range N-M",
    DPORT: "a port N or a range N-M",
    SRC: "an address or network (CIDR)",
    DST: "an address or network (CIDR)",
    SRC_TAG: "a tag",
    DST_TAG: "a tag",
    SRC_MAC: "a MAC address",
    DST_MAC: "a MAC address",
}
_KEYWORDS = (*_VALUE_PARSERS, *PROTOCOL_NUMBERS, BROADCAST, MULTICAST, "not")


def _hint(keyword: str) -> str:
    if keyword in ACTIONS:
        return " (the action comes first, once per line)"
    import difflib  # here: only a rule with a typo needs it, and every daemon parses rules (issue 17: idle RSS)

    close = difflib.get_close_matches(keyword, _KEYWORDS, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _show(token: str) -> str:
    """A token for an error message: quoted, and short even when the input is not."""
    return repr(token if len(token) <= 40 else token[:37] + "...")


# -- formatting ------------------------------------------------------------------------------------------
def format_rules(rules: tuple[Rule, ...] | list[Rule]) -> str:
    """Canonical text of rules, one per line; parse_rules gives the same rules back."""
    return "".join(format_rule(rule) + "\n" for rule in rules)


def format_rule(rule: Rule) -> str:
    return " ".join([rule.action, *(format_condition(c) for c in rule.conditions)])


def format_condition(condition: Condition) -> str:
    prefix = "not " if condition.negated else ""
    kind, value = condition.kind, condition.value
    if kind == PROTOCOL:
        assert isinstance(value, str)
        return f"{prefix}{value}"
    if kind in (BROADCAST, MULTICAST):
        return f"{prefix}{kind}"
    if kind == ETHERTYPE:
        assert isinstance(value, int)
        names = {number: name for name, number in ETHERTYPE_NAMES.items()}
        text = names.get(value, f"0x{value:04x}")
    elif kind in (SPORT, DPORT):
        assert isinstance(value, tuple)
        low, high = value
        text = str(low) if low == high else f"{low}-{high}"
    elif kind in (SRC_MAC, DST_MAC):
        assert isinstance(value, bytes)
        text = ":".join(f"{b:02x}" for b in value)
    else:
        assert not isinstance(value, bytes)
        text = str(value)
    return f"{prefix}{kind} {text}"
