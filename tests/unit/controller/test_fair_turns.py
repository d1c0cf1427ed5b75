"""Admission gets its share in a burst: watch events go through the real handlers, the composition
root, the cache, the work queue and the reconciler (fake API client and clock); a new job created
behind a burst of pod changes and status echoes of running jobs has its first pod after at most
three reconciles, and a running job's pod change waits no longer behind a burst of new jobs."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

from procjob import handlers
from procjob.adapters.metrics import Metrics
from procjob.controller.admission import AdmitAll
from procjob.controller.assembly import Operator
from procjob.controller.cache import Cache
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import Reconciler
from procjob.core.config import CoreConfig
from tests.unit.controller.fakes import FakeClock, FakeKube

NS = "burst"
RUNNING = 30


def job_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:00:00Z",
        },
        "spec": {"stages": [{"name": "work", "image": "registry.example.com/w:1"}]},
    }


class World:
    def __init__(self) -> None:
        self.kube, self.cache, self.queue = FakeKube(), Cache(), WorkQueue()
        admission, metrics = AdmitAll(), Metrics()
        self.reconciler = Reconciler(
            self.kube,  # type: ignore[arg-type]
            self.cache,
            self.queue,
            CoreConfig(),
            metrics,
            clock=FakeClock(),
            admission=admission,  # type: ignore[arg-type]
        )
        operator = Operator(
            None,  # type: ignore[arg-type]
            self.kube,  # type: ignore[arg-type]
            metrics,
            self.cache,
            self.queue,
            admission,  # type: ignore[arg-type]
            self.reconciler,
            None,
            None,
        )
        self.memo = SimpleNamespace(operator=operator)

    async def job_event(self, name: str) -> None:
        """The watch delivers the job as the API server holds it."""
        await handlers.job_event(
            event={"type": "MODIFIED", "object": copy.deepcopy(self.kube.jobs[(NS, name)])}, memo=self.memo
        )

    async def pod_running(self, job: str) -> None:
        """The kubelet reports the job's pod running; the watch delivers it."""
        [pod] = [p for (ns, _), p in self.kube.pods.items() if p["metadata"]["labels"]["procjob.dev/job"] == job]
        pod["status"] = {"phase": "Running", "containerStatuses": [{"name": "main", "state": {"running": {}}}]}
        pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1000)
        await handlers.pod_event(event={"type": "MODIFIED", "object": copy.deepcopy(pod)}, memo=self.memo)

    def has_pod(self, job: str) -> bool:
        return any(p["metadata"]["labels"]["procjob.dev/job"] == job for p in self.kube.pods.values())

    async def serve_one(self) -> str:
        key = await self.queue.get()
        try:
            await self.reconciler.reconcile(key)
        finally:
            self.queue.done(key)
        return key

    async def serve_until(self, done: Any, limit: int = 1000) -> int:
        """Reconciles served until `done()` holds."""
        for served in range(limit):
            if done():
                return served
            await self.serve_one()
        raise AssertionError(f"not done after {limit} reconciles")


async def running_jobs(world: World) -> list[str]:
    names = [f"run-{i:02d}" for i in range(RUNNING)]
    for name in names:
        world.kube.add_job(job_body(name))
        await world.job_event(name)
    await world.serve_until(lambda: all(world.has_pod(n) for n in names))
    while len(world.queue):  # the pods' creation settles
        await world.serve_one()
    return names


async def test_a_new_job_behind_a_burst_of_pod_changes_and_echoes_has_its_first_pod_within_three_reconciles() -> None:
    world = World()
    names = await running_jobs(world)
    for name in names[: RUNNING // 2]:
        await world.pod_running(name)
        await world.job_event(name)  # the echo of a status write, behind the pod's change
    for name in names[RUNNING // 2 :]:
        await world.job_event(name)  # only an echo
    world.kube.add_job(job_body("newcomer"))
    await world.job_event("newcomer")
    assert len(world.queue) == RUNNING + 1, "every running job's key once, and the new job"
    assert await world.serve_until(lambda: world.has_pod("newcomer")) <= 3


async def test_a_running_jobs_pod_change_behind_a_burst_of_new_jobs_is_served_within_three_reconciles() -> None:
    world = World()
    [running] = (await running_jobs(world))[:1]
    newcomers = [f"new-{i:02d}" for i in range(RUNNING)]
    for name in newcomers:
        world.kube.add_job(job_body(name))
        await world.job_event(name)
    await world.pod_running(running)
    served = [await world.serve_one() for _ in range(3)]
    assert f"{NS}/{running}" in served
    await world.serve_until(lambda: all(world.has_pod(n) for n in newcomers))
