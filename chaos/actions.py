"""What the suite does as the jobs' users: create them on schedule, cancel, suspend and resume,
retry, delete; disrupt their pods (delete, force-delete, evict); patch them at 10 Hz.

Every action is logged in the context (ctx.action), and every disruption the API server accepted
is recorded by pod UID with the moment the request was sent (ctx.disruptions): that is how the
checker knows, without asking the operator, which pod deletions were someone else's doing.
User writes are retried until they land (a user keeps trying while the API server is down).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.api import ApiError, TransportError

from chaos.context import JOBS, Context
from chaos.policy import Disruption
from chaos.workload import KIND_LABEL, JobPlan, Workload

MERGE = "application/merge-patch+json"
RUNNING_WITHIN = 240.0  # how long an action waits for its job's pod to run


async def persist(what: str, call: Callable[[], Awaitable[Any]], within: float = 300.0) -> Any:
    """Retry a user's write until the API server takes it; None on 404 (the object went)."""
    deadline = time.monotonic() + within
    pause = 0.2
    while True:
        try:
            return await call()
        except ApiError as exc:
            if exc.status == 404:
                return None
            if exc.status not in (409, 429, 500, 502, 503, 504) or time.monotonic() > deadline:
                raise
        except TransportError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(2.0, pause * 2)


def job_path(ns: str, name: str = "") -> str:
    return f"{JOBS}/namespaces/{ns}/processingjobs" + (f"/{name}" if name else "")


async def patch_job(ctx: Context, ns: str, name: str, body: dict[str, Any]) -> Any:
    return await persist(
        f"patch {ns}/{name}",
        lambda: ctx.api.request("PATCH", job_path(ns, name), body=body, content_type=MERGE, seconds=20),
    )


async def create(ctx: Context, manifest: dict[str, Any]) -> dict[str, Any] | None:
    meta = manifest["metadata"]

    async def post() -> Any:
        try:
            return await ctx.api.request("POST", job_path(meta["namespace"]), body=manifest, seconds=20)
        except ApiError as exc:
            if exc.status == 409:  # a create that timed out and still landed
                return await ctx.api.request("GET", job_path(meta["namespace"], meta["name"]), seconds=20)
            raise

    created: dict[str, Any] | None = await persist(f"create {meta['name']}", post)
    ctx.action("create", ns=meta["namespace"], name=meta["name"], uid=(created or {}).get("metadata", {}).get("uid"))
    return created


async def arrivals(ctx: Context, workload: Workload, run_id: str, seed: int) -> None:
    """Create each planned job at its time, then start what the suite will do to it."""
    for plan in workload.plans:
        delay = ctx.t0 + plan.at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        ctx.spawn(_lifecycle(ctx, plan, run_id, random.Random(f"{seed}/{plan.name}")))


async def _lifecycle(ctx: Context, plan: JobPlan, run_id: str, rng: random.Random) -> None:
    created = await create(ctx, plan.manifest(run_id))
    if created is None:
        return
    uid = created["metadata"]["uid"]
    act = {"cancel": cancel, "suspend": suspend, "delete": delete, "disrupt": disrupt, "retried": retry}.get(plan.kind)
    if act is not None:
        await act(ctx, plan, uid, rng)


def running_pod(ctx: Context, uid: str) -> dict[str, Any] | None:
    for pod in ctx.world.pods_of(uid):
        if (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
            return pod
    return None


def job_state(ctx: Context, ns: str, name: str, uid: str) -> str:
    """gone, failed, succeeded (True) / ended (any terminal), or running."""
    job = ctx.world.jobs.get((ns, name))
    if job is None or job["metadata"].get("uid") != uid or job["metadata"].get("deletionTimestamp"):
        return "gone"
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Succeeded" and cond.get("status") in ("True", "False"):
            return "failed" if cond["status"] == "False" else "succeeded"
    return "running"


async def until_running(ctx: Context, plan: JobPlan, uid: str) -> dict[str, Any] | None:
    """The job's running pod, or None once the job ended or went (or after RUNNING_WITHIN)."""

    def check() -> Any:
        pod = running_pod(ctx, uid)
        if pod is not None:
            return pod
        return "over" if job_state(ctx, plan.namespace, plan.name, uid) != "running" else None

    found = await until(check, RUNNING_WITHIN)
    return found if isinstance(found, dict) else None


async def until(check: Callable[[], Any], within: float) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.2)
    return None


async def cancel(ctx: Context, plan: JobPlan, uid: str, rng: random.Random) -> None:
    await asyncio.sleep(plan.act_after * 3)  # 1.5-12 s: queued, starting or running
    await patch_job(ctx, plan.namespace, plan.name, {"spec": {"cancel": True}})
    ctx.action("cancel", ns=plan.namespace, name=plan.name, uid=uid)


async def suspend(ctx: Context, plan: JobPlan, uid: str, rng: random.Random) -> None:
    if await until_running(ctx, plan, uid) is None:
        ctx.action("suspend-skipped", ns=plan.namespace, name=plan.name, uid=uid)
        return
    await asyncio.sleep(plan.act_after)
    await patch_job(ctx, plan.namespace, plan.name, {"spec": {"suspend": True}})
    ctx.action("suspend", ns=plan.namespace, name=plan.name, uid=uid)
    await asyncio.sleep(plan.hold)
    await patch_job(ctx, plan.namespace, plan.name, {"spec": {"suspend": False}})
    ctx.action("resume", ns=plan.namespace, name=plan.name, uid=uid)


async def delete(ctx: Context, plan: JobPlan, uid: str, rng: random.Random) -> None:
    if await until_running(ctx, plan, uid) is None:
        ctx.action("delete-skipped", ns=plan.namespace, name=plan.name, uid=uid)
        return
    await asyncio.sleep(plan.act_after)
    await delete_job(ctx, plan.namespace, plan.name, uid)


async def delete_job(ctx: Context, ns: str, name: str, uid: str) -> None:
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
    try:
        await persist(f"delete {name}", lambda: ctx.api.request("DELETE", job_path(ns, name), body=body, seconds=20))
    except ApiError as exc:
        if exc.status != 409:  # 409: the precondition failed, the job of that UID is gone already
            raise
    ctx.action("delete", ns=ns, name=name, uid=uid)


async def retry(ctx: Context, plan: JobPlan, uid: str, rng: random.Random) -> None:
    def over() -> str | None:
        state = job_state(ctx, plan.namespace, plan.name, uid)
        return None if state == "running" else state

    if await until(over, 900.0) != "failed":
        ctx.action("retry-skipped", ns=plan.namespace, name=plan.name, uid=uid)
        return
    value = f"chaos-{int(time.time())}"
    await patch_job(ctx, plan.namespace, plan.name, {"metadata": {"annotations": {"procjob.dev/retry": value}}})
    ctx.action("retry", ns=plan.namespace, name=plan.name, uid=uid, value=value)


async def disrupt(ctx: Context, plan: JobPlan, uid: str, rng: random.Random) -> None:
    pod = await until_running(ctx, plan, uid)
    if pod is None:
        ctx.action("disrupt-skipped", ns=plan.namespace, name=plan.name, uid=uid)
        return
    await asyncio.sleep(plan.act_after)
    await disrupt_pod(ctx, pod, rng.choice(["delete", "force", "evict"]))


async def disrupt_pod(ctx: Context, pod: dict[str, Any], method: str) -> bool:
    meta = pod["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    path = f"/api/v1/namespaces/{ns}/pods/{name}"
    sent = time.time()
    try:
        if method == "evict":
            body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}
            await ctx.api.request("POST", path + "/eviction", body=body, seconds=20)
        else:
            options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
            if method == "force":
                options["gracePeriodSeconds"] = 0
            await ctx.api.request("DELETE", path, body=options, seconds=20)
    except (ApiError, TransportError) as exc:
        ctx.action(f"{method}-failed", ns=ns, pod=name, uid=uid, error=str(exc)[:200])
        return False
    ctx.disruptions[uid] = Disruption(method, sent)
    ctx.action(method, ns=ns, pod=name, uid=uid)
    return True


def running_jobs(ctx: Context) -> list[dict[str, Any]]:
    out = []
    for job in ctx.world.jobs.values():
        status = job.get("status") or {}
        conds = status.get("conditions") or []
        ended = any(c.get("type") == "Succeeded" and c.get("status") in ("True", "False") for c in conds)
        if status.get("startTime") and not ended and not job["metadata"].get("deletionTimestamp"):
            out.append(job)
    return out


async def writer(ctx: Context, seconds: float, hz: float = 10.0) -> dict[str, Any]:
    """Patch labels, annotations, priority and suspend of running jobs at `hz` for `seconds`."""
    counts: dict[str, int] = {}
    resumes: dict[tuple[str, str], float] = {}
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        await _resume_due(ctx, resumes, counts, time.monotonic())
        jobs = running_jobs(ctx)
        if jobs:
            picked = ctx.rng.choice(jobs)
            ns, name = picked["metadata"]["namespace"], picked["metadata"]["name"]
            op = ctx.rng.choices(["label", "annotation", "priority", "suspend"], [4, 3, 2, 1])[0]
            bodies: dict[str, dict[str, Any]] = {
                "label": {"metadata": {"labels": {"chaos.procjob.dev/tick": str(n)}}},
                "annotation": {"metadata": {"annotations": {"chaos.procjob.dev/note": f"write {n}"}}},
                "priority": {"spec": {"priority": ctx.rng.randint(0, 5)}},
                "suspend": {"spec": {"suspend": True}},
            }
            body = bodies[op]
            if op == "suspend" and (ns, name) in resumes:
                op, body = "label", {"metadata": {"labels": {"chaos.procjob.dev/tick": str(n)}}}
            await _write(ctx, ns, name, body, op, counts)
            if op == "suspend":
                resumes[(ns, name)] = time.monotonic() + ctx.rng.uniform(0.5, 2.0)
        await asyncio.sleep(1.0 / hz)
    await _resume_due(ctx, resumes, counts, float("inf"))
    return counts


async def _write(ctx: Context, ns: str, name: str, body: dict[str, Any], op: str, counts: dict[str, int]) -> None:
    try:
        await ctx.api.request("PATCH", job_path(ns, name), body=body, content_type=MERGE, seconds=10)
        counts[op] = counts.get(op, 0) + 1
    except (ApiError, TransportError) as exc:
        key = f"{op}-{getattr(exc, 'status', 'transport')}"
        counts[key] = counts.get(key, 0) + 1


async def _resume_due(ctx: Context, resumes: dict[tuple[str, str], float], counts: dict[str, int], now: float) -> None:
    for (ns, name), due in list(resumes.items()):
        if due <= now:
            await patch_job(ctx, ns, name, {"spec": {"suspend": False}})
            counts["resume"] = counts.get("resume", 0) + 1
            del resumes[(ns, name)]


def kind_of(job: dict[str, Any]) -> str:
    return str((job["metadata"].get("labels") or {}).get(KIND_LABEL, ""))
