"""`kubectl pj logs JOB [--stage S] [--item K] [--attempt N] [-c CONTAINER] [--tail N] [-f] [--archived]`.

The attempt: by default the latest of the current stage, else of the last stage that ran (from
the job's status; `procjob.cli.pj_state.pick_attempt`). In a fanned-out stage (forEach) each item
has its own attempts: `--item K` names the item, and is required there (`procjob.cli.pj_items`).
Its pod's log is streamed from the API
server (`get pods/log`) while the pod exists. Once the pod is gone (podGC, or the job was
deleted), the log comes from the operator's archive: the last bytes of each finished attempt's
container logs (`--log-archive-max-bytes`, 1 MiB by default), kept in the audit database. The
archive is read like the history (procjob.cli.pj_history): `--history-url`, $PROCJOB_HISTORY_URL,
a DSN (platform admins), else the API server's service proxy to the operator, always with the
caller's own token; the operator serves it only to whom may `get` the job and `get pods/log` in
its namespace. `--archived` reads the archive even while the pod exists.

A job that was deleted has no status to pick from: its archive's index does (the latest archived
attempt, of `--stage` and `--item` when given). Without a database the operator archives nothing, and the
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
from procjob.cli.pj_items import Pick, item_selector, latest_pod, pick
from procjob.cli.pj_state import job_key

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


def _what(picked: Pick) -> str:
    """`stage S, attempt N`, or `stage S, item K, attempt N`."""
    of_item = "" if picked.item is None else f", item {picked.item}"
    return f"stage {picked.stage}{of_item}, attempt {picked.attempt}"


def cmd_logs(ctx: Context) -> int:
    """The live log while the pod exists, else the archived one (see the module docstring)."""
    args = ctx.args
    api, ns = ctx.connect()
    container = args.container or CONTAINER
    job = _job_or_none(api, ns, args.job)
    if job is None:
        return _deleted_job(ctx, api, ns, container)
    uid = str((job.get("metadata") or {}).get("uid") or "")
    picked = pick(job, args.stage, args.attempt, args.item)
    if picked.attempt is None and picked.item is not None:
        picked = _item_latest(ctx, api, ns, uid, picked.stage, picked.item)
    if not args.archived and picked.pod:
        try:
            _stream_live(ctx, api, ns, picked.pod, _what(picked), container)
            return EXIT_OK
        except ApiError as exc:
            if exc.status != 404:
                raise PluginError(f"logs are not available: {exc.message}") from None
    found = _read_archived(ctx, api, ns, args.job, picked, container, uid)
    _write_archived(ctx, found, picked)
    return EXIT_OK


def _item_latest(ctx: Context, api: Api, ns: str, uid: str, stage: str, item: int) -> Pick:
    """An item whose attempts the status no longer lists: its latest pod (by its labels), else its
    latest archived attempt."""
    selector = item_selector(uid, stage, item)
    try:
        pods = api.request("GET", f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})
        latest = latest_pod(pods.get("items") or [])
    except ApiError:
        latest = None  # listing pods is not granted: the archive may still know
    if latest is not None:
        return Pick(stage, item, latest[0], latest[1])
    key = job_key(ns, ctx.args.job)
    try:
        index = _index(ctx, api, ns, ctx.args.job, key)
    except PluginError as exc:
        raise PluginError(f"{key}: stage {stage} item {item} has no pod left, and {exc.message}") from None
    entries = [e for e in index.get("logs") or [] if e.get("stage") == stage and e.get("item") == item]
    if not entries:
        raise PluginError(
            f"{key}: stage {stage} item {item}: the status no longer lists its attempts, none of its pods is left"
            " and the archive holds none of its logs"
        )
    return Pick(stage, item, int(entries[-1]["attempt"]), entries[-1].get("podName"))


def _job_or_none(api: Api, ns: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = api.request("GET", api.job_path(ns, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return found


def _stream_live(ctx: Context, api: Api, ns: str, pod: str, what: str, container: str) -> None:
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
            _header(ctx, f"pod {pod} ({what})")
            started = True
        _write(ctx, out, chunk)
    if not started:
        _header(ctx, f"pod {pod} ({what})")


def _header(ctx: Context, text: str) -> None:
    ctx.err.write(f"==> {text} <==\n")
    ctx.err.flush()


def _write(ctx: Context, out: Any, data: bytes) -> None:
    if out is not None:
        out.write(data)
        out.flush()
    else:
        ctx.out.write(data.decode(errors="replace"))


def _write_archived(ctx: Context, found: Archived, picked: Pick) -> None:
    gone = "" if ctx.args.archived else " is gone;"
    _header(ctx, f"pod {found.pod} ({_what(picked)}){gone} archived log: {found.describe()}")
    content = found.content
    if ctx.args.tail is not None:
        content = b"".join(content.splitlines(keepends=True)[-ctx.args.tail :]) if ctx.args.tail > 0 else b""
    _write(ctx, getattr(ctx.out, "buffer", None), content)


def _deleted_job(ctx: Context, api: Api, ns: str, container: str) -> int:
    """The job is gone from the API: pick the attempt from its archive's index."""
    args = ctx.args
    key = job_key(ns, args.job)
    index = _index(ctx, api, ns, args.job, key)
    logs = index.get("logs") or []
    entries = [e for e in logs if args.stage is None or e.get("stage") == args.stage]
    if args.item is not None:
        entries = [e for e in entries if e.get("item") == args.item]
    if args.attempt is not None:
        entries = [e for e in entries if e.get("attempt") == args.attempt]
    if not entries:
        archived = ", ".join(sorted({_entry(e) for e in logs}))
        raise PluginError(
            f"{key} is not in the API server any more, and its archive holds no such log"
            f" (archived: {archived or 'none'})"
        )
    last = entries[-1]
    stage, item = str(last["stage"]), last.get("item")
    if args.item is None and isinstance(item, int):
        items = sorted({e["item"] for e in logs if e.get("stage") == stage and isinstance(e.get("item"), int)})
        shown = ", ".join(str(i) for i in items[:10]) + (", …" if len(items) > 10 else "")
        raise PluginError(
            f"{key} is not in the API server any more; its stage {stage} is fanned out (forEach): name one item"
            f" with --item K (the archive holds logs of {len(items)} of its items: {shown})"
        )
    picked = Pick(stage, item if isinstance(item, int) else None, int(last["attempt"]), last.get("podName"))
    found = _read_archived(ctx, api, ns, args.job, picked, container, str(index.get("uid") or ""))
    _write_archived(ctx, found, picked)
    return EXIT_OK


def _entry(entry: Mapping[str, Any]) -> str:
    of_item = "" if entry.get("item") is None else f" item {entry.get('item')}"
    return f"{entry.get('stage')}{of_item} attempt {entry.get('attempt')}"


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
        found = asyncio.run(_from_database(source.value, ns, name, None, "", None))
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


def _read_archived(ctx: Context, api: Api, ns: str, name: str, picked: Pick, container: str, uid: str) -> Archived:
    source = _source(ctx)
    pod = picked.pod
    what = f"pod {pod} is gone" if pod and not ctx.args.archived else _what(picked)
    if source.kind == "dsn":
        found = asyncio.run(_from_database(source.value, ns, name, picked, container, uid or None))
        if not isinstance(found, Archived):
            raise PluginError(f"logs are not available: {what}, and {found}")
        return found
    params = {"container": container, **({"uid": uid} if uid else {})}
    if picked.item is not None:
        params["item"] = str(picked.item)
    try:
        resp = _get(ctx, api, logs_path(ns, name, picked.stage, picked.attempt), params)
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
    dsn: str | None, ns: str, name: str, picked: Pick | None, container: str, uid: str | None
) -> Archived | Mapping[str, Any] | str:
    """Platform admins: the archive read from PostgreSQL directly (the index when `picked` is None)."""
    from procjob.adapters.audit import AuditError, AuditStore, resolve_dsn

    try:
        resolved = dsn or resolve_dsn(os.environ)
        if not resolved:
            return "no database is configured"
        async with await AuditStore.open(resolved, min_size=1, max_size=1) as store:
            if picked is None or picked.attempt is None:
                index = await store.log_index(ns, name)
                return "the audit database does not know it" if index is None else index.to_json_dict()
            found = await store.read_log(ns, name, picked.stage, picked.attempt, container, uid, picked.item)
    except AuditError as exc:
        raise PluginError(f"the audit database: {exc}") from None
    if found is None:
        return f"no archived log for processingjob {ns}/{name} {_what(picked)} container {container}"
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
