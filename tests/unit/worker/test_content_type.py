"""Content-Type matching against `contentTypes` and the status-code verdicts, without sockets."""

from __future__ import annotations

import httpx
import pytest

from procjob.worker.errors import SourceRejected, SourceUnavailable
from procjob.worker.fetch import check_status, content_type_allowed, media_type


@pytest.mark.parametrize(
    ("content_type", "ranges", "allowed"),
    [
        pytest.param("image/png", ["image/*"], True, id="a png is an image"),
        pytest.param("IMAGE/JPEG; charset=binary", ["image/*"], True, id="case and parameters are ignored"),
        pytest.param("image/png", ["image/png"], True, id="an exact type matches"),
        pytest.param("image/webp", ["image/png", "image/jpeg"], False, id="a type not listed is refused"),
        pytest.param("text/html", ["image/*"], False, id="html is not an image"),
        pytest.param("text/html", ["*/*"], True, id="anything matches */*"),
        pytest.param("imagefoo/png", ["image/*"], False, id="a wildcard matches the whole major type only"),
        pytest.param("image", ["image/*"], False, id="a type without subtype does not match a wildcard"),
        pytest.param(None, ["image/*"], False, id="a missing type is octet-stream, not an image"),
        pytest.param(None, ["application/octet-stream"], True, id="a missing type is octet-stream"),
        pytest.param("", ["*/*"], True, id="an empty type matches */*"),
    ],
)
def test_content_type_matching(content_type: str | None, ranges: list[str], allowed: bool) -> None:
    assert content_type_allowed(content_type, ranges) is allowed


def test_media_type_drops_parameters_and_lowercases() -> None:
    assert media_type(" Image/SVG+XML ; charset=utf-8") == "image/svg+xml"
    assert media_type(None) == "application/octet-stream"


URL = httpx.URL("https://example.com/a.png?X-Amz-Signature=secret")


def test_200_passes() -> None:
    check_status("GET", URL, 200)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(404, SourceRejected, id="404 is permanent"),
        pytest.param(403, SourceRejected, id="403 is permanent"),
        pytest.param(410, SourceRejected, id="410 is permanent"),
        pytest.param(204, SourceRejected, id="a 2xx other than 200 is permanent"),
        pytest.param(304, SourceRejected, id="a 3xx that is not a redirect is permanent"),
        pytest.param(429, SourceUnavailable, id="429 is transient"),
        pytest.param(408, SourceUnavailable, id="408 is transient"),
        pytest.param(500, SourceUnavailable, id="500 is transient"),
        pytest.param(503, SourceUnavailable, id="503 is transient"),
    ],
)
def test_status_verdicts(status: int, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        check_status("GET", URL, status)
    assert f"HTTP {status}" in str(caught.value)
    assert "secret" not in str(caught.value)
