"""Values that any JSON store accepts, whatever a job put in them: valid text, bounded depth and size.

A job author controls a stage's `with:` and a worker pod controls its termination message (the
outputs). Both end up in the audit database, which refuses what Python accepts: PostgreSQL's text
and jsonb hold no NUL and no lone UTF-16 surrogate (`json.loads('"\\ud800"')` gives one), JSON has
no NaN or Infinity, and serialisers give up on deep nesting. One such value must never stop the
audit of other jobs, nor be lost: it is stored degraded, and the caller marks the row with the
notes these functions return.

Rules, applied by `clean_text` and `bounded_json`:

- NUL and lone surrogates become U+FFFD (one character for one, so lengths are kept);
- a string longer than its bound is cut and ends with `…[cut N characters]`;
- a container deeper than `max_depth` becomes the string `<cut: nested deeper than D levels>`;
- once the size budget (about the length of the JSON text) is spent, the remaining items of a
  container become one `<cut: N more items>` marker (a key `…` in an object);
- NaN and ±Infinity become the strings "NaN", "Infinity", "-Infinity"; integers wider than 128
  bits become `<integer of N bits>`; datetimes become RFC 3339 text; any other object its `str()`.

Pure and total: no I/O, and no input makes these functions raise or recurse more than `max_depth`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

REPLACEMENT = "\ufffd"
CUT_KEY = "…"
MAX_INT_BITS = 128

_INVALID = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str, limit: int | None = None) -> str:
    """`text` without NUL or lone surrogates (each becomes U+FFFD), at most `limit` characters."""
    if _INVALID.search(text):
        text = _INVALID.sub(REPLACEMENT, text)
    if limit is not None and len(text) > limit:
        return cut_text(text, limit)
    return text


def has_invalid_text(text: str) -> bool:
    """True when `text` holds a NUL or a lone surrogate (what `clean_text` replaces)."""
    return _INVALID.search(text) is not None


def cut_text(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending with a marker that says how many were cut
    (below about 20 characters there is no room for the marker: the text is only cut)."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    while True:  # the marker's length depends on the number it shows: settle it (it only grows)
        marker = f"…[cut {cut} characters]"
        keep = limit - len(marker)
        if keep < 0:
            return text[: max(0, limit)]
        if len(text) - keep == cut:
            return text[:keep] + marker
        cut = len(text) - keep


@dataclass
class _Budget:
    """The walk's state: what is left to spend, and what was degraded (for the row's mark)."""

    left: int
    max_depth: int
    max_string: int
    notes: set[str] = field(default_factory=set)

    def spend(self, cost: int) -> bool:
        self.left -= cost
        return self.left >= 0


def bounded_json(
    value: object, *, max_depth: int = 32, max_chars: int = 65536, max_string: int = 8192
) -> tuple[Any, list[str]]:
    """`value` as plain JSON (dict with str keys, list, str, int, float, bool, None) within bounds.

    Returns the value and the sorted notes of what was degraded (empty: nothing changed but
    tuples to lists and datetimes to text). `max_chars` bounds the JSON text's length in
    characters, up to a few markers; callers that need a byte bound check the encoded size.
    """
    budget = _Budget(left=max_chars, max_depth=max_depth, max_string=max_string)
    result = _walk(value, 0, budget)
    return result, sorted(budget.notes)


def _walk(value: object, depth: int, budget: _Budget) -> Any:
    if value is None or isinstance(value, bool):
        budget.spend(5)
        return value
    if isinstance(value, str):
        return _text(value, budget)
    if isinstance(value, int):
        return _integer(value, budget)
    if isinstance(value, float):
        return _number(value, budget)
    if isinstance(value, Mapping | list | tuple):
        if depth >= budget.max_depth:
            budget.notes.add(f"structures nested deeper than {budget.max_depth} levels were cut")
            return f"<cut: nested deeper than {budget.max_depth} levels>"
        if isinstance(value, Mapping):
            return _object(value, depth, budget)
        return _array(value, depth, budget)
    return _text(_scalar_text(value, budget), budget)


def _text(text: str, budget: _Budget) -> str:
    cleaned = text
    if _INVALID.search(text):
        budget.notes.add("NUL or invalid UTF-16 replaced by U+FFFD")
        cleaned = _INVALID.sub(REPLACEMENT, text)
    limit = max(0, min(budget.max_string, budget.left - 2))
    if len(cleaned) > limit:
        budget.notes.add("long strings were cut")
        cleaned = cut_text(cleaned, max(limit, 32))
    budget.spend(len(cleaned) + 2)
    return cleaned


def _integer(value: int, budget: _Budget) -> int | str:
    bits = value.bit_length()
    if bits > MAX_INT_BITS:
        budget.notes.add(f"integers wider than {MAX_INT_BITS} bits were replaced")
        budget.spend(24)
        return f"<integer of {bits} bits>"
    budget.spend(bits // 3 + 2)
    return value


def _number(value: float, budget: _Budget) -> float | str:
    budget.spend(24)
    if math.isfinite(value):
        return value
    budget.notes.add("NaN and Infinity became strings")
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _scalar_text(value: object, budget: _Budget) -> str:
    """Text for what JSON has no type for: RFC 3339 for times (as pydantic writes them)."""
    try:
        if isinstance(value, datetime | date | time):
            text = value.isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text
        if isinstance(value, bytes | bytearray):
            budget.notes.add("bytes were decoded as UTF-8 with replacement")
            return bytes(value[: budget.max_string * 4]).decode("utf-8", "replace")
        budget.notes.add(f"values of type {type(value).__name__[:64]} were stored as text")
        return str(value)[: budget.max_string + 1]
    except Exception:  # a hostile __str__, an integer too long to print: a marker, never a raise
        return f"<unprintable {type(value).__name__[:64]}>"


def _key(key: object, budget: _Budget) -> str:
    """An object key as JSON needs it: text (None, booleans and numbers as json.dumps writes them)."""
    if isinstance(key, str):
        text = key
    elif key is None or isinstance(key, bool):
        text = "null" if key is None else "true" if key else "false"
    elif type(key) in (int, float) and not (isinstance(key, int) and key.bit_length() > MAX_INT_BITS):
        text = repr(key)
    else:
        text = _scalar_text(key, budget)
    limit = min(256, budget.max_string)
    cleaned = clean_text(text, limit)
    if cleaned != text:
        budget.notes.add("object keys were cleaned or cut")
    budget.spend(len(cleaned) + 3)
    return cleaned


def _object(value: Mapping[Any, Any], depth: int, budget: _Budget) -> dict[str, Any]:
    budget.spend(2)
    out: dict[str, Any] = {}
    try:
        items = list(value.items())
    except Exception:
        budget.notes.add("unreadable mappings were replaced")
        return {CUT_KEY: "<cut: unreadable mapping>"}
    for index, (key, item) in enumerate(items):
        if budget.left <= 0:
            budget.notes.add("the size bound was reached; the remaining items were cut")
            out[CUT_KEY] = f"<cut: {len(items) - index} more items>"
            break
        out[_key(key, budget)] = _walk(item, depth + 1, budget)
    return out


def _array(value: list[Any] | tuple[Any, ...], depth: int, budget: _Budget) -> list[Any]:
    budget.spend(2)
    out: list[Any] = []
    for index, item in enumerate(value):
        if budget.left <= 0:
            budget.notes.add("the size bound was reached; the remaining items were cut")
            out.append(f"<cut: {len(value) - index} more items>")
            break
        out.append(_walk(item, depth + 1, budget))
        budget.spend(1)
    return out
