"""Fan-out: `stages[].forEach`, `parallelism` and `failurePolicy`, as the schema checks them.

A stage with `forEach` runs once per item: each item is its own chain of attempts (its own pods,
retries and backoff), with `{{ item }}` / `{{ item.FIELD }}` in its templates. `forEach` is a literal
list, or a template naming a list output of an upstream stage (`"{{ stages.list.outputs.keys }}"`).
An item is a scalar (string, number, boolean, null) or an object of at most MAX_ITEM_KEYS scalars.

Bounds (the status must stay small whatever a job says; see models.status.FanOutStatus): at most
MAX_ITEMS items per stage, MAX_FANOUT_STAGES fanned-out stages per job, `parallelism` at most
MAX_PARALLELISM. The schema bounds forEach's shape (for_each_schema) and pydantic checks the same
with the same words (for_each_problem). CEL cannot see forEach at all (a field without a type is not
declared to CEL), so "parallelism and failurePolicy only with forEach" and "at most 8 fanned-out
stages" are the operator's checks (the spec model's validators: InvalidSpec naming the field, before
any pod); a list read from an upstream output at run time is checked by the operator alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import Field

from procjob.models.base import ApiModel
from procjob.models.syntax import scalar_problem

MAX_ITEMS = 10_000  # items of one fanned-out stage
MAX_ITEM_KEYS = 16  # keys of an object item
MAX_ITEM_STRING = 1024  # characters of a string in an item
MAX_ITEM_BYTES = 16 * 1024  # one item as compact JSON
MAX_PARALLELISM = 500
MAX_FANOUT_STAGES = 4  # stages with forEach in a job (stages and finally)
MAX_IN_FLIGHT = 500  # items in flight in one job, all its fanned-out stages together (their status entries)
MAX_FANOUT_OUTPUT_BYTES = 32 * 1024  # a fanned-out stage's items' outputs kept in its status, as JSON
MAX_ITEM_MESSAGE = 256  # characters of an item attempt's message kept in the status (the audit has it whole)
ITEM_SHAPE = "an item is a string, number, boolean, null, or an object of at most 16 such values"

# `forEach` as a template: exactly one reference to an upstream stage's output, nothing around it.
FOR_EACH_REF = r"^\{\{ *stages\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.outputs\.([A-Za-z0-9_-]+) *\}\}$"
_FOR_EACH_REF = re.compile(FOR_EACH_REF)
FOR_EACH_TEXT = "forEach is a list of items or a template naming an upstream list output: {{ stages.NAME.outputs.KEY }}"
FANOUT_FIELDS = "parallelism and failurePolicy apply to stages with forEach"
TOO_MANY_FANOUTS = f"at most {MAX_FANOUT_STAGES} stages (of stages and finally) may have forEach"


class FailureMode(StrEnum):
    """When a fanned-out stage fails because of its items."""

    FAIL_FAST = "FailFast"  # as soon as more items have failed than toleratedFailures (the others stop)
    ALL_ITEMS = "AllItems"  # after every item has ended, if more failed than toleratedFailures


class FailurePolicy(ApiModel):
    """How many items may fail for good (after their retries) before the stage fails, and when it does."""

    mode: FailureMode = Field(
        default=FailureMode.FAIL_FAST,
        description="FailFast: the stage fails, and its running items stop, as soon as more items have failed "
        "than toleratedFailures. AllItems: every item runs to its end first.",
    )
    tolerated_failures: int = Field(
        default=0,
        ge=0,
        le=MAX_ITEMS,
        description="Items that may fail for good while the stage still succeeds (their outputs are null).",
    )


def for_each_schema() -> dict[str, Any]:
    """The CRD schema of `forEach`: a list of items or a template string.

    A node without `type` (allowed with x-kubernetes-preserve-unknown-fields) takes value validations
    for whichever kind the value is: `maxItems` and `items` bound a list, `maxLength` and `pattern` a
    string, `maxProperties: 0` refuses an object. An item's own node bounds it the same way: a string,
    or an object of scalars (its values' nodes refuse lists and objects). Numbers and booleans pass the
    schema; what it cannot say (a null inside an object is fine, a float must be finite) the operator
    checks (for_each_problem)."""
    any_value = {"x-kubernetes-preserve-unknown-fields": True, "maxLength": MAX_ITEM_STRING}
    leaf = {**any_value, "maxProperties": 0, "maxItems": 0}
    item = {**any_value, "maxProperties": MAX_ITEM_KEYS, "additionalProperties": leaf, "maxItems": 0}
    return {
        "x-kubernetes-preserve-unknown-fields": True,
        "maxLength": 256,
        "pattern": FOR_EACH_REF,
        "maxItems": MAX_ITEMS,
        "items": item,
        "maxProperties": 0,
    }


def _scalar_problem(value: object) -> str | None:
    if value is not None and not isinstance(value, str | int | float | bool):
        return ITEM_SHAPE
    return scalar_problem(value, MAX_ITEM_STRING)


def item_problem(item: object) -> str | None:
    """Why one item is refused (shape, string lengths, size), or None. Never recursive: items are flat."""
    if isinstance(item, Mapping):
        if len(item) > MAX_ITEM_KEYS:
            return f"an object item has more than {MAX_ITEM_KEYS} keys"
        for key, value in item.items():
            if not isinstance(key, str) or len(key) > 253:
                return "an object item has a key that is not a string of at most 253 characters"
            problem = _scalar_problem(value)
            if problem:
                return f"item field {key!r} is {problem}" if problem != ITEM_SHAPE else ITEM_SHAPE
        size = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
        return f"an item of {size} bytes as JSON, more than {MAX_ITEM_BYTES}" if size > MAX_ITEM_BYTES else None
    if isinstance(item, list):
        return ITEM_SHAPE
    problem = _scalar_problem(item)
    return None if problem is None else (problem if problem == ITEM_SHAPE else f"an item is {problem}")


def items_problem(items: list[Any]) -> str | None:
    """Why a list of items is refused (the literal forEach, or a list read from an upstream output)."""
    if len(items) > MAX_ITEMS:
        return f"{len(items)} items, more than {MAX_ITEMS}"
    for index, item in enumerate(items):
        problem = item_problem(item)
        if problem:
            return f"item {index}: {problem}"
    return None


def for_each_problem(value: object) -> str | None:
    """`for_each_schema` in Python: a list of valid items, or one template naming an upstream output."""
    if isinstance(value, str):
        return None if _FOR_EACH_REF.match(value) and len(value) <= 256 else FOR_EACH_TEXT
    if isinstance(value, list):
        return items_problem(value)
    return FOR_EACH_TEXT


def for_each_source(value: object) -> tuple[str, str] | None:
    """(stage, key) of a template forEach, or None for a literal list."""
    match = _FOR_EACH_REF.match(value) if isinstance(value, str) else None
    return (match.group(1), match.group(3)) if match else None
