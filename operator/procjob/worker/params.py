"""The `with:` parameters of the built-in `fetch` stage, validated before any I/O.

Validation messages name the field but never echo its value: a URL may carry a signature in its
query string and a header may carry a token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from procjob.worker.errors import InvalidParams

MIB = 1024 * 1024
PART_SIZE = 8 * MIB  # S3 multipart part size; also the one buffer the worker holds
MAX_PARTS = 10_000  # S3's limit on parts per upload
DEFAULT_MAX_BYTES = 20 * MIB

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name / media-type token
_MEDIA_CHARS = r"[!#$%&'+.^_`|~0-9a-z-]+"  # a token without '*', which only a whole subtype may be
_MEDIA_RANGE = re.compile(rf"^(\*/\*|{_MEDIA_CHARS}/(\*|{_MEDIA_CHARS}))$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Headers the worker sets itself or that would change how bytes are framed or where they go.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "accept-encoding"}
)


def _check_header_names(names: Mapping[str, str]) -> None:
    for name in names:
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the worker and cannot be given")


class FetchParams(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    url: str
    bucket: str
    key: Annotated[str, Field(min_length=1)]
    max_bytes: Annotated[int, Field(gt=0, le=PART_SIZE * MAX_PARTS)] = DEFAULT_MAX_BYTES
    content_types: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["image/*"])
    headers: dict[str, str] = Field(default_factory=dict)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_redirects: Annotated[int, Field(ge=0, le=20)] = 5

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError):
            raise ValueError("not a valid URL") from None
        if url.scheme not in ("http", "https"):
            raise ValueError("only http and https URLs can be fetched")
        if not url.host:
            raise ValueError("the URL has no host")
        if url.userinfo:
            raise ValueError("credentials in the URL are not accepted; use headersFromEnv")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.match(value):
            raise ValueError("not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if len(value.encode()) > 1024:
            raise ValueError("an S3 key is at most 1024 bytes")
        return value

    @field_validator("content_types")
    @classmethod
    def _media_ranges(cls, value: list[str]) -> list[str]:
        ranges = [item.strip().lower() for item in value]
        for item in ranges:
            if not _MEDIA_RANGE.match(item):
                raise ValueError(f"{item!r} is not a media range like 'image/png', 'image/*' or '*/*'")
        return ranges

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        _check_header_names(value)
        for name, header_value in value.items():
            if any(ch in header_value for ch in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break or NUL")
        return value

    @field_validator("headers_from_env")
    @classmethod
    def _headers_from_env(cls, value: dict[str, str]) -> dict[str, str]:
        _check_header_names(value)
        for name, variable in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", variable):
                raise ValueError(f"header {name!r}: {variable!r} is not an environment variable name")
        return value

    def resolved_headers(self, env: Mapping[str, str]) -> dict[str, str]:
        """`headers` merged with `headersFromEnv` looked up in `env` (which wins on a clash)."""
        merged = dict(self.headers)
        for name, variable in self.headers_from_env.items():
            header_value = env.get(variable)
            if header_value is None:
                raise InvalidParams(f"headersFromEnv: header {name!r} needs ${variable}, which is not set")
            if any(ch in header_value for ch in "\r\n\0"):
                raise InvalidParams(f"headersFromEnv: ${variable} (header {name!r}) contains a line break")
            merged = {key: value for key, value in merged.items() if key.lower() != name.lower()}
            merged[name] = header_value
        return merged


def validation_message(exc: ValidationError) -> str:
    """One line naming each failing field, without the offending values."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "parameters"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}")
    return "invalid parameters: " + "; ".join(problems)


def parse_fetch_params(raw: Mapping[str, object]) -> FetchParams:
    try:
        return FetchParams.model_validate(raw)
    except ValidationError as exc:
        raise InvalidParams(validation_message(exc)) from None
