"""What watch events mean for the operator (controller.assembly.Operator), with fake parts."""

from __future__ import annotations

import asyncio
from typing import Any

from procjob.adapters.metrics import Metrics
from procjob.controller.admission import QueueAdmission
from procjob.controller.assembly import Operator, finished_jobs
from procjob.controller.cache import Cache
from procjob.controller.orphans import OrphanCollector
from procjob.controller.queue import Lane, WorkQueue
from procjob.controller.reconcile import Reconciler
from procjob.controller.settings import OperatorSettings
from procjob.controller.sync import Orphan, Resynced
from procjob.core.config import CoreConfig
from procjob.core.observe import PodObservation
from tests.unit.controller.fakes import FakeClock, FakeKube
from tests.unit.controller.test_reconcile import NS, UID, job_body


def operator() -> Operator:
    kube, cache, queue, metrics, clock = FakeKube(), Cache(), WorkQueue(), Metrics(), FakeClock()
    settings = OperatorSettings(max_running_jobs=1)
    admission = QueueAdmission(cache, settings, metrics, clock)
    reconciler = Reconciler(kube, cache, queue, CoreConfig(), metrics, clock=clock, admission=admission)  # type: ignore[arg-type]
    return Operator(settings, kube, metrics, cache, queue, admission, reconciler, None, None)  # type: ignore[arg-type]


def pod_of(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p1",
            "namespace": NS,
            "uid": "pod-1",
            "resourceVersion": "5",
            "labels": {"procjob.dev/job-uid": UID, "procjob.dev/job": body["metadata"]["name"]},
            "ownerReferences": [
                {
                    "apiVersion": "procjob.dev/v1alpha1",
                    "kind": "ProcessingJob",
                    "name": "j1",
                    "uid": UID,
                    "controller": True,
                }
            ],
        },
        "status": {"phase": "Running"},
    }


def test_a_job_seen_is_cached_and_queued() -> None:
    op = operator()
    body = {**job_body(), "metadata": {**job_body()["metadata"], "resourceVersion": "3"}}
    op.job_seen(body, urgent=False)
    assert op.cache.job(f"{NS}/j1") is not None
    assert f"{NS}/j1" in op.queue._queued


async def test_a_deleted_job_leaves_no_state_behind() -> None:
    op = operator()
    body = {**job_body(), "metadata": {**job_body()["metadata"], "resourceVersion": "3"}}
    op.job_seen(body, urgent=False)
    op.queue.add_after(f"{NS}/j1", 60.0)
    op.job_deleted(body)
    assert op.cache.job(f"{NS}/j1") is None
    assert op.queue.delayed == 0  # its timer is cancelled (a queued key of a gone job is a no-op)


def test_a_pods_change_wakes_its_job_urgently_and_a_deleted_pod_is_dropped() -> None:
    op = operator()
    body = job_body()
    op.pod_seen(pod_of(body))
    assert [p.name for p in op.cache.pods_of(NS, UID)] == ["p1"]
    op.pod_seen(pod_of(body), deleted=True)
    assert op.cache.pods_of(NS, UID) == []
    assert op.cache.gone(NS, UID) == {"p1": "pod-1"}


class Forgetful:
    """The log archive's side the watch events reach."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget_pod(self, pod: PodObservation) -> None:
        self.forgotten.append(pod.name)


def test_a_deleted_pod_is_forgotten_by_the_log_archive_a_changed_one_is_not() -> None:
    op, logs = operator(), Forgetful()
    op.logs = logs  # type: ignore[assignment]
    op.pod_seen(pod_of(job_body()))
    assert logs.forgotten == []
    op.pod_seen(pod_of(job_body()), deleted=True)
    assert logs.forgotten == ["p1"]


def test_a_relist_wakes_the_resync_only_once_ready() -> None:
    op = operator()
    op.relisted()
    assert not op.resync_wake.is_set()
    op.ready = True
    op.relisted()
    assert op.resync_wake.is_set()


async def test_a_resync_drops_ghosts_and_requeues_jobs_that_lost_pods() -> None:
    op = operator()
    op.queue.add_after("ns/ghost", 60.0)
    op.resynced(Resynced(dropped_jobs=frozenset({"ns/ghost"}), dropped_pods=frozenset({"ns/alive"})))
    assert op.queue.delayed == 0
    assert op.queue._queued == {"ns/alive": Lane.URGENT}


async def test_a_resync_hands_its_orphans_to_the_leaders_collector() -> None:
    op = operator()
    op.orphans = OrphanCollector(op.client)
    kube: FakeKube = op.client  # type: ignore[assignment]
    await op._start_writing()  # the collector runs where the reconcile workers run
    op.resynced(Resynced(orphans=(Orphan(NS, "old-pod", "pod-9", "j1", "uid-gone"),)))
    for _ in range(10):
        await asyncio.sleep(0)
    for task in op.tasks:
        task.cancel()
    await asyncio.gather(*op.tasks, return_exceptions=True)
    assert ("get_job", "j1") in kube.calls, "its job looked up first"
    assert ("delete_pod", "old-pod") in kube.calls


def test_finished_jobs_are_the_ended_ones_not_being_deleted() -> None:
    done = {"type": "Succeeded", "status": "True", "reason": "Succeeded"}
    bodies = [
        {
            "metadata": {"name": "a", "namespace": "n", "uid": "ua"},
            "status": {"conditions": [done], "completionTime": "2026-01-01T00:00:00Z"},
        },
        {"metadata": {"name": "b", "namespace": "n", "uid": "ub"}, "status": {"conditions": []}},
        {
            "metadata": {"name": "c", "namespace": "n", "uid": "uc", "deletionTimestamp": "2026-01-01T00:00:01Z"},
            "status": {"conditions": [done], "completionTime": "2026-01-01T00:00:00Z"},
        },
    ]
    assert [(f.key, f.uid) for f in finished_jobs(bodies)] == [("n/a", "ua")]


async def test_a_new_writer_serves_the_started_unfinished_jobs_first() -> None:
    # The chaos flood: a leader stopped between an attempt's status write and its pod create; the
    # next one found that job among 10,000 queued ones in the normal lane and reached it only when
    # its startup timeout had passed (6.5 minutes, a StartupTimeout charged).
    op = operator()
    for i in range(1000):
        op.job_seen({**job_body(f"q{i:04d}"), "status": {}}, urgent=False)  # queued, not started
    started = {"startTime": "2026-01-02T03:00:05Z", "stages": []}
    done = {**started, "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]}
    op.job_seen({**job_body("done"), "status": done}, urgent=False)
    op.job_seen({**job_body("pending-create"), "status": started}, urgent=False)
    assert op.wake_started_jobs() == 1
    assert await op.queue.get() == f"{NS}/pending-create"
    assert await op.queue.get() == f"{NS}/q0000"  # then the rest, as before
