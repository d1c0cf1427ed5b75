"""Idempotent fetch: the source's identity stored on the object, and the check that reuses it.

A fetch attempt whose upload completed but whose pod died before reporting is retried; a second
job may fetch the same URL into the same key. Neither should download again. So the fetch writes,
as user metadata (``x-amz-meta-*``) on the object it uploads:

    procjob-source-url-sha256      the sha256 of the URL as given: never the URL itself, whose
                                   query may be a signature
    procjob-source-etag            the GET response's ETag, when it is a strong one
    procjob-source-last-modified   the GET response's Last-Modified
    procjob-sha256                 the body's sha256, on an object written with one PutObject only:
                                   a multipart upload's metadata is fixed before the body is read

After the HEAD of the source, `reused_outputs` HEADs the target object. It is reused when the URL's
digest is the same, the source's validator (its strong ETag, else its Last-Modified) equals the
stored one, and the source's Content-Length equals the object's size. Without a validator, without
a Content-Length, or without a HEAD, the source has no identity to compare and is downloaded. The
outputs are those of a fresh download; a multipart object's sha256 is computed by reading it from
S3 (not from the source). S3 refusing the check (a 403 for HeadObject, say) means "download";
S3 unavailable is a transient failure at once, as the upload would be.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from procjob.models.builtin.fetch import MIB, FetchParams
from procjob.worker import s3
from procjob.worker.errors import StorageRejected
from procjob.worker.log import event

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

META_URL_SHA256 = "procjob-source-url-sha256"
META_ETAG = "procjob-source-etag"
META_LAST_MODIFIED = "procjob-source-last-modified"
META_SHA256 = "procjob-sha256"
MAX_VALUE_LENGTH = 256  # S3 allows 2 KiB of user metadata in all
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
READ_CHUNK = MIB


def _header_value(value: str | None) -> str | None:
    """A header value fit to store and compare: printable ASCII, bounded; else none at all."""
    value = (value or "").strip()
    if not value or len(value) > MAX_VALUE_LENGTH or not _PRINTABLE_ASCII.match(value):
        return None
    return value


@dataclass(frozen=True)
class SourceIdentity:
    """What says that two responses for one URL carry the same bytes."""

    url_sha256: str
    etag: str | None  # strong ETags only: a weak one promises equivalence, not the same bytes
    last_modified: str | None
    length: int | None

    @classmethod
    def of(cls, url: str, headers: httpx.Headers, length: int | None) -> SourceIdentity:
        etag = _header_value(headers.get("etag"))
        return cls(
            url_sha256=hashlib.sha256(url.encode()).hexdigest(),
            etag=None if etag is None or etag.startswith("W/") else etag,
            last_modified=_header_value(headers.get("last-modified")),
            length=length,
        )

    def metadata(self) -> dict[str, str]:
        """The object metadata that records this identity."""
        recorded = {META_URL_SHA256: self.url_sha256, META_ETAG: self.etag, META_LAST_MODIFIED: self.last_modified}
        return {name: value for name, value in recorded.items() if value is not None}


def unidentified(source: SourceIdentity) -> str | None:
    """Why the source has no identity to compare (known before any S3 request), or None."""
    if source.etag is None and source.last_modified is None:
        return "the source gives neither a strong ETag nor Last-Modified"
    if source.length is None:
        return "the source gives no Content-Length"
    return None


def mismatch(source: SourceIdentity, stored: s3.StoredObject) -> str | None:
    """Why `stored` may not hold the source's bytes, or None when it does."""
    if stored.metadata.get(META_URL_SHA256) != source.url_sha256:
        return "the object was not fetched from this URL"
    if source.etag is not None:
        if stored.metadata.get(META_ETAG) != source.etag:
            return "the source's ETag is not the stored one"
    elif stored.metadata.get(META_LAST_MODIFIED) != source.last_modified:
        return "the source's Last-Modified is not the stored one"
    if stored.size != source.length:
        return "the object's size is not the source's Content-Length"
    return None


def stored_sha256(storage: S3Client, bucket: str, key: str, stored: s3.StoredObject) -> str | None:
    """The object's sha256: from its metadata, else read from S3; None if it changed meanwhile."""
    recorded = stored.metadata.get(META_SHA256, "")
    if _SHA256.match(recorded):
        return recorded
    digest = hashlib.sha256()
    size = 0
    with s3.reading(storage, bucket, key, READ_CHUNK) as (etag, chunks):
        if etag != stored.etag:
            return None
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest() if size == stored.size else None


def reused_outputs(storage: S3Client, params: FetchParams, source: SourceIdentity | None) -> dict[str, object] | None:
    """The outputs of the object already at the key if it holds the source's bytes, else None."""
    try:
        found = _reusable(storage, params, source)
    except StorageRejected as exc:
        found = f"the check failed: {exc}"
    if isinstance(found, str):
        event("fetch.not_reused", bucket=params.bucket, key=params.key, reason=found)
        return None
    stored, sha256 = found
    event("fetch.reused", bucket=params.bucket, key=params.key, size=stored.size, etag=stored.etag)
    return {
        "bucket": params.bucket,
        "key": params.key,
        "size": stored.size,
        "sha256": sha256,
        "contentType": stored.content_type,
        "etag": stored.etag,
    }


def _reusable(
    storage: S3Client, params: FetchParams, source: SourceIdentity | None
) -> str | tuple[s3.StoredObject, str]:
    """The object at the key and its sha256 when it holds the source's bytes, else why not."""
    if source is None:
        return "the source answered no HEAD"
    why = unidentified(source)
    if why is not None:
        return why
    stored = s3.head(storage, params.bucket, params.key)
    if stored is None:
        return "no object at the key"
    why = mismatch(source, stored)
    if why is not None:
        return why
    sha256 = stored_sha256(storage, params.bucket, params.key, stored)
    if sha256 is None:
        return "the object changed while it was read"
    return stored, sha256
