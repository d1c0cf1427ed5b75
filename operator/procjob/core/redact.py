"""Secrets out of stored spec snapshots: what the audit keeps of a job's spec, and shows in history.

The audit database and the history endpoint belong to the platform, and history outlives the job;
a spec may carry a job author's literal credentials. The rule (applied to the spec's API form,
camelCase keys, by `redact_spec`):

- a stage's `with.headers`: every value becomes "<redacted>", the header names are kept (they say
  what was sent; `Authorization: Bearer …` is the usual bearer token);
- a stage's `env`: a literal `value` becomes "<redacted>" when the variable's name looks like a
  credential; `valueFrom` is kept, because it names a Secret or ConfigMap key, not its content;
- anywhere under a stage's `with`: the value under a key that looks like a credential becomes
  "<redacted>", whatever its type (a nested object included);
- `with` content nested deeper than `MAX_DEPTH` levels, which the rule cannot inspect, becomes
  "<redacted: nested too deep>" rather than being kept unread.

A name looks like a credential when it contains, in any case, one of `CREDENTIAL_MARKERS`
(TOKEN, SECRET, PASSWORD, PASSWD, KEY, CREDENTIAL, AUTH, COOKIE, SESSION, PRIVATE). The match is
deliberately broad: a false positive costs a value in the history (e.g. fetch's S3 object `key`
or an `INPUT_KEY` variable are redacted too); a false negative leaks a secret.

Pure: no I/O; the input is not changed (a redacted copy is returned).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
TOO_DEEP = "<redacted: nested too deep>"
MAX_DEPTH = 64
CREDENTIAL_MARKERS: tuple[str, ...] = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH")
CREDENTIAL_MARKERS += ("COOKIE", "SESSION", "PRIVATE")


def looks_like_credential(name: object) -> bool:
    """True when `name` contains one of CREDENTIAL_MARKERS, in any case (non-text names: False)."""
    if not isinstance(name, str):
        return False
    upper = name.upper()
    return any(marker in upper for marker in CREDENTIAL_MARKERS)


def redact_spec(spec_api: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ProcessingJobSpec's API form with credentials replaced (the module's rule).

    Total: any shape is accepted (a hostile or half-parsed document included); what is not a stage
    list is copied as it is.
    """
    stages = spec_api.get("stages")
    if not isinstance(stages, list):
        return dict(spec_api)
    return {**spec_api, "stages": [_stage(s) if isinstance(s, Mapping) else s for s in stages]}


def _stage(stage: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(stage)
    if "env" in out and isinstance(out["env"], list):
        out["env"] = [_env_var(v) if isinstance(v, Mapping) else v for v in out["env"]]
    if "with" in out:
        params = out["with"]
        if isinstance(params, Mapping):
            out["with"] = {key: _param(key, value, 1) for key, value in params.items()}
            if "headers" in params:
                out["with"]["headers"] = _headers(params["headers"])
        elif params is not None:
            out["with"] = _value(params, 1)
    return out


def _env_var(var: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(var)
    if "value" in out and looks_like_credential(out.get("name")):
        out["value"] = REDACTED
    return out


def _headers(headers: object) -> object:
    """Header names kept, values redacted: a {name: value} object or a list of {name, value}."""
    if isinstance(headers, Mapping):
        return dict.fromkeys(headers, REDACTED)
    if isinstance(headers, list):
        return [
            {**item, "value": REDACTED} if isinstance(item, Mapping) and "value" in item else REDACTED
            for item in headers
        ]
    return REDACTED


def _param(key: object, value: object, depth: int) -> object:
    if looks_like_credential(key):
        return REDACTED
    return _value(value, depth + 1)


def _value(value: object, depth: int) -> object:
    if isinstance(value, Mapping | list | tuple) and depth > MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, Mapping):
        return {key: _param(key, item, depth) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_value(item, depth + 1) for item in value]
    return value
