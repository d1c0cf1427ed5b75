"""Hostile values for property tests of audit rows, and the strict JSON check PostgreSQL applies.

Random unicode with lone surrogates and NUL, NaN and Infinity, huge integers, bytes, deep nesting,
huge strings: what a job may put in its records. Shared by the row builders' tests (test_rows.py)
and the relay's (tests/unit/controller/test_relay.py).
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import pytest
from hypothesis import strategies as st

hostile_chars = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates, as json.loads('"\\ud800"') gives
    st.sampled_from(["\x00", "\x01", "\u2028", "\ufffd", "\U0001f600", '"', "\\"]),
)
hostile_text = st.one_of(
    st.text(hostile_chars, max_size=40),
    st.builds(lambda c, n: c * n, hostile_chars, st.integers(0, 300_000)),  # huge strings
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**1000), 2**1000),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    st.binary(max_size=20),
    st.datetimes(timezones=st.just(UTC)),
)
keys = st.one_of(hostile_text, st.integers(), st.none(), st.booleans(), st.floats())
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6), st.tuples(inner, inner)
    ),
    max_leaves=40,
)


def deep(value: Any, levels: int, as_list: bool) -> Any:
    for _ in range(levels):
        value = [value] if as_list else {"k": value}
    return value


hostile = st.one_of(
    nested,
    st.builds(deep, nested, st.integers(0, 3000), st.booleans()),
    st.integers(0, 200_000).map(lambda n: list(range(n))),  # many small items
)


def strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings_of(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


def strict_json(data: bytes) -> Any:
    """What PostgreSQL's json parser insists on: UTF-8, no NaN/Infinity, no NUL in text."""
    text = data.decode("utf-8")  # strict: a lone surrogate cannot even be encoded
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert all("\x00" not in s for s in strings_of(parsed))
    return parsed
