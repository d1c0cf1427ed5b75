"""What may appear in logs and messages: URLs without user info or query strings."""

from __future__ import annotations

import json

import pytest

from procjob.worker.log import event, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://example.com/a.png", "https://example.com/a.png", id="a plain URL is unchanged"),
        pytest.param(
            "https://bucket.s3.amazonaws.com/a.png?X-Amz-Signature=abc&X-Amz-Credential=AKIA",
            "https://bucket.s3.amazonaws.com/a.png?<redacted>",
            id="a signed URL loses its query",
        ),
        pytest.param("http://user:pw@example.com:8080/x#frag", "http://example.com:8080/x", id="user info is dropped"),
        pytest.param("http://[::1]:8080/x", "http://[::1]:8080/x", id="IPv6 hosts keep their brackets"),
        pytest.param("http://example.com:notaport/?sig=1", "<invalid URL>", id="an invalid URL is not echoed"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_event_is_one_json_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    event("fetch.head", status=200, contentType="image/png")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    record = json.loads(err)
    assert record["event"] == "fetch.head"
    assert record["status"] == 200
    assert "ts" in record
