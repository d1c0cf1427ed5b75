"""The built-in `checksum` stage: read an S3 object as a stream, report its sha256, size and ETag.

The object is never held whole: it is hashed chunk by chunk as it arrives. With `expectSha256` the
stage is a gate: another digest is a permanent failure (ChecksumMismatch, exit 2), so the default
retry rules fail the job instead of reading the same bytes again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

from procjob.models.builtin.checksum import ChecksumParams
from procjob.models.builtin.fetch import MIB
from procjob.worker import s3
from procjob.worker.errors import ChecksumMismatch
from procjob.worker.log import event
from procjob.worker.params import parse_params

CHUNK_SIZE = MIB  # one read from the response body; the only buffer the stage holds


def run(raw_params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    """The stage entry point: validated parameters in, outputs out, a WorkerError on failure."""
    params = parse_params(ChecksumParams, raw_params)
    storage = s3.client_from_env(env)
    event("checksum.start", bucket=params.bucket, key=params.key, expected=params.expect_sha256 is not None)
    started = time.monotonic()
    digest = hashlib.sha256()
    size = 0
    with s3.reading(storage, params.bucket, params.key, CHUNK_SIZE) as (etag, chunks):
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
    sha256 = digest.hexdigest()
    event(
        "checksum.read", bucket=params.bucket, key=params.key, size=size, seconds=round(time.monotonic() - started, 3)
    )
    if params.expect_sha256 is not None and sha256 != params.expect_sha256:
        raise ChecksumMismatch(
            f"s3://{params.bucket}/{params.key}: sha256 {sha256} is not the expected {params.expect_sha256}"
        )
    return {"bucket": params.bucket, "key": params.key, "size": size, "sha256": sha256, "etag": etag}
