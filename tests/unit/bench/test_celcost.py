"""bench.celcost's CRD variants: which rules each one takes out or rewrites, the rest untouched."""

from __future__ import annotations

from typing import Any

import pytest
from bench import celcost


def rules(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        found += [r["rule"] for r in node.get(celcost.RULES, [])]
        for key, value in node.items():
            if key != celcost.RULES:
                found += rules(value)
    elif isinstance(node, list):
        for value in node:
            found += rules(value)
    return found


def schema(variant: str) -> dict[str, Any]:
    crd = celcost.crd_variant(variant)
    result: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def test_as_is_is_the_committed_crd() -> None:
    assert len(rules(schema("as-is"))) > 100


def test_no_cel_leaves_no_rule() -> None:
    assert rules(schema("no-cel")) == []


def test_no_spec_cel_keeps_the_rules_outside_spec_only() -> None:
    kept = schema("no-spec-cel")
    assert rules(kept["properties"]["spec"]) == []
    assert rules(kept) == ["self.metadata.name.size() <= 63"]


def test_no_transition_drops_exactly_the_rules_that_read_old_self() -> None:
    before, after = rules(schema("as-is")), rules(schema("no-transition"))
    assert after == [r for r in before if "oldSelf" not in r]
    assert len(after) < len(before)


def test_merged_top_joins_the_spec_rules_into_two() -> None:
    spec_rules = schema("merged-top")["properties"]["spec"][celcost.RULES]
    assert len(spec_rules) == 2
    assert "oldSelf" in spec_rules[0]["rule"]
    assert "oldSelf" not in spec_rules[1]["rule"]


def test_guarded_top_skips_each_spec_rule_when_the_spec_is_unchanged() -> None:
    for rule in schema("guarded-top")["properties"]["spec"][celcost.RULES]:
        assert rule["rule"].startswith(("self == oldSelf || (", "(oldSelf.hasValue() && oldSelf.value() == self) || ("))


def test_an_unknown_variant_is_refused_by_name() -> None:
    with pytest.raises(SystemExit, match="unknown variant 'nope'"):
        celcost.crd_variant("nope")
