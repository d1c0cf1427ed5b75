"""The built-in `fetch` stage: a URL into S3 (run by `procjob.worker.fetch`).

The parameters are checked here without a network library (the models layer imports none): the
worker parses the URL again with the HTTP client it sends it with (`procjob.worker.params`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from procjob.models.builtin.base import Bucket, BuiltinStage, ObjectKey, Setting, StageParams

MIB = 1024 * 1024
PART_SIZE = 8 * MIB  # S3 multipart part size; also the one buffer the worker holds
MAX_PARTS = 10_000  # S3's limit on parts per upload
DEFAULT_MAX_BYTES = 20 * MIB

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name / media-type token
_MEDIA_CHARS = r"[!#$%&'+.^_`|~0-9a-z-]+"  # a token without '*', which only a whole subtype may be
_MEDIA_RANGE = re.compile(rf"^(\*/\*|{_MEDIA_CHARS}/(\*|{_MEDIA_CHARS}))$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Headers the worker sets itself or that would change how bytes are framed or where they go.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "accept-encoding"}
)


def check_header_names(names: Mapping[str, str]) -> None:
    for name in names:
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the worker and cannot be given")


def has_line_break(value: str) -> bool:
    """Whether a header value would split the request (CR, LF) or end a C string (NUL)."""
    return any(ch in value for ch in "\r\n\0")


class FetchParams(StageParams):
    url: str
    bucket: Bucket
    key: ObjectKey
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
            url = urlsplit(value)
            host = url.hostname
        except ValueError:
            raise ValueError("not a valid URL") from None
        if url.scheme.lower() not in ("http", "https"):
            raise ValueError("only http and https URLs can be fetched")
        if not host:
            raise ValueError("the URL has no host")
        if "@" in url.netloc:
            raise ValueError("credentials in the URL are not accepted; use headersFromEnv")
        return value

    @field_validator("content_types")
    @classmethod
    def _media_ranges(cls, value: list[str]) -> list[str]:
        ranges = [item.strip().lower() for item in value]
        for item in ranges:
            if not _MEDIA_RANGE.match(item):
                raise ValueError(f"{item!r} is not a media range like 'image/png', 'image/*' or '*/*'")
        return ranges

    @field_validator("headers", "headers_from_env")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        check_header_names(value)
        return value

    @field_validator("headers")
    @classmethod
    def _header_values(cls, value: dict[str, str]) -> dict[str, str]:
        broken = [name for name, header_value in value.items() if has_line_break(header_value)]
        if broken:
            raise ValueError(f"the value of header {broken[0]!r} contains a line break or NUL")
        return value

    @field_validator("headers_from_env")
    @classmethod
    def _header_variables(cls, value: dict[str, str]) -> dict[str, str]:
        for name, variable in value.items():
            if not _ENV_NAME.match(variable):
                raise ValueError(f"header {name!r}: {variable!r} is not an environment variable name")
        return value


FETCH = BuiltinStage(
    name="fetch",
    summary="check a URL with HEAD, then stream its body into S3",
    params=FetchParams,
    runner="procjob.worker.fetch:run",
    settings=frozenset({Setting.S3, Setting.FETCH_ALLOWED_NETWORKS}),
    outputs=("bucket", "key", "size", "sha256", "contentType", "etag"),
)
