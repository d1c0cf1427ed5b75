"""Validation of the fetch stage's `with:` parameters: each failure names its field, never its value."""

from __future__ import annotations

import pytest

from procjob.models.builtin.fetch import DEFAULT_MAX_BYTES, FetchParams
from procjob.worker.errors import InvalidParams
from procjob.worker.params import parse_fetch_params, resolved_headers

SECRET_QUERY = "X-Amz-Signature=deadbeefsecret"


def valid(**overrides: object) -> dict[str, object]:
    params: dict[str, object] = {"url": "https://images.example.com/a.png", "bucket": "raw-images", "key": "a.png"}
    params.update(overrides)
    return params


def test_defaults_follow_the_old_job_services() -> None:
    params = parse_fetch_params(valid())
    assert params.max_bytes == DEFAULT_MAX_BYTES == 20 * 1024 * 1024
    assert params.content_types == ["image/*"]
    assert params.timeout_seconds == 30
    assert params.max_redirects == 5
    assert params.headers == {}
    assert params.headers_from_env == {}


def test_parameters_are_camel_case() -> None:
    params = parse_fetch_params(
        valid(maxBytes=10, contentTypes=["Image/PNG", "*/*"], timeoutSeconds=0.5, maxRedirects=0)
    )
    assert (params.max_bytes, params.timeout_seconds, params.max_redirects) == (10, 0.5, 0)
    assert params.content_types == ["image/png", "*/*"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"url": None}, "url", id="a missing url is named"),
        pytest.param({"url": f"ftp://example.com/a.png?{SECRET_QUERY}"}, "url", id="an ftp url is refused"),
        pytest.param({"url": f"file:///etc/passwd?{SECRET_QUERY}"}, "url", id="a file url is refused"),
        pytest.param({"url": "https://user:pw@example.com/a.png"}, "url", id="credentials in the url are refused"),
        pytest.param({"url": "https:///a.png"}, "url", id="a url without host is refused"),
        pytest.param({"bucket": "Not_A_Bucket"}, "bucket", id="an invalid bucket name is refused"),
        pytest.param({"key": ""}, "key", id="an empty key is refused"),
        pytest.param({"key": "k" * 1025}, "key", id="a key over 1024 bytes is refused"),
        pytest.param({"maxBytes": 0}, "maxBytes", id="maxBytes must be positive"),
        pytest.param({"maxBytes": "lots"}, "maxBytes", id="maxBytes must be a number"),
        pytest.param({"contentTypes": []}, "contentTypes", id="contentTypes cannot be empty"),
        pytest.param({"contentTypes": ["image"]}, "contentTypes", id="a content type needs a subtype"),
        pytest.param({"contentTypes": ["*/png"]}, "contentTypes", id="only the subtype may be a wildcard"),
        pytest.param({"timeoutSeconds": 0}, "timeoutSeconds", id="timeoutSeconds must be positive"),
        pytest.param({"maxRedirects": -1}, "maxRedirects", id="maxRedirects cannot be negative"),
        pytest.param({"headers": {"Bad Name": "x"}}, "headers", id="a header name must be a token"),
        pytest.param({"headers": {"Host": "internal"}}, "headers", id="the Host header cannot be set"),
        pytest.param({"headers": {"X-A": "a\r\nX-B: b"}}, "headers", id="a header value cannot break lines"),
        pytest.param({"headersFromEnv": {"X-Token": "not a var"}}, "headersFromEnv", id="env names are checked"),
        pytest.param({"maxbytes": 10}, "maxbytes", id="a misspelt parameter is refused"),
    ],
)
def test_invalid_parameters_name_the_field(overrides: dict[str, object], field: str) -> None:
    raw = valid(**overrides)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(InvalidParams) as caught:
        parse_fetch_params(raw)
    message = str(caught.value)
    assert message.startswith("invalid parameters: ")
    assert field in message
    assert SECRET_QUERY not in message
    assert "pw@" not in message


def test_headers_from_env_are_merged_and_win() -> None:
    params = parse_fetch_params(valid(headers={"x-token": "plain", "X-Other": "o"}, headersFromEnv={"X-Token": "T"}))
    assert resolved_headers(params, {"T": "from-secret"}) == {"X-Other": "o", "X-Token": "from-secret"}


def test_a_missing_header_variable_names_the_variable_not_a_value() -> None:
    params = parse_fetch_params(valid(headersFromEnv={"Authorization": "API_TOKEN"}))
    with pytest.raises(InvalidParams, match=r"'Authorization' needs \$API_TOKEN"):
        resolved_headers(params, {})


def test_a_header_variable_with_a_line_break_is_refused_without_echoing_it() -> None:
    params = parse_fetch_params(valid(headersFromEnv={"Authorization": "API_TOKEN"}))
    with pytest.raises(InvalidParams) as caught:
        resolved_headers(params, {"API_TOKEN": "Bearer s3cr3t\r\nX-Evil: 1"})
    assert "s3cr3t" not in str(caught.value)


def test_params_are_frozen() -> None:
    params = parse_fetch_params(valid())
    with pytest.raises(ValueError, match="frozen"):
        params.key = "other"  # type: ignore[misc]
    assert isinstance(params, FetchParams)
