"""`kubectl pj history JOB`: a tenant reads a job's audit history with their own Kubernetes token.

Where the history comes from, first match wins:
1. `--history-url URL` (or `--database-url DSN`; not both)
2. $PROCJOB_HISTORY_URL
3. $PROCJOB_DATABASE_URL / $PROCJOB_DATABASE_URL_FILE: PostgreSQL directly (platform admins)
4. the API server's service proxy to the operator's Service (`--operator-service NS/NAME`, else
   $PROCJOB_OPERATOR_SERVICE, else procjob-system/procjob-metrics, the chart's default)

With a URL the request goes straight to the operator's HTTP port with the caller's bearer token
in `Authorization`. Through the service proxy the API server first authenticates the caller and
checks `get` on `services/proxy` of the operator's Service, then forwards the request *without*
the caller's `Authorization` header (it removes it after authenticating), so the plugin sends
the token a second time in `X-Procjob-Authorization`. Either way the operator answers only if a
TokenReview accepts the token and a SubjectAccessReview allows `get` on the ProcessingJob.

So the history needs a bearer token: from the kubeconfig (`token`, `tokenFile`, an exec
credential plugin) or the in-cluster service account. A client certificate cannot be reviewed
by the operator and is refused here with a message saying what to use instead. A token is never
sent in clear text to another host: `http://` URLs are refused unless they name the loopback
(e.g. `kubectl port-forward`), or --allow-insecure-http is given.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

import httpx

from procjob.cli import audit
from procjob.cli.pj_api import Api
from procjob.cli.pj_connect import Access
from procjob.cli.pj_errors import EXIT_USAGE, PluginError
from procjob.core.timefmt import parse_time

if TYPE_CHECKING:
    from procjob.adapters.audit import AttemptRow

HISTORY_URL_ENV = "PROCJOB_HISTORY_URL"
OPERATOR_SERVICE_ENV = "PROCJOB_OPERATOR_SERVICE"
DEFAULT_OPERATOR_SERVICE = "procjob-system/procjob-metrics"
SERVICE_PORT = "metrics"  # the chart's port name (templates/service.yaml)
# = procjob.adapters.web.PROXY_TOKEN_HEADER; spelled here to keep aiohttp out of kubectl pj (a test keeps them equal)
PROXY_TOKEN_HEADER = "X-Procjob-Authorization"  # noqa: S105 (a header name)
HINT = (
    "set --history-url (or $PROCJOB_HISTORY_URL) to the operator's history endpoint (ask your platform team),"
    " or --operator-service NAMESPACE/NAME if the operator runs elsewhere"
)


@dataclass(frozen=True)
class Source:
    """Where `history` reads from: kind `url`, `dsn` or `proxy`, and its value."""

    kind: str
    value: str | None = None


def choose_source(
    history_url: str | None, database_url: str | None, operator_service: str | None, environ: Mapping[str, str]
) -> Source:
    if history_url and database_url:
        raise PluginError("give --history-url or --database-url, not both", EXIT_USAGE)
    if history_url:
        return Source("url", history_url)
    if database_url:
        return Source("dsn", database_url)
    if environ.get(HISTORY_URL_ENV):
        return Source("url", environ[HISTORY_URL_ENV])
    if environ.get(audit.ENV_DSN) or environ.get(audit.ENV_DSN_FILE):
        return Source("dsn")
    return Source("proxy", operator_service or environ.get(OPERATOR_SERVICE_ENV) or DEFAULT_OPERATOR_SERVICE)


def bearer_token(access: Access) -> str:
    """The caller's bearer token, or a usage error saying why there is none and what to do."""
    scheme, _, token = access.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer" and token:
        return token
    how = "a username and password" if scheme == "Basic" else "a client certificate (or nothing)"
    raise PluginError(
        f"the history endpoint needs a bearer token, and the kubeconfig user authenticates with {how};"
        " use a token (a `token`, `tokenFile` or exec credential plugin in the kubeconfig, e.g. from"
        " `kubectl create token`), or `procjob history` with the audit database DSN",
        EXIT_USAGE,
    )


def history_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/processingjobs/{quote(name, safe='')}/history"


def check_url(url: str, allow_insecure_http: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PluginError(f"--history-url {url!r} is not an http(s) URL", EXIT_USAGE)
    if parts.scheme == "http" and not allow_insecure_http and not _loopback(parts.hostname):
        raise PluginError(
            f"--history-url {url!r} would send your token in clear text to {parts.hostname}; use https"
            " (or the loopback, e.g. through `kubectl port-forward`), or --allow-insecure-http",
            EXIT_USAGE,
        )
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_direct(
    url: str, token: str, namespace: str, name: str, *, transport: httpx.BaseTransport | None = None
) -> dict[str, Any]:
    """GET the history from the operator's HTTP port (or whatever fronts it) with the token."""
    resp = get_direct(url, token, history_path(namespace, name), transport=transport)
    return _document(resp, f"the history endpoint at {url}")


def fetch_through_proxy(api: Api, service: str, token: str, namespace: str, name: str) -> dict[str, Any]:
    """GET the history through the API server's service proxy, the token again in the proxy header."""
    resp = get_through_proxy(api, service, token, history_path(namespace, name))
    return _document(resp, f"the operator (through the service proxy to {service})")


def get_direct(
    url: str,
    token: str,
    path: str,
    params: dict[str, str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Response:
    """GET `path` of the operator's HTTP port (or whatever fronts it) with the token: any answer."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": "kubectl-pj"}
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), transport=transport) as client:
            return client.get(url + path, headers=headers, params=params)
    except httpx.HTTPError as exc:
        raise PluginError(f"cannot reach the history endpoint at {url}: {exc}") from None


def get_through_proxy(
    api: Api, service: str, token: str, path: str, params: dict[str, str] | None = None, *, what: str = "the history"
) -> httpx.Response:
    """GET `path` of the operator through the API server's service proxy (the token again in the
    proxy header): the operator's answer, or a usage error when the proxy itself refused."""
    svc_ns, sep, svc = service.partition("/")
    if not sep or not svc_ns or not svc:
        raise PluginError(f"--operator-service {service!r} is not NAMESPACE/NAME", EXIT_USAGE)
    proxy = f"/api/v1/namespaces/{svc_ns}/services/http:{svc}:{SERVICE_PORT}/proxy" + path
    try:
        resp = api.http.get(proxy, headers={PROXY_TOKEN_HEADER: f"Bearer {token}"}, params=params)
    except httpx.HTTPError as exc:
        raise PluginError(f"cannot reach the API server at {api.server}: {exc}") from None
    problem = _json(resp)
    if resp.status_code >= 300 and isinstance(problem, dict) and problem.get("kind") == "Status":
        # The API server's own answer: the proxy did not reach the operator.
        message = str(problem.get("message") or f"HTTP {resp.status_code}")
        raise PluginError(
            f"cannot read {what} through the API server's service proxy to {service} ({message}); {HINT}",
            EXIT_USAGE,
        )
    return resp


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _document(resp: httpx.Response, where: str) -> dict[str, Any]:
    body = _json(resp)
    if resp.status_code == 200 and isinstance(body, dict):
        return body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        raise PluginError(f"{where} answered {resp.status_code}: {body['error']}")
    raise PluginError(f"{where} answered {resp.status_code} without a history document: {resp.text[:200].strip()}")


@dataclass(frozen=True)
class _Row:
    """An attempt of the JSON document with the attributes audit.render_table reads."""

    stage: str
    attempt: int
    item: int | None
    pod_name: str | None
    start_time: datetime | None
    end_time: datetime | None
    duration_seconds: float | None
    exit_code: int | None
    reason: str
    result: str


def render_document(doc: Mapping[str, Any]) -> str:
    """The same summary line and table as `procjob history`, from the endpoint's JSON."""
    job = doc.get("job")
    if not job:
        state = "no summary recorded yet"
    else:
        state = f"{job.get('state')} ({job['reason']})" if job.get("reason") else str(job.get("state"))
        deleted = parse_time(job.get("deletedAt"))
        if deleted is not None:
            state += f", deleted {deleted.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    lines = [f"processingjob {doc.get('namespace')}/{doc.get('name')} uid {doc.get('uid')}: {state}", ""]
    rows = [
        _Row(
            stage=str(a.get("stage")),
            attempt=int(a.get("attempt") or 0),
            item=a.get("item") if isinstance(a.get("item"), int) else None,
            pod_name=a.get("podName"),
            start_time=parse_time(a.get("startTime")),
            end_time=parse_time(a.get("endTime")),
            duration_seconds=a.get("durationSeconds"),
            exit_code=a.get("exitCode"),
            reason=str(a.get("reason") or ""),
            result=str(a.get("result") or ""),
        )
        for a in doc.get("attempts") or []
    ]
    table = audit.render_table(cast("Sequence[AttemptRow]", rows)) if rows else "no attempts recorded"
    logs = [
        audit.ArchivedLogRow(
            str(entry.get("stage")),
            int(entry.get("attempt") or 0),
            str(entry.get("container")),
            int(entry.get("size") or 0),
            bool(entry.get("truncated")),
            entry.get("error"),
            entry["item"] if isinstance(entry.get("item"), int) else None,
        )
        for entry in doc.get("logs") or []
    ]
    return "\n".join([*lines, table]) + "\n" + audit.render_logs(logs)


def to_output(doc: Mapping[str, Any], output: str) -> str:
    return json.dumps(doc, indent=2) + "\n" if output == "json" else render_document(doc)
