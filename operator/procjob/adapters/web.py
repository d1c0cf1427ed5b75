"""The operator's HTTP port: Prometheus metrics, liveness and readiness, and the audit history.

GET /metrics                                            Prometheus text format (open)
GET /healthz                                            200 while the event loop and watches live (open)
GET /readyz                                             200 once the initial listing was reconciled (open)
GET /api/v1/namespaces/{ns}/processingjobs/{name}/history   the job's audit history (JSON, read-only)

The history holds spec snapshots, outputs and pod names, so it is served only to a caller whom
the API server lets `get` that ProcessingJob (procjob.adapters.authn): a bearer token in
`Authorization`, or in `X-Procjob-Authorization` when the request comes through the API
server's service proxy (which authenticates the caller itself and drops their `Authorization`
header before it forwards the request). 401 (with `WWW-Authenticate: Bearer`) without a valid
token, 403 without the right, 429 when one token polls too fast, 503 when the reviews cannot be
made; only then does a lookup happen, so nobody learns whether a job they may not read exists.
Without an authorizer the history is refused (503): it fails closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from procjob.adapters.authn import Authorize, retry_after_header

HistoryLookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]
Check = Callable[[], tuple[bool, str]]

PROXY_TOKEN_HEADER = "X-Procjob-Authorization"  # noqa: S105 (a header name)
HISTORY_PATH = "/api/v1/namespaces/{namespace}/processingjobs/{name}/history"
CHALLENGE = 'Bearer realm="procjob"'


def bearer_token(request: web.Request) -> str | None:
    """The bearer token of `Authorization`, else of `X-Procjob-Authorization`; None if neither has one."""
    for header in ("Authorization", PROXY_TOKEN_HEADER):
        scheme, _, token = request.headers.get(header, "").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": message}, status=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def build_app(
    registry: CollectorRegistry,
    *,
    live: Check,
    ready: Check,
    history: HistoryLookup | None,
    authorize: Authorize | None = None,
) -> web.Application:
    """The app. `authorize` guards the history (procjob.adapters.authn.ReviewAuthorizer); None
    refuses every history request."""

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
        if authorize is None:
            return _error(503, "the history endpoint has no authorizer configured; it serves nobody")
        verdict = await authorize(bearer_token(request), ns, name)
        if verdict.status == 401:
            return _error(401, verdict.message, {"WWW-Authenticate": CHALLENGE})
        if verdict.status == 429:
            return _error(429, verdict.message, {"Retry-After": retry_after_header(verdict.retry_after)})
        if not verdict.allowed:
            return _error(verdict.status, verdict.message)
        if history is None:
            return _error(404, "the audit database is not configured")
        try:
            document = await history(ns, name)
        except Exception as exc:  # the store's errors carry redacted, one-line messages
            return _error(503, str(exc))
        if document is None:
            return _error(404, f"no history for processingjob {ns}/{name}")
        return web.json_response(document, headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", check(live))
    app.router.add_get("/readyz", check(ready))
    app.router.add_get(HISTORY_PATH, job_history)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
