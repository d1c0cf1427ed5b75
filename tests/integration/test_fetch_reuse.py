"""Idempotent fetch against a real S3 server (versitygw) and sources whose validators the test sets.

A fetch whose HEAD shows the same source as the object at the key (the URL's digest, a strong ETag
or Last-Modified, the size, all recorded as object metadata by the fetch that wrote it) returns
that object's outputs without a GET; anything else downloads again. Each case counts the source's
GETs and checks what is in the bucket. The in-process runner and the checks are test_fetch.py's.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from procjob.worker.reuse import META_ETAG, META_LAST_MODIFIED, META_SHA256, META_URL_SHA256
from tests.integration import test_fetch as base
from tests.integration.test_fetch import (
    MIB,
    PROCJOB,
    Fetch,
    Result,
    assert_nothing_stored,
    assert_stored,
    unique,
    worker_env,
)
from tests.support.http import HttpServer, payload
from tests.support.s3 import S3Server, free_port
from tests.support.versioned import Version, VersionedSource

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

pytestmark = [pytest.mark.s3, pytest.mark.timeout(60)]

# The in-process runner and the S3 client, shared with test_fetch.py.
fetch = base.fetch
s3 = base.s3

MONDAY = "Mon, 01 Jun 2026 10:00:00 GMT"
TUESDAY = "Tue, 02 Jun 2026 10:00:00 GMT"


@pytest.fixture
def source() -> Iterator[VersionedSource]:
    server = VersionedSource()
    try:
        yield server
    finally:
        server.stop()


def url_sha256(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(Version(payload(5000), etag='"v1"'), id="a strong ETag"),
        pytest.param(Version(payload(5000), last_modified=MONDAY), id="Last-Modified alone"),
        pytest.param(Version(payload(5000), etag='W/"v1"', last_modified=MONDAY), id="a weak ETag and Last-Modified"),
    ],
)
def test_a_second_fetch_of_the_same_source_reuses_the_object_without_a_get(
    fetch: Fetch, source: VersionedSource, s3: S3Client, s3_bucket: str, version: Version
) -> None:
    source.versions["/a.png"] = version
    first = fetch(source.url("/a.png"))
    assert_stored(s3, s3_bucket, first, version.body)
    second = fetch(source.url("/a.png"))
    assert second.code == 0, second.message
    assert second.message == first.message
    assert (source.requests("HEAD", "/a.png"), source.requests("GET", "/a.png")) == (2, 1)
    assert '"event":"fetch.reused"' in second.logs
    assert "fetch.get" not in second.logs


def test_a_single_put_object_records_the_source_and_the_digest(
    fetch: Fetch, source: VersionedSource, s3: S3Client, s3_bucket: str
) -> None:
    source.versions["/a.png"] = Version(payload(1000), etag='"v1"', last_modified=MONDAY)
    result = fetch(source.url("/a.png"))
    assert result.code == 0, result.message
    assert s3.head_object(Bucket=s3_bucket, Key="k")["Metadata"] == {
        META_URL_SHA256: url_sha256(source.url("/a.png")),
        META_ETAG: '"v1"',
        META_LAST_MODIFIED: MONDAY,
        META_SHA256: result.message["sha256"],
    }


def test_a_multipart_object_records_the_source_and_is_reused(
    fetch: Fetch, source: VersionedSource, s3: S3Client, s3_bucket: str
) -> None:
    body = payload(8 * MIB + 1000)  # one full part and a short one
    source.versions["/big.png"] = Version(body, etag='"big-1"')
    first = fetch(source.url("/big.png"), maxBytes=9 * MIB)
    assert_stored(s3, s3_bucket, first, body)
    assert first.message["etag"].endswith("-2")
    assert s3.head_object(Bucket=s3_bucket, Key="k")["Metadata"] == {
        META_URL_SHA256: url_sha256(source.url("/big.png")),
        META_ETAG: '"big-1"',
    }  # no digest: a multipart upload's metadata is set before the body is read
    second = fetch(source.url("/big.png"), maxBytes=9 * MIB)
    assert second.code == 0, second.message
    assert second.message == first.message  # the digest read back from S3, not from the source
    assert source.requests("GET", "/big.png") == 1


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        pytest.param(
            Version(payload(3000), etag='"v1"'),
            Version(payload(3001)[1:], etag='"v2"'),
            "the source's ETag is not the stored one",
            id="another ETag, same size",
        ),
        pytest.param(
            Version(payload(3000), last_modified=MONDAY),
            Version(payload(3001)[1:], last_modified=TUESDAY),
            "the source's Last-Modified is not the stored one",
            id="another Last-Modified",
        ),
        pytest.param(
            Version(payload(3000)),
            Version(payload(3000)),
            "the source gives neither a strong ETag nor Last-Modified",
            id="no validator",
        ),
        pytest.param(
            Version(payload(3000), etag='W/"v1"'),
            Version(payload(3000), etag='W/"v1"'),
            "the source gives neither a strong ETag nor Last-Modified",
            id="a weak ETag alone",
        ),
    ],
)
def test_a_source_without_the_same_identity_is_downloaded_again(
    fetch: Fetch, source: VersionedSource, s3: S3Client, s3_bucket: str, before: Version, after: Version, reason: str
) -> None:
    source.versions["/a.png"] = before
    assert fetch(source.url("/a.png")).code == 0
    source.versions["/a.png"] = after
    second = fetch(source.url("/a.png"))
    assert_stored(s3, s3_bucket, second, after.body)
    assert source.requests("GET", "/a.png") == 2
    assert f'"event":"fetch.not_reused","bucket":"{s3_bucket}","key":"k","reason":"{reason}"' in second.logs


def test_a_source_without_head_is_downloaded_again(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    path = unique("/no-head/5000.png")
    assert fetch(http_server.url(path)).code == 0
    second = fetch(http_server.url(path))
    assert_stored(s3, s3_bucket, second, payload(5000))
    assert [method for method, _ in http_server.log.for_path(path)] == ["HEAD", "GET", "HEAD", "GET"]
    assert '"reason":"the source answered no HEAD"' in second.logs


def test_the_same_bytes_from_another_url_are_downloaded(
    fetch: Fetch, source: VersionedSource, s3: S3Client, s3_bucket: str
) -> None:
    source.versions["/a.png"] = source.versions["/b.png"] = Version(payload(2000), etag='"same"')
    assert fetch(source.url("/a.png")).code == 0
    second = fetch(source.url("/b.png"))
    assert_stored(s3, s3_bucket, second, payload(2000))
    assert source.requests("GET", "/b.png") == 1
    assert "the object was not fetched from this URL" in second.logs


def test_an_object_written_by_someone_else_is_overwritten(
    fetch: Fetch, source: VersionedSource, s3: S3Client, s3_bucket: str
) -> None:
    version = Version(payload(4000), etag='"v1"')
    source.versions["/a.png"] = version
    s3.put_object(Bucket=s3_bucket, Key="k", Body=version.body, ContentType="image/png")  # no metadata
    result = fetch(source.url("/a.png"))
    assert_stored(s3, s3_bucket, result, version.body)
    assert source.requests("GET", "/a.png") == 1
    assert "the object was not fetched from this URL" in result.logs
    assert s3.head_object(Bucket=s3_bucket, Key="k")["Metadata"][META_ETAG] == '"v1"'


def test_an_unreachable_s3_fails_the_check_before_any_get(fetch: Fetch, source: VersionedSource) -> None:
    source.versions["/a.png"] = Version(payload(100), etag='"v1"')
    result = fetch(source.url("/a.png"), env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    assert (result.code, result.message["kind"]) == (75, "transient")
    assert "S3 HeadObject" in result.message["error"]
    assert source.requests("GET", "/a.png") == 0


def test_a_refused_check_downloads(fetch: Fetch, source: VersionedSource, s3: S3Client, s3_bucket: str) -> None:
    source.versions["/a.png"] = Version(payload(100), etag='"v1"')
    result = fetch(source.url("/a.png"), env={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert "the check failed: S3 HeadObject" in result.logs
    assert source.requests("GET", "/a.png") == 1
    assert (result.code, result.message["kind"]) == (2, "permanent")  # the upload is refused in turn
    assert_nothing_stored(s3, s3_bucket)


def test_a_worker_killed_after_its_upload_is_retried_without_a_download(
    source: VersionedSource, s3_server: S3Server, s3: S3Client, s3_bucket: str, tmp_path: Path
) -> None:
    body = payload(3 * MIB)
    source.versions["/a.png"] = Version(body, etag='"v1"')
    termination = tmp_path / "termination-log"
    env = worker_env(s3_server, termination, {"url": source.url("/a.png"), "bucket": s3_bucket, "key": "k"})
    with subprocess.Popen([str(PROCJOB), "worker", "fetch"], env=env, stderr=subprocess.PIPE, text=True) as pod:
        assert pod.stderr is not None
        for line in pod.stderr:  # the upload is complete: the pod dies before it reports
            if json.loads(line)["event"] == "fetch.stored":
                pod.send_signal(signal.SIGKILL)
                break
        pod.wait(timeout=30)
    termination.unlink(missing_ok=True)
    retry = subprocess.run(
        [str(PROCJOB), "worker", "fetch"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    result = Result(retry.returncode, json.loads(termination.read_text()), retry.stderr)
    assert_stored(s3, s3_bucket, result, body)
    assert source.requests("GET", "/a.png") == 1
    assert '"event":"fetch.reused"' in retry.stderr
