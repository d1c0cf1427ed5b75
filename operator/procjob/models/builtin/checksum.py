"""The built-in `checksum` stage: the sha256 of an S3 object, read as a stream (`procjob.worker.checksum`).

A stage after `fetch`, or one that checks an object an earlier stage or another system wrote:
`expectSha256` turns it into a gate (a mismatch is a permanent failure, exit 2).
"""

from __future__ import annotations

import re

from pydantic import field_validator

from procjob.models.builtin.base import Bucket, BuiltinStage, ObjectKey, Setting, StageParams

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ChecksumParams(StageParams):
    bucket: Bucket
    key: ObjectKey
    expect_sha256: str | None = None  # hex; any case, compared in lower case

    @field_validator("expect_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digest = value.strip().lower()
        if not _SHA256.match(digest):
            raise ValueError("a sha256 digest is 64 hexadecimal digits")
        return digest


CHECKSUM = BuiltinStage(
    name="checksum",
    summary="read an S3 object as a stream and report its sha256, size and ETag",
    params=ChecksumParams,
    runner="procjob.worker.checksum:run",
    settings=frozenset({Setting.S3}),
    outputs=("bucket", "key", "size", "sha256", "etag"),
)
