"""The operator's HTTP port: Prometheus metrics, liveness and readiness, and the audit history.

GET /metrics                                            Prometheus text format
GET /healthz                                            200 while the event loop and watches live
GET /readyz                                             200 once the initial listing was reconciled
GET /api/v1/namespaces/{ns}/processingjobs/{name}/history   the job's audit history (JSON, read-only)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HistoryLookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]
Check = Callable[[], tuple[bool, str]]


def build_app(
    registry: CollectorRegistry,
    *,
    live: Check,
    ready: Check,
    history: HistoryLookup | None,
) -> web.Application:
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
        if history is None:
            return web.json_response({"error": "the audit database is not configured"}, status=404)
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            document = await history(ns, name)
        except Exception as exc:  # the store's errors carry redacted, one-line messages
            return web.json_response({"error": str(exc)}, status=503)
        if document is None:
            return web.json_response({"error": f"no history for processingjob {ns}/{name}"}, status=404)
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", check(live))
    app.router.add_get("/readyz", check(ready))
    app.router.add_get("/api/v1/namespaces/{namespace}/processingjobs/{name}/history", job_history)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
