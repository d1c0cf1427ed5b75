"""procjob.core.sanitize by example: text without NUL or lone surrogates, cut with an exact marker;
JSON values bounded in depth and size, with notes of what was degraded; nothing ever raises.

(The properties over random hostile values are in tests/unit/test_audit_rows.py, through the row
building that uses these functions.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pytest

from procjob.core.sanitize import bounded_json, clean_text, cut_text, has_invalid_text


def deep(value: Any, levels: int, as_list: bool) -> Any:
    for _ in range(levels):
        value = [value] if as_list else {"k": value}
    return value


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("plain", None, "plain"),
        ("a\x00b", None, "a\ufffdb"),
        ('{"k":"\ud800"}', None, '{"k":"\ufffd"}'),
        ("\udc00\ud800", None, "\ufffd\ufffd"),
        ("x" * 50, 30, "xxxxxxxxxx…[cut 40 characters]"),
        ("short", 30, "short"),
    ],
)
def test_clean_text_replaces_nul_and_lone_surrogates_and_cuts_with_a_marker(
    text: str, limit: int | None, expected: str
) -> None:
    assert clean_text(text, limit) == expected


def test_a_cut_says_exactly_how_many_characters_were_cut() -> None:
    for length in (40, 999, 100_000):
        for limit in (22, 30, 500):
            cut = cut_text("y" * length, limit)
            assert len(cut) == min(length, limit)
            if "…" in cut:
                assert cut == "y" * cut.index("…") + f"…[cut {length - cut.index('…')} characters]"
            else:  # nothing cut, or (below about 20 characters) no room for the marker
                assert cut == "y" * len(cut)
                assert length <= limit or limit < 30


def test_bounded_json_cuts_depth_with_a_marker_and_says_so() -> None:
    value, notes = bounded_json(deep("leaf", 100, as_list=False), max_depth=3)
    assert value == {"k": {"k": {"k": "<cut: nested deeper than 3 levels>"}}}
    assert notes == ["structures nested deeper than 3 levels were cut"]


def test_bounded_json_cuts_items_past_the_size_budget_with_a_count() -> None:
    value, notes = bounded_json(list(range(1000)), max_chars=100)
    assert value[-1] == f"<cut: {1000 - len(value) + 1} more items>"
    assert len(json.dumps(value)) < 200
    assert notes == ["the size bound was reached; the remaining items were cut"]


def test_bounded_json_turns_what_json_lacks_into_text() -> None:
    value, notes = bounded_json(
        {1: b"\xffok", None: (float("nan"), -math.inf, 2**200), "t": datetime(2026, 1, 1, tzinfo=UTC)}
    )
    assert value == {
        "1": "\ufffdok",
        "null": ["NaN", "-Infinity", "<integer of 201 bits>"],
        "t": "2026-01-01T00:00:00Z",
    }
    assert len(notes) == 3


def test_bounded_json_survives_a_cycle_and_a_hostile_str() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    cycle: list[Any] = [Hostile()]
    cycle.append(cycle)
    value, notes = bounded_json(cycle, max_depth=4)
    assert value[0] == "<unprintable Hostile>"
    assert value[1][1][1][1] == "<cut: nested deeper than 4 levels>"
    assert notes


def test_has_invalid_text_finds_nul_and_lone_surrogates_only() -> None:
    assert has_invalid_text("a\x00")
    assert has_invalid_text("\udfff")
    assert not has_invalid_text("\U0001f600 \ufffd plain")


def test_bounded_json_cuts_object_items_past_the_size_budget_under_a_marker_key() -> None:
    value, notes = bounded_json({f"k{i}": i for i in range(100)}, max_chars=50)
    assert value["…"] == f"<cut: {100 - len(value) + 1} more items>"
    assert notes == ["the size bound was reached; the remaining items were cut"]


def test_bounded_json_cuts_long_strings_and_keys() -> None:
    value, notes = bounded_json({"k" * 300: "v" * 100}, max_string=50)
    ((key, text),) = value.items()
    assert len(key) == 50
    assert len(text) == 50
    assert text.endswith("…[cut 70 characters]")
    assert notes == ["long strings were cut", "object keys were cleaned or cut"]


def test_bounded_json_writes_keys_as_json_dumps_does_and_odd_keys_as_text() -> None:
    when = date(2026, 1, 2)
    value, notes = bounded_json({True: 1, False: 2, 1.5: 3, 2**20000: 4, when: 5, "a\x00": 6})
    assert list(value) == ["true", "false", "1.5", "<unprintable int>", "2026-01-02", "a\ufffd"]
    assert notes == ["object keys were cleaned or cut", "values of type int were stored as text"]


def test_an_unreadable_mapping_becomes_a_marker() -> None:
    class Unreadable(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("no")

        def __len__(self) -> int:
            return 1

    value, notes = bounded_json({"m": Unreadable()})
    assert value == {"m": {"…": "<cut: unreadable mapping>"}}
    assert notes == ["unreadable mappings were replaced"]


def test_plain_json_comes_back_equal_and_without_notes() -> None:
    plain = {"a": [1, 2.5, None, True, "x"], "b": {"c": []}}
    assert bounded_json(plain) == (plain, [])
    assert bounded_json((1, "t")) == ([1, "t"], []), "tuples become lists silently"
    assert bounded_json(datetime(2026, 1, 1, 12, tzinfo=UTC))[0] == "2026-01-01T12:00:00Z"
    assert json.dumps(bounded_json(math.pi)[0]) == json.dumps(math.pi)


def test_bounded_json_cleans_text_values_and_says_so() -> None:
    value, notes = bounded_json({"outputs": json.loads('{"k":"\\ud800", "n": "a\\u0000"}')})
    assert value == {"outputs": {"k": "\ufffd", "n": "a\ufffd"}}
    assert notes == ["NUL or invalid UTF-16 replaced by U+FFFD"]
