"""Choosing the jobs a fault deletes mid-stage: waited for when none runs at that moment, and the
fault's own when the workload has none running at all (its arrivals over)."""

from __future__ import annotations

import random
from typing import Any

from chaos.context import Context, World
from chaos.victims import OWN_STAGE_SECONDS, running_victims, wait_for_victims
from chaos.workload import KIND_LABEL, RUN_LABEL


async def test_jobs_to_delete_are_waited_for_when_none_runs_yet() -> None:
    calls = iter([[], [], [{"n": 1}], [{"n": 1}, {"n": 2}]])
    assert await wait_for_victims(lambda: next(calls), 2, within=5, enough_after=5) == [{"n": 1}, {"n": 2}]
    assert await wait_for_victims(lambda: [{"n": 1}], 2, within=5, enough_after=0) == [{"n": 1}]
    assert await wait_for_victims(list, 2, within=0, enough_after=0) == []


class Cluster:
    """The API server and the operator as far as the fault sees them: a created job gets a pod."""

    def __init__(self, world: World) -> None:
        self.world, self.posted, self.serial = world, [], 0

    def add(self, name: str, kind: str, phase: str | None = "Running", ended: bool = False) -> dict[str, Any]:
        self.serial += 1
        uid = f"uid-{self.serial}"
        meta = {"name": name, "namespace": "ns-0", "uid": uid, "labels": {KIND_LABEL: kind}}
        job: dict[str, Any] = {"metadata": meta}
        if ended:
            job["status"] = {"conditions": [{"type": "Succeeded", "status": "True"}]}
        self.world.jobs[("ns-0", name)] = job
        if phase is not None:
            pod_meta = {"name": f"{name}-s1-1", "namespace": "ns-0", "labels": {"procjob.dev/job-uid": uid}}
            pod = {"metadata": pod_meta, "status": {"phase": phase}}
            self.world.pods[("ns-0", f"{name}-s1-1")] = pod
        return job

    async def request(self, method: str, path: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        assert (method, path) == ("POST", "/apis/procjob.dev/v1alpha1/namespaces/ns-0/processingjobs")
        self.posted.append(body)
        labels = body["metadata"]["labels"]
        return self.add(body["metadata"]["name"], labels[KIND_LABEL], phase="Pending") | {"spec": body["spec"]}


def context() -> tuple[Context, Cluster]:
    world = World()
    cluster = Cluster(world)
    ctx = Context(
        api=cluster,  # type: ignore[arg-type]
        replicas=None,  # type: ignore[arg-type]
        control="",
        pg=None,  # type: ignore[arg-type]
        rng=random.Random(1),
        namespaces=["ns-0", "ns-1"],
        lease_ns="lease",
        timings=(4.0, 3.0, 0.5),
        log=lambda _: None,
        world=world,
        extras={"run_id": "r1"},
    )
    return ctx, cluster


async def test_the_workloads_running_jobs_are_taken_and_nothing_is_created() -> None:
    ctx, cluster = context()
    cluster.add("ok-00001", "ok")
    cluster.add("flaky-00002", "flaky", phase="Pending")
    cluster.add("cancel-00003", "cancel")  # the suite acts on these itself
    cluster.add("ok-00004", "ok", phase=None)  # queued: no pod
    cluster.add("ok-00005", "ok", ended=True)
    cluster.add("ok-00006", "ok", phase="Succeeded")
    found = await running_victims(ctx, 3, own_after=0)
    assert sorted(j["metadata"]["name"] for j in found) == ["flaky-00002", "ok-00001"]
    assert cluster.posted == []


async def test_with_none_running_the_fault_brings_its_own_long_running_jobs() -> None:
    ctx, cluster = context()
    cluster.add("ok-00001", "ok", ended=True)
    cluster.add("delete-00002", "delete")
    found = await running_victims(ctx, 2, own_after=0)
    assert sorted(j["metadata"]["name"] for j in found) == ["ok-victim-001", "ok-victim-002"]
    assert [p["metadata"]["labels"] for p in cluster.posted] == [{KIND_LABEL: "ok", RUN_LABEL: "r1"}] * 2
    stages = [p["spec"]["stages"] for p in cluster.posted]
    assert all(len(s) == 1 and s[0]["podMetadata"]["annotations"]["rig.procjob.dev/run-seconds"] for s in stages)
    assert {float(s[0]["podMetadata"]["annotations"]["rig.procjob.dev/run-seconds"]) for s in stages} == {
        OWN_STAGE_SECONDS
    }
    again = await running_victims(ctx, 1, own_after=0)  # the own ones are running now: no third
    assert len(again) == 1
    assert len(cluster.posted) == 2
