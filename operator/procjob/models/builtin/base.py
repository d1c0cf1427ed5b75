"""What a built-in stage's descriptor holds, and the parameter checks built-in stages share.

The descriptor is data, not code: `runner` names the worker function as ``"module:function"`` so
that the operator, which reads descriptors, never imports the worker (import-linter forbids it),
and the worker imports a stage's module only when that stage runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationError

from procjob.models.base import ApiModel

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024  # S3's limit on an object key


class Setting(StrEnum):
    """Operator settings a built-in stage may need in its pod (the pod builder turns each into env)."""

    S3 = "s3"  # endpoint, region, addressing style and credentials of the platform's S3
    FETCH_ALLOWED_NETWORKS = "fetchAllowedNetworks"  # the SSRF guard's exceptions (CIDRs)


class StageParams(ApiModel):
    """Base of every `with:` model: camelCase keys, frozen, a misspelt key is an error naming it."""


@dataclass(frozen=True, slots=True)
class BuiltinStage:
    """One built-in stage, as validation, the pod builder and the worker see it."""

    name: str  # the value of `uses:` and the argument of `procjob worker`
    summary: str  # one line for usage messages
    params: type[StageParams]  # the `with:` object; string values may hold {{ templates }}
    runner: str  # "module:function" of the worker's run function (params, env) -> outputs
    settings: frozenset[Setting]  # operator settings passed to its pod, and no others
    outputs: tuple[str, ...]  # keys of the outputs object it writes on success


@dataclass(frozen=True, slots=True)
class ParamProblem:
    """One failing `with:` field: its path inside `with`, pydantic's error type and a message."""

    path: tuple[str | int, ...]
    kind: str
    message: str

    @property
    def field(self) -> str:
        """The path as text: ``url``, ``headers.Host``, ``contentTypes[0]``; empty for the whole object."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text


def problems_of(exc: ValidationError) -> list[ParamProblem]:
    """The failing fields of a validation error, naming fields but never quoting their values (a
    URL may carry a signature in its query string and a header may carry a token)."""
    return [
        ParamProblem(tuple(error["loc"]), error["type"], error["msg"].removeprefix("Value error, "))
        for error in exc.errors(include_input=False, include_url=False)
    ]


def param_problems(model: type[StageParams], raw: Mapping[str, object]) -> list[ParamProblem]:
    """Every reason `raw` is not a valid `model` (none: it is valid)."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        return problems_of(exc)
    return []


def _bucket(value: str) -> str:
    if not _BUCKET.match(value):
        raise ValueError("not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    return value


def _key(value: str) -> str:
    if len(value.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"an S3 key is at most {MAX_KEY_BYTES} bytes")
    return value


Bucket = Annotated[str, AfterValidator(_bucket)]
ObjectKey = Annotated[str, Field(min_length=1), AfterValidator(_key)]
