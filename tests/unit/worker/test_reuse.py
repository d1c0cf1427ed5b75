"""When an object at the key counts as the source's bytes: the identity a fetch records and compares."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace

import httpx
import pytest

from procjob.worker.reuse import (
    META_ETAG,
    META_LAST_MODIFIED,
    META_URL_SHA256,
    SourceIdentity,
    mismatch,
    unidentified,
)
from procjob.worker.s3 import StoredObject

URL = "https://images.example.org/a.png?sig=secret"
MONDAY = "Mon, 01 Jun 2026 10:00:00 GMT"


def identity(**headers: str) -> SourceIdentity:
    return SourceIdentity.of(URL, httpx.Headers(headers), 100)


@pytest.mark.parametrize(
    ("headers", "etag", "last_modified"),
    [
        pytest.param({"ETag": '"v1"'}, '"v1"', None, id="a strong ETag is kept as sent"),
        pytest.param({"ETag": ' "v1" ', "Last-Modified": MONDAY}, '"v1"', MONDAY, id="both, trimmed"),
        pytest.param({"ETag": 'W/"v1"', "Last-Modified": MONDAY}, None, MONDAY, id="a weak ETag is not an identity"),
        pytest.param({"ETag": '"' + "x" * 300 + '"'}, None, None, id="an ETag too long to store is none"),
        pytest.param({"ETag": ""}, None, None, id="an empty ETag is none"),
        pytest.param({}, None, None, id="no validator at all"),
    ],
)
def test_the_identity_of_a_response(headers: dict[str, str], etag: str | None, last_modified: str | None) -> None:
    source = identity(**headers)
    assert (source.etag, source.last_modified, source.length) == (etag, last_modified, 100)


def test_a_non_ascii_etag_is_none() -> None:
    headers = httpx.Headers([(b"ETag", '"caf\xe9"'.encode("latin-1"))])
    assert SourceIdentity.of(URL, headers, 1).etag is None


def test_the_url_is_recorded_by_its_digest_only() -> None:
    metadata = identity(ETag='"v1"').metadata()
    assert metadata == {META_URL_SHA256: hashlib.sha256(URL.encode()).hexdigest(), META_ETAG: '"v1"'}
    assert "secret" not in repr(metadata)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        pytest.param(identity(), "the source gives neither a strong ETag nor Last-Modified", id="no validator"),
        pytest.param(replace(identity(ETag='"v1"'), length=None), "the source gives no Content-Length", id="no length"),
        pytest.param(identity(ETag='"v1"'), None, id="a strong ETag is enough to compare"),
        pytest.param(identity(**{"Last-Modified": MONDAY}), None, id="Last-Modified is enough to compare"),
    ],
)
def test_whether_a_source_can_be_compared(source: SourceIdentity, reason: str | None) -> None:
    assert unidentified(source) == reason


def stored(metadata: Mapping[str, str] | None = None, size: int = 100) -> StoredObject:
    return StoredObject(size=size, etag="abc", content_type="image/png", metadata=dict(metadata or {}))


RECORDED = identity(ETag='"v1"', **{"Last-Modified": MONDAY}).metadata()


@pytest.mark.parametrize(
    ("source", "obj", "reason"),
    [
        pytest.param(identity(ETag='"v1"'), stored(RECORDED), None, id="the same URL and ETag"),
        pytest.param(
            identity(**{"Last-Modified": MONDAY}), stored(RECORDED), None, id="the same URL and Last-Modified"
        ),
        pytest.param(
            identity(ETag='"v1"', **{"Last-Modified": "Tue, 02 Jun 2026 10:00:00 GMT"}),
            stored(RECORDED),
            None,
            id="the ETag decides when there is one",
        ),
        pytest.param(
            identity(ETag='"v2"', **{"Last-Modified": MONDAY}),
            stored(RECORDED),
            "the source's ETag is not the stored one",
            id="another ETag",
        ),
        pytest.param(
            identity(**{"Last-Modified": "Tue, 02 Jun 2026 10:00:00 GMT"}),
            stored(RECORDED),
            "the source's Last-Modified is not the stored one",
            id="another Last-Modified",
        ),
        pytest.param(
            identity(ETag='"v1"'),
            stored(),
            "the object was not fetched from this URL",
            id="an object without metadata",
        ),
        pytest.param(
            SourceIdentity.of("https://elsewhere.example/a.png", httpx.Headers({"ETag": '"v1"'}), 100),
            stored(RECORDED),
            "the object was not fetched from this URL",
            id="the same ETag from another URL",
        ),
        pytest.param(
            identity(ETag='"v1"'),
            stored(RECORDED, size=99),
            "the object's size is not the source's Content-Length",
            id="another size",
        ),
        pytest.param(
            identity(ETag='"v1"'),
            stored({META_URL_SHA256: RECORDED[META_URL_SHA256], META_LAST_MODIFIED: MONDAY}),
            "the source's ETag is not the stored one",
            id="an ETag now, none recorded",
        ),
    ],
)
def test_whether_the_object_holds_the_sources_bytes(
    source: SourceIdentity, obj: StoredObject, reason: str | None
) -> None:
    assert mismatch(source, obj) == reason
