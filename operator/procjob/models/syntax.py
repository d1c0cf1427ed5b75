"""Kubernetes syntax the spec must respect, each rule written twice: as CEL for the API server and
as a Python check for the operator, with the same message.

The API server refuses a bad object before it is stored, naming the field; the operator parses
with the same pydantic models, so an object stored under an older, looser CRD still becomes an
error naming the field (InvalidSpec) instead of a pod the Pod API refuses (422) on every attempt.

Every check here is iterative and bounded: a `with:` nested thousands of levels deep, a huge
integer or an odd key is a message, never a RecursionError or a slow parse.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation, localcontext
from typing import Annotated, Any

from pydantic import Field

from procjob.models.contract import BUILTIN_ENV_PREFIXES, ENV_PREFIX

# A label or annotation key (and a resource name): an optional DNS-subdomain prefix of at most 253
# characters and '/', then a name of at most 63 characters. RE2 and Python read this regex alike.
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
QUALIFIED_NAME = rf"^({DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
MAX_KEY = 253 + 1 + 63
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"  # at most 63 characters (maxLength)
# The Kubernetes quantity syntax without a sign (requests and limits are never negative). The
# exponent has at most 3 digits: a longer one (valid Kubernetes syntax) stalls the API server's CEL
# quantity() parser until the request times out, and no real resource needs 10^1000.
QUANTITY = r"^([0-9]+([.][0-9]*)?|[.][0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]{1,3})?$"
RESERVED_METADATA_PREFIX = "procjob.dev/"
RESERVED_ENV_PREFIX = ENV_PREFIX  # the operator's contract with worker pods (models.contract)
USES_RESERVED_ENV_PREFIXES = BUILTIN_ENV_PREFIXES  # AWS_* configure a built-in stage's S3 client
ANNOTATIONS_MAX_BYTES = 64 * 1024  # keys and values of one stage's annotations, well below the Pod's 256 KiB
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")

MAX_WITH_KEYS = 32  # keys of `with`, and of an object inside it
MAX_WITH_ITEMS = 64  # items of a list inside `with`
MAX_WITH_STRING = 4096
MAX_WITH_KEY = 253
MAX_WITH_BYTES = 16 * 1024  # `with` as compact JSON (UTF-8)
WITH_SHAPE = "a parameter may be a scalar, a list of scalars, or an object whose values are scalars or lists of scalars"
INT64 = 2**63

_QUALIFIED = re.compile(QUALIFIED_NAME)
_QUANTITY = re.compile(QUANTITY)
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{f"{p}i": Decimal(1024 ** (i + 1)) for i, p in enumerate("KMGTPE")},
}


def key_problem(key: str) -> str | None:
    """Why `key` is not a Kubernetes qualified name (label/annotation key), or None."""
    if len(key) > MAX_KEY or not _QUALIFIED.match(key) or key.find("/") > 253:
        return (
            f"{key[:80]!r} is not a qualified name: an optional DNS subdomain prefix (<= 253) and '/', then "
            "<= 63 characters of [A-Za-z0-9-_.] starting and ending with a letter or digit"
        )
    return None


def cel_keys_are_qualified(field: str) -> str:
    """CEL on an object with a string map `field`: every key is a qualified name."""
    return f"!has(self.{field}) || self.{field}.all(k, k.matches('{QUALIFIED_NAME}') && k.indexOf('/') <= 253)"


RESERVED_LABELS = f"labels under {RESERVED_METADATA_PREFIX} are reserved for the operator"
RESERVED_ANNOTATIONS = f"annotations under {RESERVED_METADATA_PREFIX} are reserved for the operator"
KEYS_QUALIFIED = "keys must be qualified names ([prefix/]name)"
ANNOTATIONS_TOO_BIG = f"annotations must total at most {ANNOTATIONS_MAX_BYTES} characters (keys and values)"


def metadata_problem(labels: bool, values: Mapping[str, str]) -> str | None:
    """Why a stage's pod labels (or annotations) are refused, or None; `metadata_rules` in Python."""
    for key in values:
        problem = key_problem(key)
        if problem:
            return f"{'label' if labels else 'annotation'} {KEYS_QUALIFIED}: {problem}"
        if key.startswith(RESERVED_METADATA_PREFIX):
            return RESERVED_LABELS if labels else RESERVED_ANNOTATIONS
    # CEL's string size() counts code points, as len() does.
    if not labels and sum(len(k) + len(v) for k, v in values.items()) > ANNOTATIONS_MAX_BYTES:
        return ANNOTATIONS_TOO_BIG
    return None


def metadata_rules() -> list[dict[str, str]]:
    """CEL on PodMetadata: qualified keys, procjob.dev/ reserved, at most 64 Ki characters of annotations."""
    rules = []
    for field, reserved in (("labels", RESERVED_LABELS), ("annotations", RESERVED_ANNOTATIONS)):
        rules.append(
            {
                "rule": cel_keys_are_qualified(field),
                "message": f"{field[:-1]} {KEYS_QUALIFIED}",
                "fieldPath": f".{field}",
            }
        )
        rules.append(
            {
                "rule": f"!has(self.{field}) || self.{field}.all(k, !k.startsWith('{RESERVED_METADATA_PREFIX}'))",
                "message": reserved,
                "fieldPath": f".{field}",
            }
        )
    rules.append(
        {
            "rule": "!has(self.annotations) || "
            f"self.annotations.map(k, k.size() + self.annotations[k].size()).sum() <= {ANNOTATIONS_MAX_BYTES}",
            "message": ANNOTATIONS_TOO_BIG,
            "fieldPath": ".annotations",
        }
    )
    return rules


USES_ENV_RESERVED = "env names starting with AWS_ or PROCJOB_ are reserved on built-in (uses) stages"
USES_ENV_FROM = "envFrom on a built-in (uses) stage needs a prefix that cannot make AWS_ or PROCJOB_ names"


def uses_env_rules() -> list[dict[str, str]]:
    """CEL on a Stage: a built-in stage's env names and envFrom prefixes stay clear of AWS_ and PROCJOB_
    (Stage._uses_env says the same in Python)."""
    names = " && ".join(f"!e.name.startsWith('{p}')" for p in USES_RESERVED_ENV_PREFIXES)
    prefixes = " && ".join(
        f"!'{p}'.startsWith(has(f.prefix) ? f.prefix : '') && !(has(f.prefix) && f.prefix.startsWith('{p}'))"
        for p in USES_RESERVED_ENV_PREFIXES
    )
    return [
        {
            "rule": f"!has(self.uses) || !has(self.env) || self.env.all(e, {names})",
            "message": USES_ENV_RESERVED,
            "fieldPath": ".env",
        },
        {
            "rule": f"!has(self.uses) || !has(self.envFrom) || self.envFrom.all(f, {prefixes})",
            "message": USES_ENV_FROM,
            "fieldPath": ".envFrom",
        },
    ]


def quantity_value(text: str) -> Decimal | None:
    """The exact value of a Kubernetes quantity (no sign), or None when it is not one."""
    if len(text) > 64 or not _QUANTITY.match(text):
        return None
    number = text.rstrip("KMGTPEinumk")
    suffix = text[len(number) :]
    if suffix and suffix not in _SUFFIX:  # e.g. "1Ki" is fine, "1mi" is not
        return None
    with localcontext() as ctx:
        ctx.prec = 200  # exact: at most 64 digits times at most 2^60
        try:
            return Decimal(number) * _SUFFIX[suffix]
        except InvalidOperation:
            return None


RESOURCE_NAMES = "resource names must be cpu, memory, ephemeral-storage, hugepages-<size> or domain/name"
EXTENDED_INTEGER = "extended resources (domain/name) take whole numbers"
HUGEPAGES_MULTIPLE = "hugepages-<size>: the amount must be a whole multiple of the page size"
HUGEPAGES_NEED_CPU_OR_MEMORY = "hugepages need a cpu or memory request or limit"
EQUAL_LIMIT = "a request of hugepages or an extended resource needs an equal limit"
REQUESTS_FIT = "requests must not exceed limits"
HUGEPAGES = "hugepages-"


def is_extended(name: str) -> bool:
    """An extended resource (example.com/gpu): not Kubernetes' own, counted in whole units."""
    return "/" in name and "kubernetes.io/" not in name


def needs_equal_limit(name: str) -> bool:
    """Hugepages and extended resources cannot be overcommitted: a request needs an equal limit."""
    return name.startswith(HUGEPAGES) or is_extended(name)


def resource_problem(name: str, amount: str) -> str | None:
    """Why the Pod API refuses `name: amount` in a container's requests or limits, or None."""
    if key_problem(name) is not None:
        return f"{RESOURCE_NAMES}: {name[:80]!r} is not a qualified name"
    if "/" not in name and name not in STANDARD_RESOURCES and not name.startswith(HUGEPAGES):
        return f"{RESOURCE_NAMES}: {name!r}"
    if name.startswith("requests."):
        return f"{RESOURCE_NAMES}: {name!r} (the requests. prefix is the quota's)"
    value = quantity_value(amount)
    if value is None:
        return None  # the pattern of the value names it
    if is_extended(name) and (value != value.to_integral_value() or value >= INT64):
        return f"{EXTENDED_INTEGER}: {name} is {amount}"
    if name.startswith(HUGEPAGES):
        page = quantity_value(name.removeprefix(HUGEPAGES))
        if page is None or page <= 0 or page != page.to_integral_value() or value % page != 0:
            return f"{HUGEPAGES_MULTIPLE}: {name} is {amount}"
    return None


def resource_rules(field: str) -> list[dict[str, str]]:
    """CEL on Resources saying what `resource_problem` says about the map `field` (requests or limits)."""
    standard = ", ".join(f"'{name}'" for name in STANDARD_RESOURCES)
    value, page = f"quantity(self.{field}[k])", "quantity(k.substring(10))"
    rules = {
        RESOURCE_NAMES: f"k.matches('{QUALIFIED_NAME}') && k.indexOf('/') <= 253 && !k.startsWith('requests.') && "
        f"(k.contains('/') || k in [{standard}] || k.startsWith('{HUGEPAGES}'))",
        "every value must be a Kubernetes quantity": f"isQuantity(self.{field}[k])",
        EXTENDED_INTEGER: f"!(k.contains('/') && !k.contains('kubernetes.io/')) || !isQuantity(self.{field}[k]) || "
        f"{value}.isInteger()",
        HUGEPAGES_MULTIPLE: f"!k.startsWith('{HUGEPAGES}') || !isQuantity(self.{field}[k]) || "
        f"(isQuantity(k.substring(10)) && {page}.isInteger() && {page}.asInteger() > 0 && {value}.isInteger() && "
        f"{value}.asInteger() % {page}.asInteger() == 0)",
    }
    return [
        {"rule": f"!has(self.{field}) || self.{field}.all(k, {rule})", "message": message, "fieldPath": f".{field}"}
        for message, rule in rules.items()
    ]


def requests_problem(requests: Mapping[str, str], limits: Mapping[str, str]) -> str | None:
    """Why these requests and limits together make a Pod the API server refuses, or None."""
    names = {*requests, *limits}
    if any(n.startswith(HUGEPAGES) for n in names) and not names & {"cpu", "memory"}:
        return HUGEPAGES_NEED_CPU_OR_MEMORY
    for name, request in requests.items():
        wanted, limit = quantity_value(request), limits.get(name)
        cap = quantity_value(limit) if limit is not None else None
        if needs_equal_limit(name) and (cap is None or wanted != cap):
            return f"{EQUAL_LIMIT}: {name}"
        if wanted is not None and cap is not None and wanted > cap:
            return f"{REQUESTS_FIT}: {name} requests {request}, limits {limit}"
    return None


_CMP = "quantity(self.requests[k]).compareTo(quantity(self.limits[k]))"
_BOTH = "isQuantity(self.requests[k]) && isQuantity(self.limits[k])"


def cel_requests_fit_limits() -> list[dict[str, str]]:
    """CEL on Resources mirroring `requests_problem` (guarded: quantity() of a non-quantity errors)."""
    extended = "(k.startsWith('hugepages-') || (k.contains('/') && !k.contains('kubernetes.io/')))"
    hugepages = " || ".join(
        f"(has(self.{f}) && self.{f}.exists(k, k.startsWith('{HUGEPAGES}')))" for f in ("requests", "limits")
    )
    cpu_or_memory = " || ".join(
        f"(has(self.{f}) && ('cpu' in self.{f} || 'memory' in self.{f}))" for f in ("requests", "limits")
    )
    return [
        {"rule": f"!({hugepages}) || {cpu_or_memory}", "message": HUGEPAGES_NEED_CPU_OR_MEMORY},
        {
            "rule": "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
            f"!({_BOTH}) || {_CMP} <= 0)",
            "message": REQUESTS_FIT,
        },
        {
            "rule": f"!has(self.requests) || self.requests.all(k, !{extended} || (has(self.limits) && "
            f"k in self.limits && (!({_BOTH}) || {_CMP} == 0)))",
            "message": EQUAL_LIMIT,
        },
    ]


def scalar_problem(value: object, max_string: int = MAX_WITH_STRING) -> str | None:
    """What makes a JSON scalar unfit for a spec value (None: it fits); strings up to `max_string`."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -INT64 <= value < INT64 else "an integer outside the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number that is not finite"
    if isinstance(value, str):
        if len(value) > max_string:
            return f"a string longer than {max_string} characters"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "a string that is not valid UTF-8"
        return None
    return f"a {type(value).__name__}, which is not a JSON value"


def _shape_problem(path: str, value: object, level: int) -> tuple[str | None, list[tuple[str, object, int]]]:
    """One node of the `with` walk: its problem, or the children to look at (levels as in the CRD)."""
    if isinstance(value, Mapping):
        if value and level >= 2:
            return f"{path} is nested too deep: {WITH_SHAPE}", []
        if len(value) > MAX_WITH_KEYS:
            return f"{path} has more than {MAX_WITH_KEYS} keys", []
        for key in value:
            if not isinstance(key, str) or len(key) > MAX_WITH_KEY:
                return f"{path} has a key that is not a string of at most {MAX_WITH_KEY} characters", []
        return None, [(f"{path}.{key}", item, level + 1) for key, item in value.items()]
    if isinstance(value, list):
        if value and level >= 3:
            return f"{path} is nested too deep: {WITH_SHAPE}", []
        if len(value) > MAX_WITH_ITEMS:
            return f"{path} has more than {MAX_WITH_ITEMS} items", []
        return None, [(f"{path}[{i}]", item, 3) for i, item in enumerate(value)]
    problem = scalar_problem(value)
    return (f"{path} is {problem}" if problem else None), []


def with_schema() -> dict[str, Any]:
    """The CRD schema of `with` that says what `with_problem` says, as far as a schema can.

    A value may be a string, number, bool, list or object, so its nodes carry no `type` (allowed
    in a structural schema with x-kubernetes-preserve-unknown-fields); `items`, `additionalProperties`,
    `maxItems`, `maxProperties` and `maxLength` apply to whichever kind the value is. The deepest
    level allows only empty containers, which bounds the depth; CEL cannot see inside such values.
    """
    any_value = {"x-kubernetes-preserve-unknown-fields": True, "maxLength": MAX_WITH_STRING}
    leaf = {**any_value, "maxProperties": 0, "maxItems": 0}
    level2 = {**any_value, "maxProperties": 0, "maxItems": MAX_WITH_ITEMS, "items": leaf}
    level1 = {
        **any_value,
        "maxProperties": MAX_WITH_KEYS,
        "maxItems": MAX_WITH_ITEMS,
        "additionalProperties": level2,
        "items": leaf,
    }
    return {"type": "object", "maxProperties": MAX_WITH_KEYS, "additionalProperties": level1}


def with_problem(params: Mapping[str, Any]) -> str | None:
    """Why a stage's `with` is refused, or None: keys, shape (depth <= 3), string lengths, total size.

    Walked with an explicit stack, so that no input can exhaust the interpreter's recursion limit;
    the JSON size is measured only once the shape is known to be small and shallow.
    """
    if len(params) > MAX_WITH_KEYS:
        return f"more than {MAX_WITH_KEYS} parameters"
    stack: list[tuple[str, object, int]] = []
    for key, value in params.items():
        if not isinstance(key, str) or len(key) > MAX_WITH_KEY:
            return f"a parameter name is not a string of at most {MAX_WITH_KEY} characters"
        stack.append((key, value, 1))
    while stack:
        problem, children = _shape_problem(*stack.pop())
        if problem:
            return problem
        stack.extend(children)
    size = len(json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_WITH_BYTES:
        return f"{size} bytes as JSON, more than {MAX_WITH_BYTES}"
    return None


# Field types and bounds shared by the spec's models (models.spec, models.retry, models.container).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
MAX_STAGES = 32
MAX_RULES = 16
MAX_STAGE_NAME = 40

CEL = "x-kubernetes-validations"
ENV_RESERVED = f"names starting with {RESERVED_ENV_PREFIX} are reserved for the operator"
PREFIX_RESERVED = f"an envFrom prefix starting with {RESERVED_ENV_PREFIX} is reserved for the operator"

# File paths in volumes and mounts: segments other than "." and "..", no empty segment, no trailing "/".
PATH_SEGMENT = r"([^/.][^/]*|[.][^/.][^/]*|[.][.][^/]+)"
RELATIVE_PATH = rf"^{PATH_SEGMENT}(/{PATH_SEGMENT})*$"
ABSOLUTE_PATH = rf"^(/{PATH_SEGMENT})+$"

Str = Annotated[str, Field(max_length=4096)]
# A Secret or ConfigMap name (a DNS subdomain) and a key in it, as the Pod API checks them.
Name = Annotated[str, Field(min_length=1, max_length=253, pattern=f"^{DNS_SUBDOMAIN}$")]
ConfigKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
