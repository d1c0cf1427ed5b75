"""The checksum worker end to end against a real S3 server (versitygw).

Each case checks the exit code and the termination message; the digests are computed here from
the bytes that were put. The last case runs `procjob worker checksum` as a subprocess, as a pod would.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from procjob.worker import checksum
from procjob.worker import s3 as s3_module
from procjob.worker.main import main
from tests.integration.test_fetch import FOREIGN_AWS_ENV, PROCJOB, Result
from tests.support.http import payload
from tests.support.s3 import S3Server, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

pytestmark = [pytest.mark.s3, pytest.mark.timeout(60)]

MIB = 1024 * 1024

Checksum = Callable[..., Result]


@pytest.fixture
def s3(s3_server: S3Server) -> S3Client:
    return s3_server.client()


@pytest.fixture
def run_checksum(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Checksum:
    """Run the checksum stage in-process: `run_checksum(key=..., **params)`, env overrides in `env=`."""

    def run(*, env: Mapping[str, str] | None = None, **params: Any) -> Result:
        for name in FOREIGN_AWS_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**s3_server.env, **(env or {})}.items():
            monkeypatch.setenv(name, value)
        termination = tmp_path / "termination-log"
        termination.unlink(missing_ok=True)
        monkeypatch.setenv("PROCJOB_TERMINATION_MESSAGE_PATH", str(termination))
        monkeypatch.setenv("PROCJOB_STAGE_PARAMS", json.dumps({"bucket": s3_bucket, "key": "k", **params}))
        capsys.readouterr()
        code = main(["checksum"])
        return Result(code, json.loads(termination.read_text()), capsys.readouterr().err)

    return run


def put(s3: S3Client, bucket: str, data: bytes, key: str = "k") -> str:
    """Store `data`; the object's ETag without quotes."""
    return s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(0, id="an empty object"),
        pytest.param(10, id="a small object"),
        pytest.param(3 * MIB + 17, id="an object of several chunks"),
    ],
)
def test_the_outputs_are_the_objects_digest_size_and_etag(
    run_checksum: Checksum, s3: S3Client, s3_bucket: str, size: int
) -> None:
    data = payload(size)
    etag = put(s3, s3_bucket, data)
    result = run_checksum()
    assert result.code == 0, result.message
    assert result.message == {
        "bucket": s3_bucket,
        "key": "k",
        "size": size,
        "sha256": hashlib.sha256(data).hexdigest(),
        "etag": etag,
    }


def test_the_object_is_read_in_chunks_never_whole(s3: S3Client, s3_bucket: str) -> None:
    """What the stage reads with (s3.reading, CHUNK_SIZE at a time), against the real server."""
    data = payload(MIB)
    put(s3, s3_bucket, data)
    with s3_module.reading(s3, s3_bucket, "k", 64 * 1024) as (_, chunks):
        seen = [len(chunk) for chunk in chunks]
    assert len(seen) == 16
    assert max(seen) == 64 * 1024
    assert checksum.CHUNK_SIZE == MIB  # the stage's one buffer


def test_a_matching_expected_digest_passes_in_any_case(run_checksum: Checksum, s3: S3Client, s3_bucket: str) -> None:
    data = payload(1000)
    put(s3, s3_bucket, data)
    result = run_checksum(expectSha256=hashlib.sha256(data).hexdigest().upper())
    assert result.code == 0, result.message
    assert result.message["sha256"] == hashlib.sha256(data).hexdigest()


def test_another_digest_is_a_permanent_failure(run_checksum: Checksum, s3: S3Client, s3_bucket: str) -> None:
    put(s3, s3_bucket, b"not what was expected")
    result = run_checksum(expectSha256="0" * 64)
    assert (result.code, result.message["kind"]) == (2, "permanent")
    assert f"s3://{s3_bucket}/k: sha256 " in result.message["error"]
    assert f"is not the expected {'0' * 64}" in result.message["error"]


@pytest.mark.parametrize(
    ("params", "text"),
    [
        pytest.param({"key": "missing"}, "NoSuchKey", id="a missing object"),
        pytest.param({"bucket": "no-such-bucket-procjob"}, "NoSuchBucket", id="a missing bucket"),
        pytest.param({"expectSha256": "abc"}, "expectSha256: a sha256 digest is 64 hexadecimal digits", id="bad param"),
        pytest.param({"kee": "x"}, "kee: Extra inputs are not permitted", id="a misspelt parameter"),
    ],
)
def test_what_cannot_work_later_is_permanent(run_checksum: Checksum, params: dict[str, Any], text: str) -> None:
    result = run_checksum(**params)
    assert (result.code, result.message["kind"]) == (2, "permanent")
    assert text in result.message["error"]


def test_bad_credentials_are_permanent(run_checksum: Checksum, s3: S3Client, s3_bucket: str) -> None:
    put(s3, s3_bucket, b"x")
    result = run_checksum(env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    assert (result.code, result.message["kind"]) == (2, "permanent")
    assert "wrong" not in result.message["error"]


def test_an_unreachable_s3_is_transient(run_checksum: Checksum) -> None:
    result = run_checksum(env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    assert (result.code, result.message["kind"]) == (75, "transient")
    assert "EndpointConnectionError" in result.message["error"]


def test_the_cli_checks_an_object(s3_server: S3Server, s3: S3Client, s3_bucket: str, tmp_path: Path) -> None:
    data = payload(2 * MIB)
    etag = put(s3, s3_bucket, data)
    termination = tmp_path / "termination-log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROCJOB_"))}
    env.update(s3_server.env)
    env["PROCJOB_S3_CREDENTIALS"] = "secret"
    env["PROCJOB_TERMINATION_MESSAGE_PATH"] = str(termination)
    env["PROCJOB_STAGE_PARAMS"] = json.dumps({"bucket": s3_bucket, "key": "k"})
    done = subprocess.run(
        [str(PROCJOB), "worker", "checksum"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(termination.read_text()) == {
        "bucket": s3_bucket,
        "key": "k",
        "size": 2 * MIB,
        "sha256": hashlib.sha256(data).hexdigest(),
        "etag": etag,
    }
    assert [json.loads(line)["event"] for line in done.stderr.splitlines()] == [
        "checksum.start",
        "checksum.read",
        "worker.succeeded",
    ]
