"""`kubectl pj logs JOB [--stage S] [--attempt N] [-c CONTAINER] [--tail N] [-f] [--archived]`.

The attempt: by default the latest of the current stage, else of the last stage that ran (from
the job's status; `procjob.cli.pj_state.pick_attempt`). Its pod's log is streamed from the API
server (`get pods/log`) while the pod exists. Once the pod is gone (podGC, or the job was
deleted), the log comes from the operator's archive: the last bytes of each finished attempt's
container logs (`--log-archive-max-bytes`, 1 MiB by default), kept in the audit database. The
archive is read like the history (procjob.cli.pj_history): `--history-url`, $PROCJOB_HISTORY_URL,
a DSN (platform admins), else the API server's service proxy to the operator, always with the
caller's own token; the operator serves it only to whom may `get` the job and `get pods/log` in
its namespace. `--archived` reads the archive even while the pod exists.

A job that was deleted has no status to pick from: its archive's index does (the latest archived
attempt, of `--stage` when given). Without a database the operator archives nothing, and the
error says so.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from procjob.cli.pj_api import CONTAINER, Api
from procjob.cli.pj_commands import Context
from procjob.cli.pj_errors import EXIT_OK, ApiError, PluginError
from procjob.cli.pj_state import job_key, pick_attempt

if TYPE_CHECKING:
    from procjob.cli.pj_history import Source

HEADER = "X-Procjob-Log-"  # = procjob.adapters.web.LOG_HEADER (a test keeps them equal)


@dataclass(frozen=True)
class Archived:
    """One archived container log and what the archive says of it."""

    content: bytes
    pod: str
    container: str
    size: int
    received: int
    truncated: bool
    complete: bool

    def describe(self) -> str:
        if not self.truncated:
            return f"container {self.container}, all of its {_size(self.size)}"
        cut = "" if self.complete else "; the read was cut by its time or size bound"
        return f"container {self.container}, the last {_size(self.size)} of {_size(self.received)} read{cut}"


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def logs_path(namespace: str, name: str, stage: str | None = None, attempt: int | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/processingjobs/{quote(name, safe='')}/logs"
    return path if stage is None else f"{path}/{quote(stage, safe='')}/{attempt}"


def cmd_logs(ctx: Context) -> int:
    """The live log while the pod exists, else the archived one (see the module docstring)."""
    args = ctx.args
    api, ns = ctx.connect()
    container = args.container or CONTAINER
    job = _job_or_none(api, ns, args.job)
    if job is None:
        return _deleted_job(ctx, api, ns, container)
    stage, attempt, pod = pick_attempt(job, args.stage, args.attempt)
    if not args.archived:
        try:
            _stream_live(ctx, api, ns, pod, stage, attempt, container)
            return EXIT_OK
        except ApiError as exc:
            if exc.status != 404:
                raise PluginError(f"logs are not available: {exc.message}") from None
    uid = str((job.get("metadata") or {}).get("uid") or "")
    found = _read_archived(ctx, api, ns, args.job, stage, attempt, container, uid, pod)
    _write_archived(ctx, found, stage, attempt)
    return EXIT_OK


def _job_or_none(api: Api, ns: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = api.request("GET", api.job_path(ns, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return found


def _stream_live(ctx: Context, api: Api, ns: str, pod: str, stage: str, attempt: int, container: str) -> None:
    """Stream the pod's log; the header goes out with the first bytes (an error comes alone)."""
    params = {"container": container}
    if ctx.args.follow:
        params["follow"] = "true"
    if ctx.args.tail is not None:
        params["tailLines"] = str(ctx.args.tail)
    out = getattr(ctx.out, "buffer", None)
    started = False
    for chunk in api.stream_log(ns, pod, params):
        if not started:
            _header(ctx, f"pod {pod} (stage {stage}, attempt {attempt})")
            started = True
        _write(ctx, out, chunk)
    if not started:
        _header(ctx, f"pod {pod} (stage {stage}, attempt {attempt})")


def _header(ctx: Context, text: str) -> None:
    ctx.err.write(f"==> {text} <==\n")
    ctx.err.flush()


def _write(ctx: Context, out: Any, data: bytes) -> None:
    if out is not None:
        out.write(data)
        out.flush()
    else:
        ctx.out.write(data.decode(errors="replace"))


def _write_archived(ctx: Context, found: Archived, stage: str, attempt: int) -> None:
    gone = "" if ctx.args.archived else " is gone;"
    _header(ctx, f"pod {found.pod} (stage {stage}, attempt {attempt}){gone} archived log: {found.describe()}")
    content = found.content
    if ctx.args.tail is not None:
        content = b"".join(content.splitlines(keepends=True)[-ctx.args.tail :]) if ctx.args.tail > 0 else b""
    _write(ctx, getattr(ctx.out, "buffer", None), content)


def _deleted_job(ctx: Context, api: Api, ns: str, container: str) -> int:
    """The job is gone from the API: pick the attempt from its archive's index."""
    args = ctx.args
    key = job_key(ns, args.job)
    index = _index(ctx, api, ns, args.job, key)
    entries = [e for e in index.get("logs") or [] if args.stage is None or e.get("stage") == args.stage]
    if args.attempt is not None:
        entries = [e for e in entries if e.get("attempt") == args.attempt]
    if not entries:
        archived = ", ".join(sorted({f"{e.get('stage')} attempt {e.get('attempt')}" for e in index.get("logs") or []}))
        raise PluginError(
            f"{key} is not in the API server any more, and its archive holds no such log"
            f" (archived: {archived or 'none'})"
        )
    last = entries[-1]
    stage, attempt = str(last["stage"]), int(last["attempt"])
    found = _read_archived(
        ctx, api, ns, args.job, stage, attempt, container, str(index.get("uid") or ""), last.get("podName")
    )
    _write_archived(ctx, found, stage, attempt)
    return EXIT_OK


# ------------------------------------------------------------------------------ the archive
def _source(ctx: Context) -> Source:
    from procjob.cli import pj_history  # loads `procjob history`'s renderer: only when the archive is read

    args = ctx.args
    return pj_history.choose_source(args.history_url, args.database_url, args.operator_service, ctx.environ)


def _get(ctx: Context, api: Api, path: str, params: dict[str, str]) -> httpx.Response:
    from procjob.cli import pj_history

    source = _source(ctx)
    token = pj_history.bearer_token(api.access)
    if source.kind == "url":
        url = pj_history.check_url(str(source.value), ctx.args.allow_insecure_http)
        return pj_history.get_direct(url, token, path, params)
    return pj_history.get_through_proxy(api, str(source.value), token, path, params, what="the log archive")


def _index(ctx: Context, api: Api, ns: str, name: str, key: str) -> dict[str, Any]:
    source = _source(ctx)
    if source.kind == "dsn":
        found = asyncio.run(_from_database(source.value, ns, name, None, None, "", None))
        if not isinstance(found, dict):
            raise PluginError(f"{key} not found, neither in the API server nor in the audit database")
        return found
    try:
        resp = _get(ctx, api, logs_path(ns, name), {})
    except PluginError as exc:
        raise PluginError(f"{key} not found (nor could its log archive be read: {exc.message})") from None
    body = _json(resp)
    if resp.status_code == 200 and isinstance(body, dict):
        return body
    if resp.status_code == 404 and isinstance(body, dict) and body.get("reason") != "NotArchived":
        raise PluginError(f"{key} not found")  # neither in the API server nor in the archive
    raise PluginError(f"{key} not found in the API server; its log archive: {_why(resp, body)}")


def _read_archived(
    ctx: Context, api: Api, ns: str, name: str, stage: str, attempt: int, container: str, uid: str, pod: str | None
) -> Archived:
    source = _source(ctx)
    what = f"pod {pod} is gone" if pod and not ctx.args.archived else f"stage {stage} attempt {attempt}"
    if source.kind == "dsn":
        found = asyncio.run(_from_database(source.value, ns, name, stage, attempt, container, uid or None))
        if not isinstance(found, Archived):
            raise PluginError(f"logs are not available: {what}, and {found}")
        return found
    params = {"container": container, **({"uid": uid} if uid else {})}
    try:
        resp = _get(ctx, api, logs_path(ns, name, stage, attempt), params)
    except PluginError as exc:
        raise PluginError(f"logs are not available: {what}; its archived log: {exc.message}", exc.code) from None
    if resp.status_code != 200:
        raise PluginError(f"logs are not available: {what}, and {_why(resp, _json(resp))}")
    facts = {k[len(HEADER) :].lower(): v for k, v in resp.headers.items() if k.lower().startswith(HEADER.lower())}
    return Archived(
        content=resp.content,
        pod=facts.get("pod") or pod or "?",
        container=facts.get("container") or container,
        size=int(facts.get("size") or len(resp.content)),
        received=int(facts.get("received-bytes") or len(resp.content)),
        truncated=facts.get("truncated") == "true",
        complete=facts.get("complete") != "false",
    )


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _why(resp: httpx.Response, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"the operator answered {resp.status_code}: {resp.text[:200].strip()}"


async def _from_database(
    dsn: str | None, ns: str, name: str, stage: str | None, attempt: int | None, container: str, uid: str | None
) -> Archived | Mapping[str, Any] | str:
    """Platform admins: the archive read from PostgreSQL directly (the index when `stage` is None)."""
    from procjob.adapters.audit import AuditError, AuditStore, resolve_dsn

    try:
        resolved = dsn or resolve_dsn(os.environ)
        if not resolved:
            return "no database is configured"
        async with await AuditStore.open(resolved, min_size=1, max_size=1) as store:
            if stage is None or attempt is None:
                index = await store.log_index(ns, name)
                return "the audit database does not know it" if index is None else index.to_json_dict()
            found = await store.read_log(ns, name, stage, attempt, container, uid)
    except AuditError as exc:
        raise PluginError(f"the audit database: {exc}") from None
    if found is None:
        return f"no archived log for processingjob {ns}/{name} stage {stage} attempt {attempt} container {container}"
    if found.error is not None:
        return f"its log could not be archived: {found.error}"
    return Archived(
        found.content,
        found.pod_name,
        found.container,
        found.size,
        found.received_bytes,
        found.truncated,
        found.complete,
    )
