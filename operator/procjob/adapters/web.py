"""The operator's HTTP port: Prometheus metrics, liveness and readiness, and the audit history.

GET /metrics                                            Prometheus text format (open)
GET /healthz                                            200 while the event loop and watches live (open)
GET /readyz                                             200 once the initial listing was reconciled (open)
GET /api/v1/namespaces/{ns}/processingjobs/{name}/history   the job's audit history (JSON, read-only)
GET /api/v1/namespaces/{ns}/processingjobs/{name}/logs      its archived pod logs: the index (JSON)
GET /api/v1/namespaces/{ns}/processingjobs/{name}/logs/{stage}/{attempt}?container=C[&item=K]
                                                        one archived container log (its bytes); `item`:
                                                        the item of a fanned-out stage

The history holds spec snapshots, outputs and pod names, so it is served only to a caller whom
the API server lets `get` that ProcessingJob (procjob.adapters.authn): a bearer token in
`Authorization`, or in `X-Procjob-Authorization` when the request comes through the API
server's service proxy (which authenticates the caller itself and drops their `Authorization`
header before it forwards the request). 401 (with `WWW-Authenticate: Bearer`) without a valid
token, 403 without the right, 429 when one token polls too fast, 503 when the reviews cannot be
made; only then does a lookup happen, so nobody learns whether a job they may not read exists.
Without an authorizer the history is refused (503): it fails closed.

The archived logs are a tenant's output, so they need more: `get` on the job *and* `get pods/log`
in its namespace (what `kubectl logs` needs), checked the same way before any lookup. Both take
`?uid=` to pick one job of a reused name (default: the latest). Without a database they answer 404
saying that logs are not archived because the operator runs without one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from procjob.adapters.authn import Authorize, Verdict, retry_after_header

if TYPE_CHECKING:
    from procjob.adapters.audit import ArchivedLog, LogIndex

HistoryLookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]
Check = Callable[[], tuple[bool, str]]

PROXY_TOKEN_HEADER = "X-Procjob-Authorization"  # noqa: S105 (a header name)
HISTORY_PATH = "/api/v1/namespaces/{namespace}/processingjobs/{name}/history"
LOGS_PATH = "/api/v1/namespaces/{namespace}/processingjobs/{name}/logs"
LOG_PATH = LOGS_PATH + "/{stage}/{attempt}"
CHALLENGE = 'Bearer realm="procjob"'
LOG_HEADER = "X-Procjob-Log-"  # the prefix of the headers that describe an archived log
NO_DATABASE = "pod logs are not archived: the operator runs without a database (PROCJOB_DATABASE_URL)"


class ArchivedLogs(Protocol):
    """Where the archived logs are read (procjob.adapters.audit.AuditStore)."""

    async def log_index(self, namespace: str, name: str, uid: str | None = None) -> LogIndex | None: ...

    async def read_log(
        self,
        namespace: str,
        name: str,
        stage: str,
        attempt: int,
        container: str,
        uid: str | None = None,
        item: int | None = None,
    ) -> ArchivedLog | None: ...


def bearer_token(request: web.Request) -> str | None:
    """The bearer token of `Authorization`, else of `X-Procjob-Authorization`; None if neither has one."""
    for header in ("Authorization", PROXY_TOKEN_HEADER):
        scheme, _, token = request.headers.get(header, "").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _error(status: int, message: str, headers: dict[str, str] | None = None, *, reason: str = "") -> web.Response:
    body = {"error": message, **({"reason": reason} if reason else {})}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store", **(headers or {})})


def build_app(
    registry: CollectorRegistry,
    *,
    live: Check,
    ready: Check,
    history: HistoryLookup | None,
    authorize: Authorize | None = None,
    logs: ArchivedLogs | None = None,
    authorize_logs: Authorize | None = None,
    logs_off: str = NO_DATABASE,
) -> web.Application:
    """The app. `authorize` guards the history (procjob.adapters.authn.ReviewAuthorizer), and
    `authorize_logs` the archived logs (its `logs` method); None refuses every such request.
    `logs` None: the archive is off, and `logs_off` says why."""

    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(registry))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        resp.charset = "utf-8"
        return resp

    def check(fn: Check) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(_: web.Request) -> web.Response:
            ok, detail = fn()
            return web.Response(status=200 if ok else 503, text=(detail or ("ok" if ok else "not ok")) + "\n")

        return handler

    async def job_history(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        refusal = await _guard(authorize, request, ns, name)
        if refusal is not None:
            return refusal
        if history is None:
            return _error(404, "the audit database is not configured")
        try:
            document = await history(ns, name)
        except Exception as exc:  # the store's errors carry redacted, one-line messages
            return _error(503, str(exc))
        if document is None:
            return _error(404, f"no history for processingjob {ns}/{name}")
        return web.json_response(document, headers={"Cache-Control": "no-store"})

    async def log_index(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        refusal = await _guard(authorize_logs, request, ns, name)
        if refusal is not None:
            return refusal
        if logs is None:
            return _error(404, logs_off, reason="NotArchived")
        try:
            index = await logs.log_index(ns, name, request.query.get("uid") or None)
        except Exception as exc:  # the store's errors carry redacted, one-line messages
            return _error(503, str(exc))
        if index is None:
            return _error(404, f"no archived logs for processingjob {ns}/{name}")
        return web.json_response(index.to_json_dict(), headers={"Cache-Control": "no-store"})

    async def log_content(request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        refusal = await _guard(authorize_logs, request, ns, name)
        if refusal is not None:
            return refusal
        if logs is None:
            return _error(404, logs_off, reason="NotArchived")
        stage, attempt = request.match_info["stage"], request.match_info["attempt"]
        container = request.query.get("container") or "main"
        if not attempt.isdigit() or not 0 < int(attempt) < 2**31:
            return _error(400, f"attempt must be a positive integer, not {attempt!r}")
        item = request.query.get("item")
        if item is not None and (not item.isdigit() or not 0 <= int(item) < 2**31):
            return _error(400, f"item must be a non-negative integer, not {item!r}")
        of_item = "" if item is None else f" item {item}"
        what = f"processingjob {ns}/{name} stage {stage}{of_item} attempt {attempt} container {container}"
        uid = request.query.get("uid") or None
        try:
            found = await logs.read_log(
                ns, name, stage, int(attempt), container, uid, None if item is None else int(item)
            )
        except Exception as exc:
            return _error(503, str(exc))
        if found is None:
            return _error(404, f"no archived log for {what}")
        if found.error is not None:
            return _error(404, f"the log of {what} could not be archived: {found.error}", reason="Unavailable")
        return web.Response(body=found.content, content_type="application/octet-stream", headers=_log_headers(found))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", check(live))
    app.router.add_get("/readyz", check(ready))
    app.router.add_get(HISTORY_PATH, job_history)
    app.router.add_get(LOGS_PATH, log_index)
    app.router.add_get(LOG_PATH, log_content)
    return app


async def _guard(authorize: Authorize | None, request: web.Request, ns: str, name: str) -> web.Response | None:
    """The refusal for a caller the authorizer does not let through (None: go ahead)."""
    if authorize is None:
        return _error(503, "this endpoint has no authorizer configured; it serves nobody")
    verdict: Verdict = await authorize(bearer_token(request), ns, name)
    if verdict.status == 401:
        return _error(401, verdict.message, {"WWW-Authenticate": CHALLENGE})
    if verdict.status == 429:
        return _error(429, verdict.message, {"Retry-After": retry_after_header(verdict.retry_after)})
    if not verdict.allowed:
        return _error(verdict.status, verdict.message)
    return None


def _log_headers(found: ArchivedLog) -> dict[str, str]:
    """What the plugin shows above an archived log: which pod, how much of the log it is."""
    facts = {
        "Pod": found.pod_name,
        **({} if found.item is None else {"Item": str(found.item)}),
        "Container": found.container,
        "Size": str(found.size),
        "Received-Bytes": str(found.received_bytes),
        "Truncated": str(found.truncated).lower(),
        "Complete": str(found.complete).lower(),
        "Archived-At": found.archived_at.isoformat() if found.archived_at else "",
    }
    return {"Cache-Control": "no-store", **{LOG_HEADER + key: value for key, value in facts.items()}}


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
