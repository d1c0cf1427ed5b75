"""`kubectl pj history` over HTTP (procjob.cli.pj_history): where it reads from, what it sends,
how it tells the API server's refusals from the operator's, and that its table is `procjob
history`'s. HTTP answers come from httpx.MockTransport; the real paths are in
tests/integration/test_plugin.py and test_history_auth.py."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from procjob.adapters import web
from procjob.adapters.audit import AttemptRow, JobHistory, JobSummary
from procjob.cli import audit, pj_history
from procjob.cli.pj_api import Api
from procjob.cli.pj_connect import Access
from procjob.cli.pj_errors import EXIT_USAGE, PluginError

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def access(authorization: str | None = "Bearer tok") -> Access:
    headers = {"Authorization": authorization} if authorization else {}
    return Access(
        server="https://api.example:6443", namespace="team-a", verify=ssl.create_default_context(), headers=headers
    )


def test_the_proxy_header_is_spelled_as_the_operator_reads_it() -> None:
    assert pj_history.PROXY_TOKEN_HEADER == web.PROXY_TOKEN_HEADER


@pytest.mark.parametrize(
    ("flags", "environ", "expected"),
    [
        (("https://h", None, None), {}, pj_history.Source("url", "https://h")),
        ((None, "postgresql://x", None), {}, pj_history.Source("dsn", "postgresql://x")),
        ((None, None, None), {"PROCJOB_HISTORY_URL": "https://e"}, pj_history.Source("url", "https://e")),
        (
            (None, None, None),
            {"PROCJOB_HISTORY_URL": "https://e", "PROCJOB_DATABASE_URL": "postgresql://x"},
            pj_history.Source("url", "https://e"),
        ),
        ((None, None, None), {"PROCJOB_DATABASE_URL_FILE": "/dsn"}, pj_history.Source("dsn")),
        ((None, None, None), {}, pj_history.Source("proxy", "procjob-system/procjob-metrics")),
        ((None, None, "ops/pj-metrics"), {}, pj_history.Source("proxy", "ops/pj-metrics")),
        ((None, None, None), {"PROCJOB_OPERATOR_SERVICE": "ops/x"}, pj_history.Source("proxy", "ops/x")),
    ],
)
def test_the_source_is_flags_then_url_env_then_dsn_env_then_the_service_proxy(
    flags: tuple[str | None, str | None, str | None], environ: dict[str, str], expected: pj_history.Source
) -> None:
    assert pj_history.choose_source(*flags, environ) == expected


def test_a_url_and_a_dsn_together_are_a_usage_error() -> None:
    with pytest.raises(PluginError) as err:
        pj_history.choose_source("https://h", "postgresql://x", None, {})
    assert err.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    ("authorization", "says"), [(None, "client certificate"), ("Basic dTpw", "username and password")]
)
def test_without_a_bearer_token_the_error_says_what_to_use(authorization: str | None, says: str) -> None:
    with pytest.raises(PluginError) as err:
        pj_history.bearer_token(access(authorization))
    assert err.value.code == EXIT_USAGE
    assert says in err.value.message
    assert "kubectl create token" in err.value.message


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("https://procjob.example.com/", False, True),
        ("http://127.0.0.1:8080", False, True),
        ("http://localhost:8080", False, True),
        ("http://[::1]:8080", False, True),
        ("http://procjob-metrics.procjob-system.svc:8080", False, False),
        ("http://procjob-metrics.procjob-system.svc:8080", True, True),
        ("ftp://x", True, False),
        ("procjob.example.com", False, False),
    ],
)
def test_a_token_goes_in_clear_text_only_to_the_loopback_unless_allowed(url: str, allow: bool, ok: bool) -> None:
    if ok:
        assert pj_history.check_url(url, allow) == url.rstrip("/")
    else:
        with pytest.raises(PluginError) as err:
            pj_history.check_url(url, allow)
        assert err.value.code == EXIT_USAGE


def test_direct_requests_carry_the_token_and_quote_the_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"name": "j"})

    doc = pj_history.fetch_direct("https://h", "tok", "team-a", "j", transport=httpx.MockTransport(handler))
    assert doc == {"name": "j"}
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.url.path == "/api/v1/namespaces/team-a/processingjobs/j/history"


@pytest.mark.parametrize(("status", "body"), [(401, "a bearer token is required"), (403, "bob may not get")])
def test_the_operators_refusal_is_reported_with_its_message(status: int, body: str) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json={"error": body}))
    with pytest.raises(PluginError) as err:
        pj_history.fetch_direct("https://h", "tok", "team-a", "j", transport=transport)
    assert err.value.code == 1
    assert err.value.message == f"the history endpoint at https://h answered {status}: {body}"


def proxied(handler: Any) -> Api:
    return Api(access(), transport=httpx.MockTransport(handler))


def test_through_the_proxy_the_token_is_sent_again_in_the_proxy_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"name": "j"})

    api = proxied(handler)
    assert pj_history.fetch_through_proxy(api, "procjob-system/procjob-metrics", "tok", "team-a", "j") == {"name": "j"}
    (request,) = seen
    assert request.url.path == (
        "/api/v1/namespaces/procjob-system/services/http:procjob-metrics:metrics/proxy"
        "/api/v1/namespaces/team-a/processingjobs/j/history"
    )
    assert request.headers["Authorization"] == "Bearer tok"  # for the API server
    assert request.headers[pj_history.PROXY_TOKEN_HEADER] == "Bearer tok"  # for the operator


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, 'services "http:procjob-metrics:metrics" is forbidden: User "u" cannot get resource "services/proxy"'),
        (404, 'services "procjob-metrics" not found'),
        (503, 'no endpoints available for service "procjob-metrics"'),
    ],
)
def test_the_api_servers_refusal_says_to_set_the_history_url(status: int, message: str) -> None:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": status}
    api = proxied(lambda _: httpx.Response(status, json=body))
    with pytest.raises(PluginError) as err:
        pj_history.fetch_through_proxy(api, "procjob-system/procjob-metrics", "tok", "team-a", "j")
    assert err.value.code == EXIT_USAGE
    assert message in err.value.message
    assert "--history-url" in err.value.message


def test_the_operators_answer_through_the_proxy_is_the_operators() -> None:
    api = proxied(lambda _: httpx.Response(403, json={"error": "bob may not get processingjobs.procjob.dev a/j"}))
    with pytest.raises(PluginError) as err:
        pj_history.fetch_through_proxy(api, "procjob-system/procjob-metrics", "tok", "a", "j")
    assert err.value.code == 1
    assert err.value.message.endswith("answered 403: bob may not get processingjobs.procjob.dev a/j")


def test_a_malformed_operator_service_is_a_usage_error() -> None:
    with pytest.raises(PluginError) as err:
        pj_history.fetch_through_proxy(proxied(lambda _: httpx.Response(200)), "procjob-metrics", "t", "a", "j")
    assert err.value.code == EXIT_USAGE
    assert "NAMESPACE/NAME" in err.value.message


def test_the_table_is_the_one_procjob_history_prints() -> None:
    history = JobHistory(
        uid="u-1",
        namespace="team-a",
        name="j",
        job=JobSummary(
            uid="u-1",
            namespace="team-a",
            name="j",
            state="Failed",
            reason="BackoffLimitExceeded",
            created_at=T0,
            deleted_at=T0,
        ),
        attempts=(
            AttemptRow(
                stage="a",
                attempt=1,
                pod_name="p1",
                start_time=T0,
                end_time=T0,
                exit_code=0,
                reason="Completed",
                result="Succeeded",
            ),
            AttemptRow(stage="b", attempt=1, start_time=T0, result="Pending"),
        ),
    )
    assert pj_history.to_output(history.to_json_dict(), "table") == audit.render_history(history)
    empty = JobHistory(uid="u-2", namespace="team-a", name="k")
    assert pj_history.to_output(empty.to_json_dict(), "table") == audit.render_history(empty)
