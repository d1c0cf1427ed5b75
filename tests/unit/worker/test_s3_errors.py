"""How S3 failures are classified: throttling and 5xx retry, 4xx and missing credentials do not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore import UNSIGNED
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from procjob.worker.errors import StorageRejected, StorageUnavailable, WorkerError
from procjob.worker.s3 import client_from_env, reading, translated


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "UploadPart",
    )


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        pytest.param(client_error("SlowDown", 503), StorageUnavailable, id="SlowDown is transient"),
        pytest.param(client_error("InternalError", 500), StorageUnavailable, id="InternalError is transient"),
        pytest.param(client_error("RequestTimeout", 400), StorageUnavailable, id="RequestTimeout is transient"),
        pytest.param(client_error("TooManyRequests", 429), StorageUnavailable, id="429 is transient"),
        pytest.param(client_error("NoSuchBucket", 404), StorageRejected, id="a missing bucket is permanent"),
        pytest.param(client_error("AccessDenied", 403), StorageRejected, id="access denied is permanent"),
        pytest.param(client_error("InvalidAccessKeyId", 403), StorageRejected, id="a bad key is permanent"),
        pytest.param(EndpointConnectionError(endpoint_url="http://s3"), StorageUnavailable, id="no connection"),
        pytest.param(ReadTimeoutError(endpoint_url="http://s3"), StorageUnavailable, id="a read timeout"),
        pytest.param(NoCredentialsError(), StorageRejected, id="no credentials is permanent"),
    ],
)
def test_s3_failures_are_classified(raised: Exception, expected: type[WorkerError]) -> None:
    with pytest.raises(expected) as caught, translated("UploadPart", "bucket", "key"):
        raise raised
    assert str(caught.value).startswith("S3 UploadPart s3://bucket/key: ")


def test_the_client_reads_the_standard_environment() -> None:
    client = client_from_env(
        {
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:8",
            "AWS_DEFAULT_REGION": "eu-west-3",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "PROCJOB_S3_FORCE_PATH_STYLE": "true",
        }
    )
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "eu-west-3"
    assert client.meta.config.s3 == {"addressing_style": "path"}


def test_without_an_opt_in_the_worker_never_uses_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-node")  # what a node's environment might offer
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-node")
    client = client_from_env({"PROCJOB_S3_CREDENTIALS": "none", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert client.meta.config.signature_version is UNSIGNED


def test_secret_mode_without_the_secrets_keys_is_a_permanent_error() -> None:
    with pytest.raises(StorageRejected, match="AWS_ACCESS_KEY_ID"):
        client_from_env({"PROCJOB_S3_CREDENTIALS": "secret", "AWS_ACCESS_KEY_ID": "k"})


def test_secret_mode_signs_with_the_secrets_keys() -> None:
    client = client_from_env(
        {"PROCJOB_S3_CREDENTIALS": "secret", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    )
    credentials = client._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("k", "s")


class CutShortBody:
    """A GetObject body that gives one chunk, then loses the connection (and records its close)."""

    closed = False

    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]:
        yield b"x" * chunk_size
        raise ResponseStreamingError(error="Connection broken: IncompleteRead")

    def close(self) -> None:
        self.closed = True


class OneObject:
    def __init__(self) -> None:
        self.body = CutShortBody()

    def get_object(self, **_: str) -> dict[str, object]:
        return {"ETag": '"abc"', "Body": self.body}


def test_a_body_cut_short_while_reading_is_transient_and_the_body_closed() -> None:
    client = OneObject()
    seen: list[bytes] = []

    def read_all() -> str:
        with reading(client, "bucket", "key", 4) as (etag, chunks):  # type: ignore[arg-type]
            seen.extend(chunks)
        return etag

    with pytest.raises(StorageUnavailable, match=r"^S3 GetObject s3://bucket/key: ResponseStreamingError"):
        read_all()
    assert seen == [b"xxxx"]
    assert client.body.closed
