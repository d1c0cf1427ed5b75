"""A job whose last finalizer was removed is gone, whatever order the watch's DELETED event and
our own patch's answer arrive in (found by the chaos suite, seed 42, quick profile: a job deleted
mid-stage while PostgreSQL was down was released when it came back, the answer to the finalizer
patch arrived after the DELETED event and put the job back in the cache, where it counted as a
running job, holding a queue slot, until the next resync)."""

from __future__ import annotations

import copy
from typing import Any

from procjob.adapters.metrics import Metrics
from procjob.controller.cache import Cache
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import Reconciler
from procjob.core.config import CoreConfig
from procjob.models.job import FINALIZER
from tests.unit.controller.fakes import FakeClock, FakeKube
from tests.unit.controller.test_reconcile import NS, Slots, job_body


def deleting(finalizers: list[str]) -> dict[str, Any]:
    body = job_body()
    body["metadata"].update(resourceVersion="20", deletionTimestamp="2026-01-02T03:04:05Z", finalizers=finalizers)
    body["status"] = {
        "conditions": [
            {
                "type": "Succeeded",
                "status": "Unknown",
                "reason": "Running",
                "lastTransitionTime": "2026-01-02T03:04:00Z",
            }
        ]
    }
    return body


def test_the_answer_to_the_last_finalizer_removal_does_not_bring_a_deleted_job_back() -> None:
    cache = Cache()
    key = cache.observe_job(deleting([FINALIZER]))
    released = deleting([])
    cache.observe_job(copy.deepcopy(released), deleted=True)  # the watch was quicker
    cache.observe_job(released)  # our patch's answer
    assert cache.job(key) is None
    assert cache.outlines() == []


def test_the_answer_first_drops_the_job_and_the_deleted_event_is_a_no_op() -> None:
    cache = Cache()
    key = cache.observe_job(deleting([FINALIZER]))
    cache.observe_job(deleting([]))
    assert cache.job(key) is None
    cache.observe_job(deleting([]), deleted=True)
    assert cache.job(key) is None


def test_a_job_being_deleted_that_still_has_a_finalizer_stays() -> None:
    cache = Cache()
    key = cache.observe_job(deleting(["someone.else/finalizer"]))
    assert cache.job(key) is not None


async def test_a_reconcile_that_releases_a_deleted_job_leaves_no_ghost() -> None:
    kube, cache = FakeKube(), Cache()
    body = deleting([FINALIZER])
    body["status"]["audit"] = {"lastSeq": 1, "flushedSeq": 1, "pending": [], "deletionRecorded": True}
    key = cache.observe_job(kube.add_job(body))
    rec = Reconciler(
        kube, cache, WorkQueue(), CoreConfig(audit_enabled=True), Metrics(), clock=FakeClock(), admission=Slots()
    )  # type: ignore[arg-type]
    await rec.reconcile(key)
    assert kube.jobs[(NS, "j1")]["metadata"]["finalizers"] == []
    assert cache.job(key) is None
