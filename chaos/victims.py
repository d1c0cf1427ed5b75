"""Which jobs a fault harms: the workload's queued and running jobs of the kinds the suite does not
act on itself, and, when the workload has none running at the fault's moment, jobs of the fault's
own.

A fault's moment comes from the seed, and the workload's last arrivals may be over by then (seed
20261202 puts "jobs deleted mid-stage (operator up)" at 336 s of a 365 s schedule whose arrivals
end at 335 s; once the operator drained the queue faster, the fault found no job running in its
60 s and harmed nothing). Such a fault then creates its victims: `ok` jobs whose one stage runs
long enough to be caught mid-stage, labelled like the workload's, judged by the same invariants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from chaos.actions import create, kind_of
from chaos.context import Context
from chaos.phases import ended
from chaos.workload import JobPlan, stage

KINDS_TO_RECREATE = ("ok", "flaky", "expo", "suspend", "disrupt", "exhaust", "permanent")
OWN_STAGE_SECONDS = 30.0  # an own victim's one stage: it is still running when the fault strikes


def candidates(ctx: Context, count: int) -> list[dict[str, Any]]:
    """Up to `count` jobs to delete behind the operator's back: queued and running ones, of the kinds
    the suite does not delete itself (KINDS_TO_RECREATE)."""
    found = [
        j
        for j in ctx.world.jobs.values()
        if kind_of(j) in KINDS_TO_RECREATE and not j["metadata"].get("deletionTimestamp") and not ended(j)
    ]
    ctx.rng.shuffle(found)
    return sorted(found[:count], key=lambda j: j["metadata"]["name"])


def live_pod(ctx: Context, uid: str) -> dict[str, Any] | None:
    """A pod of the job that is neither ended nor deleting (Pending or Running)."""
    for pod in ctx.world.pods_of(uid):
        if (pod.get("status") or {}).get("phase") in ("Pending", "Running") and not pod["metadata"].get(
            "deletionTimestamp"
        ):
            return pod
    return None


async def wait_for_victims(
    find: Callable[[], list[dict[str, Any]]], count: int, within: float = 60.0, enough_after: float = 20.0
) -> list[dict[str, Any]]:
    """Jobs mid-stage to delete: late in a run few may be running at one moment, so wait up to
    `within` seconds for `count` of them, and take fewer (at least one) after `enough_after`."""
    start = time.monotonic()
    while True:
        found = find()
        waited = time.monotonic() - start
        if len(found) >= count or (found and waited >= enough_after) or waited >= within:
            return found
        await asyncio.sleep(0.5)


async def running_victims(ctx: Context, count: int, own_after: float = 20.0) -> list[dict[str, Any]]:
    """Up to `count` jobs mid-stage (a live pod): the workload's if it has any within `own_after`
    seconds, else `count` of the fault's own, waited for until their pods exist."""

    def running() -> list[dict[str, Any]]:
        return [j for j in candidates(ctx, len(ctx.world.jobs)) if live_pod(ctx, j["metadata"]["uid"])]

    found = await wait_for_victims(running, count, within=own_after, enough_after=own_after)
    if not found:
        own = {name for name in await asyncio.gather(*(_create_own(ctx) for _ in range(count))) if name}
        found = await wait_for_victims(lambda: [j for j in running() if j["metadata"]["name"] in own], len(own))
    return found[:count]


def own_victim(ctx: Context, serial: int) -> JobPlan:
    """The plan of the fault's own victim number `serial` (one long stage; kind `ok`)."""
    spec = {
        "stages": [stage("s1", run_seconds=OWN_STAGE_SECONDS)],
        "retry": {"limit": 3, "delaysSeconds": [1, 2]},
        "podGC": "OnCompletion",
    }
    at = time.time() - ctx.t0
    return JobPlan(name=f"ok-victim-{serial:03d}", namespace=ctx.namespaces[0], kind="ok", at=at, spec=spec)


async def _create_own(ctx: Context) -> str | None:
    serial = ctx.extras["own_victims"] = ctx.extras.get("own_victims", 0) + 1
    plan = own_victim(ctx, serial)
    created = await create(ctx, plan.manifest(ctx.extras["run_id"]))
    return None if created is None else plan.name
