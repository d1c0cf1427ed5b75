"""The phases after the faults: the 10,000 jobs created while no operator runs, the calm window,
the end state, and the deletion of everything (each returns what the report and the checker need).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

from bench.api import ApiError, TransportError
from bench.auditdb import wait_drained

from chaos import infra
from chaos.actions import job_path
from chaos.context import Context
from chaos.workload import JobPlan, flood


def ended(job: dict[str, Any]) -> bool:
    conds = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Succeeded" and c.get("status") in ("True", "False") for c in conds)


async def flood_phase(ctx: Context, count: int) -> dict[str, Any]:
    """Both replicas down; `count` jobs created; replicas started; time until every one has ended."""
    ns = ctx.namespaces[-1]
    await hold_replicas(ctx)
    t_create = time.time()
    plans = flood(count, ns).plans
    sem = asyncio.Semaphore(32)

    async def one(job: JobPlan) -> None:
        async with sem:
            await create_quiet(ctx, job.manifest(ctx.extras["run_id"]))

    starts = {r.name: r.starts for r in ctx.replicas}
    try:
        await asyncio.gather(*(one(p) for p in plans))
    finally:
        created_s = time.time() - t_create
        ctx.log(f"flood: {count} jobs created in {created_s:.0f}s with no operator running; starting the replicas")
        t_start = time.time()
        for replica in ctx.replicas:
            replica.held = False
    done = await _until_ended(ctx, ns, count, 3600)
    drained = time.time() - t_start
    peak = max((v for (name, start), v in ctx.replicas.peak_rss.items() if start > starts[name]), default=0)
    requests = infra.read_jsonl(ctx.extras["workdir"] / "requests.jsonl")
    throttled = sum(1 for r in requests if r[4] == 429 and r[0] >= t_start)
    ctx.log(f"flood: drained in {drained:.0f}s, peak RSS {peak / 2**20:.0f} MiB, {throttled} 429s")
    return {
        "jobs": count,
        "create_s": round(created_s, 1),
        "drained": done,
        "time_to_drain_s": round(drained, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "operator_429s": throttled,
        "create_429s": ctx.extras.get("create_429s", 0),
    }


async def hold_replicas(ctx: Context, within: float = 60.0) -> None:
    """Stop both replicas (SIGTERM) and keep them down until `held` is cleared."""
    for replica in ctx.replicas:
        replica.held = True
        replica.signal(signal.SIGTERM, "stopped")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(r.pid is None and r.proc is None for r in ctx.replicas):
            return
        await asyncio.sleep(0.2)


async def create_quiet(ctx: Context, manifest: dict[str, Any]) -> str | None:
    """A create retried on 429/5xx (counted), without logging an action per job; the new UID."""
    path = job_path(manifest["metadata"]["namespace"])
    for _ in range(60):
        try:
            created = await ctx.api.request("POST", path, body=manifest, seconds=30)
            return str(created["metadata"]["uid"])
        except ApiError as exc:
            if exc.status == 409:
                return None
            if exc.status == 429:
                ctx.extras["create_429s"] = ctx.extras.get("create_429s", 0) + 1
            elif exc.status < 500:
                raise
        except TransportError:
            pass
        await asyncio.sleep(1)
    return None


async def _until_ended(ctx: Context, ns: str, count: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done = sum(1 for (n, _), j in ctx.world.jobs.items() if n == ns and ended(j))
        if done >= count:
            return True
        await asyncio.sleep(1)
    return False


async def calm_phase(ctx: Context, plans: list[JobPlan], within: float) -> dict[str, Any]:
    """A fresh batch with no fault: the leader's counters before and after, for I5's exact check."""
    leader = await ctx.leader()
    identity = (leader.name, leader.starts, leader.pid)
    exits = len(ctx.replicas.exits)
    await asyncio.sleep(6)  # the gauges' refresh, and any trailing write of the drain, settle
    before = await infra.scrape(leader.metrics_port)
    uids = []
    for job in plans:
        created = await create_quiet(ctx, job.manifest(ctx.extras["run_id"]))
        if created:
            uids.append(created)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        mine = [j for j in ctx.world.jobs.values() if j["metadata"]["uid"] in uids]
        if len(mine) == len(uids) and all(ended(j) for j in mine):
            break
        await asyncio.sleep(0.5)
    seqs = {
        j["metadata"]["uid"]: int(j["status"]["audit"]["lastSeq"])
        for j in ctx.world.jobs.values()
        if j["metadata"]["uid"] in uids
    }
    drained = await asyncio.to_thread(wait_drained, ctx.extras["dsn"], seqs, within)
    await asyncio.sleep(2)
    until = time.time()
    after = await infra.scrape(leader.metrics_port)
    same = (leader.name, leader.starts, leader.pid) == identity and len(ctx.replicas.exits) == exits
    return {
        "before": before,
        "after": after,
        "same_process": same,
        "jobs": uids,
        "leader": leader.name,
        "audit_drained_s": round(drained, 2),
        "until": until,
    }


async def end_state(ctx: Context, unfinished: list[str]) -> dict[str, Any]:
    """Before deleting anything: the leader's active-jobs gauge and the revision cleanup starts at."""
    leader = await ctx.leader()
    await asyncio.sleep(6)  # procjob_jobs_active is refreshed every 5 s
    scraped = await infra.scrape(leader.metrics_port)
    active = sum(v for k, v in scraped.items() if k.startswith("procjob_jobs_active{"))
    listed = await ctx.api.request("GET", f"/api/v1/namespaces/{ctx.namespaces[0]}/pods", params={"limit": "1"})
    return {
        "unfinished": unfinished,
        "leader_jobs_active": active,
        "cleanup_rv": int(listed["metadata"]["resourceVersion"]),
    }


async def cleanup(ctx: Context, within: float) -> dict[str, Any]:
    """Delete every job (the operator records JobDeleted and lets go), wait for the pods, then the
    namespaces; what is left when the time is up."""
    started = time.monotonic()
    sem = asyncio.Semaphore(32)

    async def delete(ns: str, name: str) -> None:
        async with sem:
            with contextlib.suppress(ApiError, TransportError):
                await ctx.api.request("DELETE", job_path(ns, name), ok404=True, seconds=30)

    for ns in ctx.namespaces:
        listed = await ctx.api.request("GET", job_path(ns), seconds=120)
        await asyncio.gather(*(delete(ns, i["metadata"]["name"]) for i in listed["items"]))
    jobs_left, finalizers, pods_left = await _wait_empty(ctx, started + within)
    for ns in [*ctx.namespaces, ctx.lease_ns]:
        await ctx.api.request("DELETE", f"/api/v1/namespaces/{ns}", ok404=True)
    ns_left = list(ctx.namespaces)
    while ns_left and time.monotonic() < started + within + 180:
        ns_left = [ns for ns in ns_left if await ctx.api.request("GET", f"/api/v1/namespaces/{ns}", ok404=True)]
        await asyncio.sleep(1)
    return {
        "jobs_left": jobs_left,
        "finalizers_left": finalizers,
        "pods_left": pods_left,
        "namespaces_left": ns_left,
        "seconds": round(time.monotonic() - started, 1),
    }


async def _wait_empty(ctx: Context, deadline: float) -> tuple[list[str], list[str], list[str]]:
    while True:
        jobs, finalizers, pods = [], [], []
        for ns in ctx.namespaces:
            for item in (await ctx.api.request("GET", job_path(ns), seconds=120))["items"]:
                jobs.append(f"{ns}/{item['metadata']['name']}")
                if item["metadata"].get("finalizers"):
                    finalizers.append(f"{ns}/{item['metadata']['name']}: {item['metadata']['finalizers']}")
            listed = await ctx.api.request("GET", f"/api/v1/namespaces/{ns}/pods", seconds=120)
            pods += [f"{ns}/{p['metadata']['name']}" for p in listed["items"]]
        if (not jobs and not pods) or time.monotonic() > deadline:
            return jobs[:20], finalizers[:20], pods[:20]
        await asyncio.sleep(1)
