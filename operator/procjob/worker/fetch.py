"""The built-in `fetch` stage: check a URL with HEAD, then stream its body into S3.

HEAD (following redirects) must answer 200 with an accepted Content-Type and a Content-Length
within `maxBytes`; a server that answers HEAD with 405 or 501 is checked on the GET response
instead. The GET response is checked again, and its body is counted, hashed and uploaded as it
arrives: the transfer stops (and the multipart upload is aborted) as soon as it passes
`maxBytes`, whatever the headers promised. Redirects are followed by hand so that each hop is
counted, must stay http(s), passes the SSRF guard at connect time, and loses the caller's headers
once it leaves the original origin.

A fetch is idempotent (`procjob.worker.reuse`): the object records the source's identity in its
metadata, and a fetch whose HEAD shows the same source as the object at the key returns that
object's outputs without a GET.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import httpx

from procjob.models.builtin.fetch import MIB, PART_SIZE, FetchParams
from procjob.worker import reuse, s3
from procjob.worker.errors import SourceRejected, SourceUnavailable, TooLarge, WrongContentType
from procjob.worker.http import GuardedTransport
from procjob.worker.log import event, redact_url
from procjob.worker.params import parse_fetch_params, resolved_headers
from procjob.worker.ssrf import allowed_networks_from_env

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

DEFAULT_CONTENT_TYPE = "application/octet-stream"  # what RFC 9110 lets a recipient assume
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEAD_UNSUPPORTED = frozenset({405, 501})
_RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = "procjob-fetch/1"


def media_type(content_type: str | None) -> str:
    """The lower-case ``type/subtype`` of a Content-Type header value, without parameters."""
    value = (content_type or "").split(";", 1)[0].strip().lower()
    return value or DEFAULT_CONTENT_TYPE


def content_type_allowed(content_type: str | None, ranges: Iterable[str]) -> bool:
    """Whether the Content-Type matches one of the media ranges (``*/*``, ``image/*``, ``image/png``)."""
    kind = media_type(content_type)
    major = kind.split("/", 1)[0] if "/" in kind else None
    for item in ranges:
        if item in ("*/*", kind):
            return True
        if item.endswith("/*") and major is not None and item[:-2] == major:
            return True
    return False


def declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def check_status(method: str, url: httpx.URL, status: int) -> None:
    """200 passes; 5xx, 408 and 429 may pass later (transient); anything else never will."""
    if status == 200:
        return
    message = f"{method} {redact_url(url)}: HTTP {status}"
    if status >= 500 or status in _RETRYABLE_STATUS:
        raise SourceUnavailable(message)
    raise SourceRejected(f"{message}, expected 200")


def check_headers(method: str, response: httpx.Response, params: FetchParams) -> None:
    """Refuse a Content-Type outside `contentTypes` or a Content-Length over `maxBytes`."""
    where = f"{method} {redact_url(response.url)}"
    content_type = response.headers.get("content-type")
    if not content_type_allowed(content_type, params.content_types):
        raise WrongContentType(
            f"{where}: Content-Type {media_type(content_type)!r} is not one of {params.content_types}"
        )
    length = declared_length(response)
    if length is not None and length > params.max_bytes:
        raise TooLarge(f"{where}: Content-Length {length} exceeds maxBytes {params.max_bytes}")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def send_following(
    client: httpx.Client, method: str, params: FetchParams, headers: Mapping[str, str]
) -> httpx.Response:
    """Send `method` to `params.url`, following up to `maxRedirects` redirects; a streamed response."""
    url = httpx.URL(params.url)
    start = _origin(url)
    base = {
        "User-Agent": USER_AGENT,
        "Accept": ", ".join(params.content_types),
        "Accept-Encoding": "identity",
    }
    for _hop in range(params.max_redirects + 1):
        sent = {**base, **headers} if _origin(url) == start else base
        response = client.send(client.build_request(method, url, headers=sent), stream=True)
        if response.status_code not in _REDIRECTS:
            return response
        response.close()
        location = response.headers.get("location")
        if not location:
            raise SourceRejected(f"{method} {redact_url(url)}: HTTP {response.status_code} without Location")
        try:
            target = url.join(location)
        except httpx.InvalidURL:
            raise SourceRejected(f"{method} {redact_url(url)}: redirect to an invalid URL") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise SourceRejected(f"{method} {redact_url(url)}: redirect to a non-http(s) URL")
        event("fetch.redirect", method=method, status=response.status_code, to=redact_url(target))
        url = target
    raise SourceRejected(f"{method} {redact_url(params.url)}: more than {params.max_redirects} redirects")


def head_check(client: httpx.Client, params: FetchParams, headers: Mapping[str, str]) -> reuse.SourceIdentity | None:
    """Check the source with HEAD; its identity, or None when it has no HEAD."""
    with contextlib.closing(send_following(client, "HEAD", params, headers)) as response:
        status = response.status_code
        event(
            "fetch.head",
            status=status,
            contentType=response.headers.get("content-type"),
            contentLength=declared_length(response),
        )
        if status in _HEAD_UNSUPPORTED:
            event("fetch.head_unsupported", status=status, detail="checking the GET response instead")
            return None
        check_status("HEAD", response.url, status)
        check_headers("HEAD", response, params)
        return reuse.SourceIdentity.of(params.url, response.headers, declared_length(response))


def download_to_s3(
    client: httpx.Client, storage: S3Client, params: FetchParams, headers: Mapping[str, str]
) -> dict[str, object]:
    started = time.monotonic()
    with contextlib.closing(send_following(client, "GET", params, headers)) as response:
        check_status("GET", response.url, response.status_code)
        check_headers("GET", response, params)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise SourceRejected(f"GET {redact_url(response.url)}: unsupported Content-Encoding {encoding!r}")
        content_type = (response.headers.get("content-type") or DEFAULT_CONTENT_TYPE).strip()
        event("fetch.get", status=response.status_code, contentLength=declared_length(response))
        identity = reuse.SourceIdentity.of(params.url, response.headers, declared_length(response))
        digest = hashlib.sha256()
        size = 0
        with s3.StreamingUpload(
            storage, params.bucket, params.key, content_type, PART_SIZE, identity.metadata()
        ) as upload:
            for chunk in response.iter_raw():
                size += len(chunk)
                if size > params.max_bytes:
                    raise TooLarge(f"GET {redact_url(response.url)}: body exceeds maxBytes {params.max_bytes}")
                digest.update(chunk)
                upload.write(chunk)
            etag = upload.finish({reuse.META_SHA256: digest.hexdigest()})
    seconds = time.monotonic() - started
    event(
        "fetch.stored",
        bucket=params.bucket,
        key=params.key,
        size=size,
        seconds=round(seconds, 3),
        mibPerSecond=round(size / MIB / seconds, 1) if seconds > 0 else None,
    )
    return {
        "bucket": params.bucket,
        "key": params.key,
        "size": size,
        "sha256": digest.hexdigest(),
        "contentType": content_type,
        "etag": etag,
    }


def run(raw_params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    """The stage entry point: validated parameters in, outputs out, a WorkerError on failure."""
    params = parse_fetch_params(raw_params)
    headers = resolved_headers(params, env)
    allowed = allowed_networks_from_env(env)
    storage = s3.client_from_env(env)
    event(
        "fetch.start",
        url=redact_url(params.url),
        bucket=params.bucket,
        key=params.key,
        maxBytes=params.max_bytes,
        headers=sorted(headers),
    )
    timeout = httpx.Timeout(params.timeout_seconds)
    with httpx.Client(transport=GuardedTransport(allowed), timeout=timeout, trust_env=False) as client:
        source = head_check(client, params, headers)
        reused = reuse.reused_outputs(storage, params, source)
        if reused is not None:
            return reused
        return download_to_s3(client, storage, params, headers)
