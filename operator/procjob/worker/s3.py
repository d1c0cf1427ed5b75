"""Writing one object to S3 from a stream, holding at most one part in memory.

`client_from_env` reads the standard AWS variables (plus ``PROCJOB_S3_FORCE_PATH_STYLE``).
Where the keys come from is the platform's choice, passed by the operator as
``PROCJOB_S3_CREDENTIALS``: ``secret`` (the keys in the environment, from the operator's Secret and
nothing else), ``node`` (botocore's chain: web identity, instance roles — only when the platform
opted in) or ``none`` (unsigned requests: the node's ambient credentials are never used). Unset
(the worker run by hand) keeps botocore's chain.

`StreamingUpload` copies written bytes into one buffer of `part_size`, allocated once and sent as
it is (no copy) whenever it is full. A body that ends inside the first part is stored with one
``PutObject``; a longer one becomes a multipart upload, one ``UploadPart`` per full buffer. Used
as a context manager it aborts the multipart upload when the block raises, so a refused or failed
transfer leaves neither an object nor an incomplete upload behind. Its `metadata` (user metadata,
``x-amz-meta-*``) goes on the ``CreateMultipartUpload`` or the ``PutObject``; what `finish` is given
becomes known only at the end (a digest), so it reaches the object only when one ``PutObject``
writes it: a multipart upload's metadata is fixed when the upload is created.

`head` reads an object's size, ETag, Content-Type and user metadata without its bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, cast

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from procjob.models.contract import (
    ENV_AWS_ACCESS_KEY_ID,
    ENV_AWS_ENDPOINT_URL,
    ENV_AWS_REGION,
    ENV_AWS_SECRET_ACCESS_KEY,
    ENV_S3_CREDENTIALS,
    ENV_S3_FORCE_PATH_STYLE,
    S3Credentials,
)
from procjob.worker.errors import StorageRejected, StorageUnavailable
from procjob.worker.log import event

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

_THROTTLING = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable", "InternalError"}
)


def client_from_env(env: Mapping[str, str]) -> S3Client:
    """An S3 client configured from AWS_* variables; no network traffic yet."""
    path_style = env.get(ENV_S3_FORCE_PATH_STYLE, "").strip().lower() in ("1", "true", "yes")
    mode = env.get(ENV_S3_CREDENTIALS, S3Credentials.NODE).strip().lower()
    keys = mode != S3Credentials.NONE
    session = boto3.session.Session(
        aws_access_key_id=env.get(ENV_AWS_ACCESS_KEY_ID) or None if keys else None,
        aws_secret_access_key=env.get(ENV_AWS_SECRET_ACCESS_KEY) or None if keys else None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None if keys else None,
        region_name=env.get(ENV_AWS_REGION) or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    if mode == S3Credentials.SECRET and not (env.get(ENV_AWS_ACCESS_KEY_ID) and env.get(ENV_AWS_SECRET_ACCESS_KEY)):
        raise StorageRejected("S3 credentials: the operator's Secret did not provide AWS_ACCESS_KEY_ID/SECRET")
    config = Config(
        signature_version=UNSIGNED if not keys else None,
        s3={"addressing_style": "path" if path_style else "auto"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="procjob-worker",
    )
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get(ENV_AWS_ENDPOINT_URL) or None
    return session.client("s3", endpoint_url=endpoint, config=config)


@contextlib.contextmanager
def translated(operation: str, bucket: str, key: str) -> Iterator[None]:
    """Map botocore failures to StorageUnavailable (retry) or StorageRejected (do not)."""
    where = f"S3 {operation} s3://{bucket}/{key}"
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = f"{where}: {code} (HTTP {status}): {error.get('Message', '')[:200]}".rstrip(": ")
        if status >= 500 or status == 429 or code in _THROTTLING:
            raise StorageUnavailable(message) from None
        raise StorageRejected(message) from None
    except (NoCredentialsError, PartialCredentialsError, ParamValidationError) as exc:
        raise StorageRejected(f"{where}: {type(exc).__name__}: {exc}") from None
    except BotoCoreError as exc:  # connection refused, timeouts, closed connections
        raise StorageUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None


def _blob(buffer: bytearray) -> bytes:
    """botocore takes a bytearray as a body (and so avoids a copy); the stubs only name bytes."""
    return cast("bytes", buffer)


class StreamingUpload:
    """Write a stream to s3://bucket/key with constant memory; `finish` returns the ETag."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        content_type: str,
        part_size: int,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._metadata = dict(metadata or {})
        self._part_size = part_size
        self._buffer = bytearray(part_size)  # allocated once; a full buffer is sent as it is
        self._filled = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []

    def __enter__(self) -> StreamingUpload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = min(len(view), self._part_size - self._filled)
            self._buffer[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == self._part_size:
                self._upload_part(self._buffer)
                self._filled = 0  # upload_part has returned: the buffer is free to refill

    def finish(self, final_metadata: Mapping[str, str] | None = None) -> str:
        """Store what was written; the result is the object's ETag without quotes. `final_metadata`
        is added to the object's metadata when it is written with one PutObject (a multipart
        upload's metadata was fixed when it was created)."""
        del self._buffer[self._filled :]  # the last (or only) part: what was written of it
        if self._upload_id is None:
            with translated("PutObject", self._bucket, self._key):
                put = self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=_blob(self._buffer),
                    ContentType=self._content_type,
                    Metadata={**self._metadata, **(final_metadata or {})},
                )
            return put["ETag"].strip('"')
        if self._buffer:
            self._upload_part(self._buffer)
        with translated("CompleteMultipartUpload", self._bucket, self._key):
            done = self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None
        return done["ETag"].strip('"')

    def abort(self) -> None:
        """Abort the multipart upload, if one was started; failures here are logged, not raised."""
        self._buffer = bytearray()
        self._filled = 0
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            with translated("AbortMultipartUpload", self._bucket, self._key):
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)
        except (StorageRejected, StorageUnavailable) as exc:
            event("s3.abort_failed", bucket=self._bucket, key=self._key, error=str(exc))
            return
        event("s3.aborted", bucket=self._bucket, key=self._key, parts=len(self._parts))

    def _upload_part(self, body: bytearray) -> None:
        if self._upload_id is None:
            with translated("CreateMultipartUpload", self._bucket, self._key):
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ContentType=self._content_type, Metadata=self._metadata
                )
            self._upload_id = created["UploadId"]
            event("s3.multipart_started", bucket=self._bucket, key=self._key)
        number = len(self._parts) + 1
        with translated("UploadPart", self._bucket, self._key):
            part = self._client.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=_blob(body)
            )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})
        event("s3.part_uploaded", part=number, bytes=len(body))


@contextlib.contextmanager
def reading(client: S3Client, bucket: str, key: str, chunk_size: int) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Open s3://bucket/key for reading: its ETag (without quotes) and its bytes in chunks of at most
    `chunk_size`, streamed with constant memory. A failure opening or reading it, inside the block,
    is StorageRejected or StorageUnavailable as for writes: a missing object is permanent, a body
    cut short transient."""
    with translated("GetObject", bucket, key):
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            yield response["ETag"].strip('"'), body.iter_chunks(chunk_size)
        finally:
            body.close()


@dataclass(frozen=True)
class StoredObject:
    """What a HEAD tells about an object: its size, ETag (no quotes), Content-Type, user metadata."""

    size: int
    etag: str
    content_type: str
    metadata: Mapping[str, str]


def head(client: S3Client, bucket: str, key: str) -> StoredObject | None:
    """HEAD s3://bucket/key: None when there is no such object (404); other failures raise
    StorageRejected or StorageUnavailable. Without ``s3:ListBucket`` S3 answers a missing key
    with 403, which is StorageRejected: the caller cannot tell it from "not allowed"."""
    with translated("HeadObject", bucket, key):
        try:
            response = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
    return StoredObject(
        size=response["ContentLength"],
        etag=response["ETag"].strip('"'),
        content_type=response.get("ContentType", ""),
        metadata={name.lower(): value for name, value in response.get("Metadata", {}).items()},
    )
