"""The fetch worker end to end: a real HTTP server that misbehaves, a real S3 server (versitygw).

Each case checks the exit code, the termination message, what is in the bucket (the right bytes,
or nothing) and that no multipart upload is left behind. Most cases call the worker in-process;
the last ones run `procjob worker fetch` as a subprocess, as a pod would. Idempotent fetch (the
object at the key reused) is tested in test_fetch_reuse.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from procjob.worker.main import main
from tests.support.http import HttpServer, payload
from tests.support.s3 import S3Server, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

pytestmark = [pytest.mark.s3, pytest.mark.timeout(60)]

MIB = 1024 * 1024
ALLOW_LOOPBACK = "127.0.0.0/8"
PROCJOB = Path(sys.executable).with_name("procjob")
# Variables that would point boto3 elsewhere if the developer's shell had them set.
FOREIGN_AWS_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE")


@dataclass
class Result:
    code: int
    message: dict[str, Any]
    logs: str


Fetch = Callable[..., Result]


@pytest.fixture
def fetch(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Fetch:
    """Run the fetch stage in-process: `fetch(url, key=..., **params)`, env overrides in `env=`."""

    def run(
        url: str, *, env: Mapping[str, str | None] | None = None, allowed: str | None = ALLOW_LOOPBACK, **params: Any
    ) -> Result:
        for name in FOREIGN_AWS_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in s3_server.env.items():
            monkeypatch.setenv(name, value)
        if allowed is None:
            monkeypatch.delenv("PROCJOB_FETCH_ALLOWED_NETWORKS", raising=False)
        else:
            monkeypatch.setenv("PROCJOB_FETCH_ALLOWED_NETWORKS", allowed)
        for name, env_value in (env or {}).items():
            if env_value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, env_value)
        termination = tmp_path / "termination-log"
        termination.unlink(missing_ok=True)
        monkeypatch.setenv("PROCJOB_TERMINATION_MESSAGE_PATH", str(termination))
        monkeypatch.setenv("PROCJOB_STAGE_PARAMS", json.dumps({"url": url, "bucket": s3_bucket, "key": "k", **params}))
        capsys.readouterr()
        code = main(["fetch"])
        return Result(code, json.loads(termination.read_text()), capsys.readouterr().err)

    return run


@pytest.fixture
def s3(s3_server: S3Server) -> S3Client:
    return s3_server.client()


def assert_stored(s3: S3Client, bucket: str, result: Result, data: bytes, content_type: str = "image/png") -> None:
    assert result.code == 0, result.message
    sha256 = hashlib.sha256(data).hexdigest()
    obj = s3.get_object(Bucket=bucket, Key="k")
    assert obj["Body"].read() == data
    assert obj["ContentType"] == content_type
    assert result.message == {
        "bucket": bucket,
        "key": "k",
        "size": len(data),
        "sha256": sha256,
        "contentType": content_type,
        "etag": obj["ETag"].strip('"'),
    }
    assert_no_uploads(s3, bucket)


def assert_nothing_stored(s3: S3Client, bucket: str) -> None:
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert_no_uploads(s3, bucket)


def assert_no_uploads(s3: S3Client, bucket: str) -> None:
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def unique(path: str) -> str:
    """`path` with a query that makes this request recognisable in the server's log."""
    return f"{path}{'&' if '?' in path else '?'}n={uuid.uuid4().hex}"


# -- success ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1000, 8 * MIB - 1], ids=["empty", "1000 bytes", "one byte under a part"])
def test_a_body_smaller_than_a_part_is_stored_with_one_put(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str, size: int
) -> None:
    result = fetch(http_server.url(f"/image/{size}.png"))
    assert_stored(s3, s3_bucket, result, payload(size))
    assert "s3.multipart_started" not in result.logs


@pytest.mark.parametrize(
    ("size", "parts"),
    [(8 * MIB, 1), (16 * MIB, 2), (20 * MIB, 3)],
    ids=["exactly one part", "exactly two parts", "exactly maxBytes: 8 + 8 + 4 MiB"],
)
def test_a_larger_body_is_stored_in_parts(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str, size: int, parts: int
) -> None:
    result = fetch(http_server.url(f"/image/{size}.png"))
    assert_stored(s3, s3_bucket, result, payload(size))
    assert result.message["etag"].endswith(f"-{parts}")


def test_a_body_without_length_of_exactly_max_bytes_passes(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    result = fetch(http_server.url("/lying-chunked/10/300000.png"), maxBytes=300000)
    assert_stored(s3, s3_bucket, result, payload(300000))


def test_a_server_without_head_is_checked_on_the_get_response(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    path = unique("/no-head/5000.png")
    result = fetch(http_server.url(path))
    assert_stored(s3, s3_bucket, result, payload(5000))
    assert [method for method, _ in http_server.log.for_path(path)] == ["HEAD", "GET"]
    assert "fetch.head_unsupported" in result.logs


@pytest.mark.parametrize("hops", [1, 5], ids=["one redirect", "as many redirects as allowed"])
def test_redirects_are_followed(fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str, hops: int) -> None:
    result = fetch(http_server.url(f"/redirect/{hops}?to=/image/4321.png"))
    assert_stored(s3, s3_bucket, result, payload(4321))


def test_any_type_is_accepted_when_asked(fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str) -> None:
    result = fetch(http_server.url("/html"), contentTypes=["text/*"])
    assert_stored(s3, s3_bucket, result, b"<html></html>\n", content_type="text/html; charset=utf-8")


def test_headers_from_env_are_sent_and_never_shown(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    secret = f"Bearer {uuid.uuid4().hex}"
    result = fetch(
        http_server.url("/echo-headers.png"),
        headers={"X-Plain": "visible"},
        headersFromEnv={"Authorization": "SOURCE_TOKEN"},
        env={"SOURCE_TOKEN": secret},
    )
    assert result.code == 0, result.message
    seen = json.loads(s3.get_object(Bucket=s3_bucket, Key="k")["Body"].read())
    assert seen["authorization"] == secret
    assert seen["x-plain"] == "visible"
    assert seen["accept-encoding"] == "identity"
    assert secret not in result.logs
    assert secret not in json.dumps(result.message)
    assert result.message["size"] == len(json.dumps(seen))
    assert_no_uploads(s3, s3_bucket)


def test_headers_are_dropped_when_a_redirect_leaves_the_origin(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    elsewhere = f"{http_server.other_base_url}/echo-headers.png"
    result = fetch(
        http_server.url(f"/redirect-to?url={elsewhere}"),
        headersFromEnv={"Authorization": "SOURCE_TOKEN"},
        env={"SOURCE_TOKEN": "Bearer do-not-forward"},
    )
    assert result.code == 0, result.message
    seen = json.loads(s3.get_object(Bucket=s3_bucket, Key="k")["Body"].read())
    assert "authorization" not in seen
    assert seen["host"] == http_server.other_base_url.removeprefix("http://")
    assert_no_uploads(s3, s3_bucket)


def test_the_s3_credentials_never_reach_the_logs_or_outputs(
    fetch: Fetch, http_server: HttpServer, s3_server: S3Server, s3: S3Client, s3_bucket: str
) -> None:
    result = fetch(http_server.url("/image/100.png"))
    assert_stored(s3, s3_bucket, result, payload(100))
    for value in (s3_server.secret_key, s3_server.access_key):
        assert value not in result.logs
        assert value not in json.dumps(result.message)


# -- refusals and failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "code", "error"),
    [
        pytest.param("/status/404", {}, 2, "HEAD {base}/status/404: HTTP 404, expected 200", id="404 is permanent"),
        pytest.param("/status/500", {}, 75, "HTTP 500", id="500 is transient"),
        pytest.param("/status/503", {}, 75, "HTTP 503", id="503 is transient"),
        pytest.param("/status/429", {}, 75, "HTTP 429", id="429 is transient"),
        pytest.param("/flaky-head/100.png", {}, 75, "HEAD {base}/flaky-head/100.png: HTTP 503", id="HEAD 503"),
        pytest.param("/html", {}, 2, "Content-Type 'text/html' is not one of ['image/*']", id="html is not an image"),
        pytest.param(
            "/image/2000.png",
            {"maxBytes": 1000},
            2,
            "HEAD {base}/image/2000.png: Content-Length 2000 exceeds maxBytes 1000",
            id="a declared length over the limit",
        ),
        pytest.param(
            "/no-head/2000.png",
            {"maxBytes": 1000},
            2,
            "GET {base}/no-head/2000.png: Content-Length 2000 exceeds maxBytes 1000",
            id="a GET length over the limit",
        ),
        pytest.param(
            "/lying-close/10/3000000.png",
            {"maxBytes": 1000000},
            2,
            "body exceeds maxBytes 1000000",
            id="a body without length longer than HEAD said",
        ),
        pytest.param(
            "/lying-chunked/10/300001.png",
            {"maxBytes": 300000},
            2,
            "body exceeds maxBytes 300000",
            id="one byte over the limit",
        ),
        pytest.param("/slow/5000.png", {"timeoutSeconds": 0.5}, 75, "ReadTimeout", id="a stalled body times out"),
        pytest.param("/redirect/6?to=/image/10.png", {}, 2, "more than 5 redirects", id="too many redirects"),
        pytest.param(
            "/redirect/1?to=/image/10.png", {"maxRedirects": 0}, 2, "more than 0 redirects", id="maxRedirects 0"
        ),
        pytest.param(
            "/redirect-to?url=http://169.254.169.254/latest/meta-data/",
            {},
            2,
            "refusing to connect to 169.254.169.254 (link-local address)",
            id="a redirect to the metadata service",
        ),
        pytest.param(
            "/redirect-to?url=http://10.0.0.1/a.png",
            {},
            2,
            "refusing to connect to 10.0.0.1 (private address)",
            id="a redirect to a private address",
        ),
        pytest.param(
            "/redirect-to?url=http://[::1]/a.png",
            {},
            2,
            "refusing to connect to ::1 (loopback address)",
            id="a redirect to a loopback address outside the allowlist",
        ),
        pytest.param(
            "/redirect-to?url=file:///etc/passwd", {}, 2, "redirect to a non-http(s) URL", id="a redirect to a file"
        ),
    ],
)
def test_refusals_and_failures_store_nothing(
    fetch: Fetch,
    http_server: HttpServer,
    s3: S3Client,
    s3_bucket: str,
    path: str,
    params: dict[str, Any],
    code: int,
    error: str,
) -> None:
    result = fetch(http_server.url(path), **params)
    assert result.code == code, result.message
    assert result.message["kind"] == ("permanent" if code == 2 else "transient")
    assert error.format(base=http_server.base_url) in result.message["error"]
    assert_nothing_stored(s3, s3_bucket)


def test_a_body_past_the_limit_aborts_the_multipart_upload(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    result = fetch(http_server.url(f"/lying-chunked/10/{12 * MIB}.png"), maxBytes=9 * MIB)
    assert result.code == 2
    assert result.message["error"].endswith(f"body exceeds maxBytes {9 * MIB}")
    assert '"event":"s3.part_uploaded","part":1' in result.logs
    assert '"event":"s3.aborted"' in result.logs
    assert_nothing_stored(s3, s3_bucket)


def test_loopback_is_refused_without_the_allowlist(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    path = unique("/image/10.png")
    result = fetch(http_server.url(path), allowed=None)
    assert (result.code, result.message["kind"]) == (2, "permanent")
    assert "refusing to connect to 127.0.0.1 (loopback address)" in result.message["error"]
    assert http_server.log.for_path(path) == []
    assert_nothing_stored(s3, s3_bucket)


def test_invalid_parameters_exit_2_before_any_request(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    path = unique("/image/10.png")
    result = fetch(http_server.url(path), maxBytes=-1, contentTypes=["nonsense"])
    assert (result.code, result.message["kind"]) == (2, "permanent")
    assert result.message["error"].startswith("invalid parameters: maxBytes: ")
    assert "contentTypes" in result.message["error"]
    assert http_server.log.for_path(path) == []
    assert_nothing_stored(s3, s3_bucket)


def test_a_missing_bucket_is_permanent(fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str) -> None:
    result = fetch(http_server.url("/image/10.png"), bucket="no-such-bucket-here")
    assert (result.code, result.message["kind"]) == (2, "permanent")
    assert "S3 PutObject s3://no-such-bucket-here/k: NoSuchBucket" in result.message["error"]
    assert "no-such-bucket-here" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert_nothing_stored(s3, s3_bucket)


def test_wrong_s3_credentials_are_permanent(
    fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str
) -> None:
    result = fetch(http_server.url("/image/10.png"), env={"AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert (result.code, result.message["kind"]) == (2, "permanent")
    assert "wrong-secret" not in result.logs + json.dumps(result.message)
    assert_nothing_stored(s3, s3_bucket)


def test_an_unreachable_s3_is_transient(fetch: Fetch, http_server: HttpServer, s3: S3Client, s3_bucket: str) -> None:
    result = fetch(http_server.url("/image/10.png"), env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    assert (result.code, result.message["kind"]) == (75, "transient")
    assert "EndpointConnectionError" in result.message["error"]
    assert_nothing_stored(s3, s3_bucket)


# -- as a pod runs it: `procjob worker fetch` in a subprocess ----------------------------------------


def worker_env(s3_server: S3Server, termination: Path, params: Mapping[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROCJOB_"))}
    env.update(s3_server.env)
    env["PROCJOB_FETCH_ALLOWED_NETWORKS"] = ALLOW_LOOPBACK
    env["PROCJOB_TERMINATION_MESSAGE_PATH"] = str(termination)
    env["PROCJOB_STAGE_PARAMS"] = json.dumps(params)
    return env


def test_the_cli_stores_an_image(
    http_server: HttpServer, s3_server: S3Server, s3: S3Client, s3_bucket: str, tmp_path: Path
) -> None:
    termination = tmp_path / "termination-log"
    params = {"url": http_server.url(f"/image/{3 * MIB}.png"), "bucket": s3_bucket, "key": "k"}
    done = subprocess.run(
        [str(PROCJOB), "worker", "fetch"],
        env=worker_env(s3_server, termination, params),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    result = Result(done.returncode, json.loads(termination.read_text()), done.stderr)
    assert_stored(s3, s3_bucket, result, payload(3 * MIB))
    assert all(json.loads(line)["event"] for line in done.stderr.splitlines())  # one JSON object per line
    assert done.stdout == ""


def test_the_cli_refuses_a_missing_stage(s3_server: S3Server, tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    done = subprocess.run(
        [str(PROCJOB), "worker"],
        env=worker_env(s3_server, termination, {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "no stage given" in done.stderr
    assert json.loads(termination.read_text())["kind"] == "permanent"


def test_sigterm_during_an_upload_aborts_it(
    http_server: HttpServer, s3_server: S3Server, s3: S3Client, s3_bucket: str, tmp_path: Path
) -> None:
    termination = tmp_path / "termination-log"
    params = {"url": http_server.url(f"/stall-after/{9 * MIB}/{20 * MIB}.png"), "bucket": s3_bucket, "key": "k"}
    with subprocess.Popen(
        [str(PROCJOB), "worker", "fetch"],
        env=worker_env(s3_server, termination, params),
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:  # the first part is uploaded, then the source stalls
            if json.loads(line)["event"] == "s3.part_uploaded":
                process.send_signal(signal.SIGTERM)
                break
        logs = process.stderr.read()
        code = process.wait(timeout=30)
    assert code == 75
    assert json.loads(termination.read_text()) == {"error": "terminated by SIGTERM", "kind": "transient"}
    assert '"event":"s3.aborted"' in logs
    assert_nothing_stored(s3, s3_bucket)
