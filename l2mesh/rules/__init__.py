"""Flow rules (sans-IO): the language (syntax.py), what a frame offers to test (fields.py), and rules
compiled into per-frame tables (compile.py). The switch enforces them; see l2mesh/switch/flow_rules.py."""

from l2mesh.rules.syntax import NO_RULES, Rule, RuleSet, RuleSyntaxError, format_rules, parse_rules

__all__ = ["NO_RULES", "Rule", "RuleSet", "RuleSyntaxError", "format_rules", "parse_rules"]
