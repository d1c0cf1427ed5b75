"""A stage's outputs: the JSON object its container wrote as the termination message.

Outputs are untrusted: they go into the job's status (so they must serialise, and stay small and
shallow), into later stages' pods through templates, and into PostgreSQL. `outputs_of` accepts a
JSON object of at most MAX_OUTPUT_BYTES, nested at most MAX_OUTPUT_DEPTH levels, of valid Unicode
(no lone surrogates, no NUL); anything else that claims to be an object is `InvalidOutputs`, which
fails the attempt with a message naming the cause. Plain text (or JSON that is not an object) is
not outputs at all: it is kept as the attempt's message, as before.
"""

from __future__ import annotations

import json
from typing import Any

from procjob.models.contract import MAX_OUTPUT_BYTES

MAX_OUTPUT_DEPTH = 8


class InvalidOutputs(ValueError):
    """The termination message is a JSON object procjob cannot keep; the message says why."""


def _check(value: Any) -> None:
    """Depth and text checks without recursion (a 4 KiB message can nest 2,000 levels)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_OUTPUT_DEPTH:
            raise InvalidOutputs(f"outputs nested deeper than {MAX_OUTPUT_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidOutputs("outputs contain a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOutputs("outputs are not valid UTF-8 (a lone surrogate escape such as \\ud800)") from None


def outputs_of(message: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(outputs, note): the outputs of a termination message, or None and why not (a note, not a
    failure). Raises InvalidOutputs for an object that cannot be kept."""
    if not message:
        return None, None
    if len(message.encode("utf-8", "replace")) > MAX_OUTPUT_BYTES:
        return None, f"termination message over {MAX_OUTPUT_BYTES} bytes: outputs not kept"
    if not message.lstrip().startswith("{"):
        return None, None  # plain text: kept as the attempt's message, not outputs
    try:
        value = json.loads(message)
    except RecursionError:
        raise InvalidOutputs(f"outputs nested deeper than {MAX_OUTPUT_DEPTH} levels") from None
    except ValueError:
        return None, None  # text that merely starts with a brace
    _check(value)  # JSON text that starts with a brace is an object
    return value, None
