"""A built-in stage's `with:` parameters, validated before any I/O, failures as InvalidParams.

The models live with the stage descriptors in `procjob.models.builtin` (the operator validates
the same models before a pod runs); here they are parsed inside the pod, after templating, and
what only the worker can check is added: the URL as the HTTP client parses it, and the header
variables of `headersFromEnv`. Messages name the field but never echo its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import httpx
from pydantic import ValidationError

from procjob.models.builtin.base import StageParams, problems_of
from procjob.models.builtin.fetch import FetchParams, has_line_break
from procjob.worker.errors import InvalidParams

Params = TypeVar("Params", bound=StageParams)


def parse_params(model: type[Params], raw: Mapping[str, object]) -> Params:
    """`raw` as a `model`, or InvalidParams naming each failing field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(f"{problem.field or 'parameters'}: {problem.message}" for problem in problems_of(exc))
        raise InvalidParams(f"invalid parameters: {fields}") from None


def parse_fetch_params(raw: Mapping[str, object]) -> FetchParams:
    params = parse_params(FetchParams, raw)
    try:
        url = httpx.URL(params.url)
    except (httpx.InvalidURL, TypeError):
        raise InvalidParams("invalid parameters: url: not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo:
        raise InvalidParams("invalid parameters: url: not an http(s) URL with a host and without credentials")
    return params


def resolved_headers(params: FetchParams, env: Mapping[str, str]) -> dict[str, str]:
    """`headers` merged with `headersFromEnv` looked up in `env` (which wins on a clash)."""
    merged = dict(params.headers)
    for name, variable in params.headers_from_env.items():
        header_value = env.get(variable)
        if header_value is None:
            raise InvalidParams(f"headersFromEnv: header {name!r} needs ${variable}, which is not set")
        if has_line_break(header_value):
            raise InvalidParams(f"headersFromEnv: ${variable} (header {name!r}) contains a line break")
        merged = {key: value for key, value in merged.items() if key.lower() != name.lower()}
        merged[name] = header_value
    return merged
