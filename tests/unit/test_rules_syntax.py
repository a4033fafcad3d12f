"""l2mesh.rules.syntax: the flow-rules language, text to rules and back (issue 13, item 2)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.errors import L2meshError
from l2mesh.rules.syntax import (
    ACCEPT,
    DROP,
    LOG,
    MAX_RULES,
    MAX_RULES_TEXT_BYTES,
    Condition,
    Rule,
    RuleSyntaxError,
    format_rule,
    format_rules,
    parse_line,
    parse_rules,
)
from tests.unit.rules_strategies import rules

SETTINGS = settings(max_examples=200, deadline=None)
ISSUE_EXAMPLE = """\
# guests may not reach ssh anywhere, nor the 10.147.17.0/28 servers at all
drop tcp dport 22 src-tag guest
drop dst 10.147.17.0/28 src-tag guest
drop ethertype 0x88b5 not src-tag plc
accept
"""

@SETTINGS
@given(st.lists(rules, max_size=12))
def test_parse_of_format_gives_the_same_rules(written: list[Rule]) -> None:
    assert parse_rules(format_rules(written)).rules == tuple(written)


@SETTINGS
@given(st.lists(rules, max_size=12))
def test_format_is_canonical(written: list[Rule]) -> None:
    text = format_rules(written)
    assert format_rules(parse_rules(text).rules) == text


def test_the_issue_example_parses_with_its_line_numbers() -> None:
    ruleset = parse_rules(ISSUE_EXAMPLE)
    assert [r.line for r in ruleset.rules] == [2, 3, 4, 5]
    assert ruleset.rules[0] == Rule(
        DROP, (Condition("protocol", "tcp"), Condition("dport", (22, 22)), Condition("src-tag", "guest"))
    )
    assert ruleset.rules[2].conditions == (Condition("ethertype", 0x88B5), Condition("src-tag", "plc", negated=True))
    assert ruleset.rules[3] == Rule(ACCEPT)
    assert ruleset.text == ISSUE_EXAMPLE
    assert format_rules(ruleset.rules).splitlines() == ISSUE_EXAMPLE.splitlines()[1:]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("drop ethertype arp", Condition("ethertype", 0x0806)),
        ("drop ethertype IPv4", Condition("ethertype", 0x0800)),
        ("drop ethertype ipv6", Condition("ethertype", 0x86DD)),
        ("drop ethertype 0x88B5", Condition("ethertype", 0x88B5)),
        ("drop not udp", Condition("protocol", "udp", True)),
        ("drop icmpv6", Condition("protocol", "icmpv6")),
        ("drop sport 1000-2000", Condition("sport", (1000, 2000))),
        ("drop src 10.147.17.5", Condition("src", ipaddress.ip_network("10.147.17.5/32"))),
        ("drop dst fd00::/64", Condition("dst", ipaddress.ip_network("fd00::/64"))),
        ("drop dst-tag plc", Condition("dst-tag", "plc")),
        ("drop src-mac 52:54:00:AB:cd:ef", Condition("src-mac", bytes.fromhex("525400abcdef"))),
        ("drop not broadcast", Condition("broadcast", None, True)),
        ("DROP MULTICAST", Condition("multicast")),
        ("drop tcp # a comment that says dport 22", Condition("protocol", "tcp")),
    ],
)
def test_each_condition_parses(line: str, expected: Condition) -> None:
    rule = parse_line(line)
    assert rule is not None and rule.conditions == (expected,)


def test_comments_and_blank_lines_are_not_rules() -> None:
    ruleset = parse_rules("\n   \n# only a comment\n\t# another\n")
    assert ruleset.rules == () and not ruleset


def test_a_rule_with_no_condition_matches_everything_and_is_kept() -> None:
    assert parse_rules("log\n").rules == (Rule(LOG),)


BAD_LINES = [
    ("permit tcp", "'permit' is not an action"),
    ("drop tcp dprt 22", "unknown condition 'dprt' (did you mean dport?)"),
    ("drop dport", "dport needs a port"),
    ("drop dport ssh", "expected a port N or a range N-M"),
    ("drop dport 70000", "up to 65535"),
    ("drop dport 30-20", "range is empty"),
    ("drop dport 22 not", "'not' at the end of the line"),
    ("drop not not tcp", "one 'not' per condition"),
    ("drop dst 10.147.17.5/28", "host bits are set; did you mean 10.147.17.0/28?"),
    ("drop dst 10.147.17.0/33", "expected an address or a network"),
    ("drop src-tag", "src-tag needs a tag"),
    ("drop src-tag not tcp", "src-tag needs a tag"),
    ("drop src-tag -guest", "a tag is 1 to 64"),
    ("drop dst-tag NOT", "dst-tag needs a tag"),
    ("drop src-mac 52:54:00:12:34", "six colon-separated hex bytes"),
    ("drop ethertype 0x123456", "0xNNNN"),
    ("drop ethertype ipx", "0xNNNN"),
    ("drop tcp drop", "the action comes first"),
    ("drop tcp 22", "unknown condition '22'"),
]


@pytest.mark.parametrize(("bad", "problem"), BAD_LINES)
@pytest.mark.parametrize("position", [0, 1, 3])
def test_a_bad_line_is_one_error_naming_its_line_and_what_is_wrong(bad: str, problem: str, position: int) -> None:
    good = ["# header", "accept udp dport 53", "", "drop src-tag guest dst-tag server"]
    lines = good[:position] + [bad] + good[position:]
    with pytest.raises(RuleSyntaxError) as excinfo:
        parse_rules("\n".join(lines))
    assert excinfo.value.line == position + 1
    message = str(excinfo.value)
    assert message.startswith(f"rules line {position + 1}: ")
    assert problem in message
    assert "\n" not in message
    assert isinstance(excinfo.value, L2meshError)


@SETTINGS
@given(st.lists(rules, min_size=1, max_size=8), st.data())
def test_every_bad_line_anywhere_is_rejected_with_its_number(written: list[Rule], data: st.DataObject) -> None:
    lines = format_rules(written).splitlines()
    at = data.draw(st.integers(0, len(lines)))
    bad, _ = data.draw(st.sampled_from(BAD_LINES))
    lines.insert(at, bad)
    with pytest.raises(RuleSyntaxError) as excinfo:
        parse_rules("\n".join(lines))
    assert excinfo.value.line == at + 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_line_parses_or_is_one_rule_syntax_error(line: str) -> None:
    try:
        parse_rules(line)
    except RuleSyntaxError as exc:
        assert "\n" not in str(exc)


def test_too_many_rules_or_too_much_text_is_refused() -> None:
    with pytest.raises(RuleSyntaxError, match=f"line {MAX_RULES + 1}: more than {MAX_RULES} rules"):
        parse_rules("accept\n" * (MAX_RULES + 1))
    with pytest.raises(RuleSyntaxError, match="longer than"):
        parse_rules("#" * (MAX_RULES_TEXT_BYTES + 1))


def test_an_overlong_token_is_shortened_in_the_error() -> None:
    with pytest.raises(RuleSyntaxError) as excinfo:
        parse_rules("drop " + "x" * 5000)
    assert len(str(excinfo.value)) < 200


def test_format_rule_names_ethertypes_and_single_ports() -> None:
    rule = parse_line("log ethertype 0x0806 dport 53-53 not src fd00::/8")
    assert rule is not None
    assert format_rule(rule) == "log ethertype arp dport 53 not src fd00::/8"
