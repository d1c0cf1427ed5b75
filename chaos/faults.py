"""The fault injectors. Each takes the context and its seeded parameters, does its harm, waits for
it to pass, and returns a record (what was done, when, to whom) that chaos.faultcheck judges
afterwards against the observer's history, the proxy's request log and the replicas' exits.

How each fault is made here, and what would make it on a real cluster, is in chaos/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

from bench.api import ApiError, TransportError

from chaos import rigproc
from chaos.actions import create, delete_job, disrupt_pod, persist, writer
from chaos.context import Context
from chaos.policy import Disruption
from chaos.victims import candidates, live_pod, running_victims

HOLD_FINALIZER = "chaos.procjob.dev/hold"


async def leader_kill(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    leader = await ctx.leader()
    t = time.time()
    leader.signal(signal.SIGKILL, "killed")
    return {"replica": leader.name, "killed_at": t}


async def failpoint(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Arm `point@n` in the standby (restarted with it), then kill the leader: the standby leads and
    dies at its n-th pass over the point; the supervisor restarts it clean."""
    leader = await ctx.leader()
    standby = next(r for r in ctx.replicas if r is not leader)
    spec = f"{params['point']}@{params['n']}"
    starts = standby.starts
    standby.failpoint = spec
    standby.signal(signal.SIGTERM, "restarted-for-failpoint")
    await _until(lambda: standby.starts > starts and standby.pid is not None, 30)
    await ctx.replicas.ready(standby)
    t = time.time()
    leader.held = True  # kept down until the armed standby leads: the restarted leader could win the race
    try:
        leader.signal(signal.SIGKILL, "killed")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (await ctx.holder() or "").startswith(standby.pod_name + "_"):
                break
            await asyncio.sleep(0.2)
    finally:
        leader.held = False

    def fired() -> bool:
        return any(e.replica == standby.name and e.cause == "failpoint" and e.t > t for e in ctx.replicas.exits)

    return {
        "armed": spec,
        "replica": standby.name,
        "leader_killed": leader.name,
        "killed_at": t,
        "fired": bool(await _until(fired, 90)),
    }


async def _until(check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.1)


async def leader_stop(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """SIGSTOP the leader for longer than its lease and renew deadline, then SIGCONT."""
    leader = await ctx.leader()
    pid = leader.pid
    t_stop = time.time()
    leader.signal(signal.SIGSTOP, "stopped-signal")
    try:
        await asyncio.sleep(params["seconds"])
    finally:
        t_cont = time.time()
        leader.signal(signal.SIGCONT, "continued")
    exited = await _until(lambda: leader.pid != pid, 30)
    return {
        "replica": leader.name,
        "pod_name": leader.pod_name,
        "stopped_at": t_stop,
        "continued_at": t_cont,
        "exited": bool(exited),
    }


async def _api_ready(ctx: Context, within: float = 180.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        with contextlib.suppress(ApiError, TransportError):
            if await ctx.api.text("/readyz") is not None:
                return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the API server was not ready within {within:.0f}s of its restart")


async def component_down(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL a rig component (kube-apiserver or etcd), keep it down, start it again."""
    async with rigproc.Outage():  # a test session's `rig.py up` waits instead of replacing the rig
        comp = rigproc.component(params["component"])
        t_kill = time.time()
        await asyncio.to_thread(rigproc.kill, comp)
        try:
            await asyncio.sleep(params["seconds"])
        finally:
            t_start = time.time()
            await asyncio.to_thread(rigproc.restart, comp, locked=True)
        ready = await _api_ready(ctx)
    return {"component": comp.name, "killed_at": t_kill, "restarted_at": t_start, "api_ready_after_s": round(ready, 2)}


async def silent_watch(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Stall every operator watch for `seconds`; delete jobs just before and during it; half-way,
    compact etcd and bounce the API server so that every resumed watch meets a 410 Gone."""
    seconds = params["seconds"]
    victims = candidates(ctx, params["deletions"])
    deleted = []
    first, rest = victims[: len(victims) // 2], victims[len(victims) // 2 :]
    for job in first:
        await delete_job(ctx, job["metadata"]["namespace"], job["metadata"]["name"], job["metadata"]["uid"])
        deleted.append(job["metadata"]["name"])
    await asyncio.sleep(0.5)
    t0 = time.time()
    await ctx.control_post(f"/stall?seconds={seconds}")
    await asyncio.sleep(5)
    for job in rest:
        await delete_job(ctx, job["metadata"]["namespace"], job["metadata"]["name"], job["metadata"]["uid"])
        deleted.append(job["metadata"]["name"])
    await asyncio.sleep(max(0.0, params["compact_after"] - (time.time() - t0)))
    compacted = await compact(ctx)
    async with rigproc.Outage():
        comp = rigproc.component("kube-apiserver")
        await asyncio.to_thread(rigproc.kill, comp)
        await asyncio.to_thread(rigproc.restart, comp, locked=True)
        await _api_ready(ctx)
    t_bounced = time.time()
    await asyncio.sleep(max(0.0, t0 + seconds - time.time()) + 2)
    return {
        "stalled_at": t0,
        "stall_s": seconds,
        "deleted": deleted,
        "compacted_revision": compacted,
        "bounced_at": t_bounced,
    }


async def compact(ctx: Context) -> int:
    """Compact etcd at its current revision (the v3 gRPC gateway, as `etcdctl compact` would)."""
    head = await ctx.etcd_post("/v3/kv/range", {"key": "AA==", "limit": 1, "keys_only": True})
    revision = int(head["header"]["revision"])
    await ctx.etcd_post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
    return revision


async def pg_down(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL stopped for `seconds`; the leader SIGKILLed `kill_after` seconds into it."""
    t0 = time.time()
    await asyncio.to_thread(ctx.pg.stop, "fast")
    try:
        await asyncio.sleep(params["kill_after"])
        leader = await ctx.leader()
        leader.signal(signal.SIGKILL, "killed")
        t_kill = time.time()
        await asyncio.sleep(max(0.0, t0 + params["seconds"] - time.time()))
    finally:
        await asyncio.to_thread(ctx.pg.start)
    return {"stopped_at": t0, "leader_killed": leader.name, "killed_at": t_kill, "started_at": time.time()}


async def pg_restart(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL stopped in immediate mode (open transactions cut, as a crash) and started again."""
    t0 = time.time()
    await asyncio.to_thread(ctx.pg.stop, "immediate")
    await asyncio.to_thread(ctx.pg.start)
    return {"stopped_at": t0, "started_at": time.time()}


async def pg_latency(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    t0 = time.time()
    await ctx.control_post(f"/latency?ms={params['ms']}")
    try:
        await asyncio.sleep(params["seconds"])
    finally:
        await ctx.control_post("/latency?ms=0")
    return {"from": t0, "to": time.time(), "ms": params["ms"]}


async def writes(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    t0 = time.time()
    counts = await writer(ctx, params["seconds"], params.get("hz", 10.0))
    return {"from": t0, "to": time.time(), "writes": counts}


async def node_lost(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The chaos Node stops heartbeating (kwok no longer manages it) and goes NotReady; then it is
    deleted, and the pod garbage collector removes its pods. (Writes retried until they land: this
    background fault may meet an API server outage.)"""
    node = params["node"]
    path = f"/api/v1/nodes/{node}"
    merge, strategic = "application/merge-patch+json", "application/strategic-merge-patch+json"
    unmanage = {"metadata": {"annotations": {"kwok.x-k8s.io/node": None}}}
    await persist("unmanage the node", lambda: ctx.api.request("PATCH", path, body=unmanage, content_type=merge))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
        "message": "chaos: kubelet stopped posting node status",
    }
    body = {"status": {"conditions": [ready]}}
    await persist(
        "node NotReady", lambda: ctx.api.request("PATCH", path + "/status", body=body, content_type=strategic)
    )
    t_notready = time.time()
    await asyncio.sleep(params["notready_s"])
    t_delete = time.time()
    bound = [p for p in ctx.world.pods.values() if (p.get("spec") or {}).get("nodeName") == node]
    await persist("delete the node", lambda: ctx.api.request("DELETE", path, ok404=True))
    for pod in bound:
        ctx.disruptions.setdefault(pod["metadata"]["uid"], Disruption("node", t_delete))
    return {"node": node, "pods_bound": len(bound), "notready_at": t_notready, "deleted_at": t_delete}


async def delete_recreate(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete running jobs mid-stage (the operator up, or both replicas down meanwhile), holding their
    pods terminating with a finalizer of the suite's; re-create each with the same name at once."""

    picks = await running_victims(ctx, params["count"])
    down: dict[str, float] = {}
    if params["operator"] == "down":
        down["down_from"] = time.time()
        for replica in ctx.replicas:
            replica.held = True
            replica.signal(signal.SIGTERM, "stopped")
        await _until(lambda: all(r.pid is None for r in ctx.replicas), 60)
    held: list[tuple[str, str, str]] = []
    t0 = time.time()
    try:
        for job in picks:
            held += await _hold_and_delete(ctx, job)
        if params["operator"] == "down":
            await asyncio.sleep(5)
    finally:
        for replica in ctx.replicas:
            replica.held = False
        if down:
            down["released_at"] = time.time()  # the replicas restart now, and watch again within seconds
    try:
        recreated = [await _recreate(ctx, job) for job in picks]
        await asyncio.sleep(max(0.0, t0 + params["hold_s"] - time.time()))
    finally:
        await _release(ctx, held, t0)
    return {
        "operator": params["operator"],
        "deleted": [j["metadata"]["name"] for j in picks],
        "recreated": recreated,
        "held_pods": len(held),
        **down,
    }


async def _release(ctx: Context, held: list[tuple[str, str, str]], t0: float) -> None:
    for ns, name, uid in held:
        body = {"metadata": {"finalizers": None}}
        with contextlib.suppress(ApiError, TransportError):
            await ctx.api.request(
                "PATCH", f"/api/v1/namespaces/{ns}/pods/{name}", body=body, content_type="application/merge-patch+json"
            )
        ctx.held[uid] = time.time() - t0


async def _hold_and_delete(ctx: Context, job: dict[str, Any]) -> list[tuple[str, str, str]]:
    meta = job["metadata"]
    held = []
    pod = live_pod(ctx, meta["uid"])
    if pod is not None:
        pm = pod["metadata"]
        body = {"metadata": {"finalizers": [*(pm.get("finalizers") or []), HOLD_FINALIZER]}}
        with contextlib.suppress(ApiError, TransportError):
            await ctx.api.request(
                "PATCH",
                f"/api/v1/namespaces/{pm['namespace']}/pods/{pm['name']}",
                body=body,
                content_type="application/merge-patch+json",
            )
            held.append((pm["namespace"], pm["name"], pm["uid"]))
    await delete_job(ctx, meta["namespace"], meta["name"], meta["uid"])
    return held


async def _recreate(ctx: Context, job: dict[str, Any]) -> str | None:
    meta = job["metadata"]
    where = (meta["namespace"], meta["name"])
    gone = await _until(lambda: (ctx.world.jobs.get(where) or {}).get("metadata", {}).get("uid") != meta["uid"], 180)
    if not gone:
        return None
    labels = {**(meta.get("labels") or {}), "chaos.procjob.dev/recreated": "true"}
    manifest = {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels},
        "spec": {k: v for k, v in job["spec"].items() if k not in ("suspend", "cancel")},
    }
    created = await create(ctx, manifest)
    return None if created is None else str(created["metadata"]["uid"])


async def disruption_burst(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Extra disruptions of running pods, besides the `disrupt` jobs: one per method."""
    done = {}
    for method in ("delete", "force", "evict"):
        pods = [p for p in ctx.world.pods.values() if (p.get("status") or {}).get("phase") in ("Pending", "Running")]
        pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if pods:
            done[method] = await disrupt_pod(ctx, ctx.rng.choice(pods), method)
    return {"done": done}


INJECTORS = {
    "leader-kill": leader_kill,
    "failpoint": failpoint,
    "leader-stop": leader_stop,
    "component-down": component_down,
    "silent-watch": silent_watch,
    "pg-down": pg_down,
    "pg-restart": pg_restart,
    "pg-latency": pg_latency,
    "writer": writes,
    "node-lost": node_lost,
    "delete-recreate": delete_recreate,
    "disruptions": disruption_burst,
}
