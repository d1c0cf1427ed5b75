"""The operator's pod caps (controller.podcaps) alone, then through the Reconciler against a fake API
client: a fanned-out job never runs more pods than its cap; room is never handed out twice; a job
short of room waits and is woken, in the queue's order, when room frees up."""

from __future__ import annotations

import copy
from typing import Any

from procjob.adapters.metrics import Metrics
from procjob.controller.cache import Cache
from procjob.controller.podcaps import RESERVATION_TTL, PodCaps
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import Reconciler
from procjob.core.config import CoreConfig
from procjob.core.decision import CreatePod
from procjob.core.observe import PodObservation
from procjob.models.job import ProcessingJob
from tests.unit.controller.fakes import FakeClock, FakeKube
from tests.unit.controller.test_reconcile import NS, UID, job_body


class Tick:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job(name: str = "j1", uid: str = UID, priority: int = 0, start: str | None = None) -> ProcessingJob:
    body = job_body(name, priority=priority)
    body["metadata"]["uid"] = uid
    if start is not None:
        body["status"] = {"startTime": start}
    return ProcessingJob.from_api(body)


def pod(name: str, phase: str = "Running") -> PodObservation:
    return PodObservation(name, f"uid-{name}", job_uid=UID, owner_uid=UID, phase=phase, namespace=NS)


def creates(*names: str) -> list[CreatePod]:
    return [CreatePod("work", 1, name, {}) for name in names]


def test_without_caps_there_is_no_allowance() -> None:
    caps = PodCaps(Cache(), None, None)
    assert caps.allowance(job(), []) is None
    caps.granted(job(), creates("a"))
    assert caps.due() == []


def test_the_per_job_cap_counts_pods_that_may_still_run_and_pods_granted() -> None:
    clock = Tick()
    caps = PodCaps(Cache(), None, 3, monotonic=clock)
    pods = [pod("a"), pod("b", phase="Succeeded"), pod("c", phase="Pending")]
    assert caps.allowance(job(), pods) == 1
    caps.granted(job(), creates("d"))
    assert caps.allowance(job(), pods) == 0
    assert caps.allowance(job("j2", uid="other"), []) == 3  # another job's own cap
    clock.now += RESERVATION_TTL + 1  # the create never showed: its room comes back
    assert caps.allowance(job(), pods) == 1


def test_the_total_counts_the_cache_and_grants_not_yet_in_it() -> None:
    clock = Tick()
    cache = Cache()
    caps = PodCaps(cache, 4, None, monotonic=clock)
    cache.pods[(NS, UID)] = {"a": pod("a"), "b": pod("b"), "old": pod("old", phase="Failed")}
    assert caps.allowance(job(), []) == 2
    caps.granted(job(), creates("c"))
    assert caps.allowance(job("j2", uid="other"), []) == 1
    cache.pods[(NS, UID)]["c"] = pod("c")  # the cache shows it: counted once, not twice
    clock.now += 1
    assert caps.allowance(job(), []) == 1
    caps.release(job(), creates("never"))
    assert caps.allowance(job(), []) == 1


def test_starved_jobs_are_woken_in_the_queues_order_as_room_frees_up() -> None:
    clock = Tick()
    cache = Cache()
    caps = PodCaps(cache, 2, None, monotonic=clock)
    cache.pods[(NS, UID)] = {"a": pod("a"), "b": pod("b")}
    late = job("late", uid="u1", start="2026-01-02T03:00:09Z")
    early = job("early", uid="u2", start="2026-01-02T03:00:01Z")
    urgent = job("urgent", uid="u3", priority=5, start="2026-01-02T03:00:30Z")
    for waiting in (late, early, urgent):
        caps.waiting(waiting, [], starved=True)
    assert caps.due() == []  # no room
    cache.pods[(NS, UID)]["a"] = pod("a", phase="Succeeded")
    clock.now += 1
    assert caps.due() == [f"{NS}/urgent"]  # one pod's room: the highest priority first
    del cache.pods[(NS, UID)]["b"]
    clock.now += 1
    assert caps.due() == [f"{NS}/urgent", f"{NS}/early"]
    caps.waiting(urgent, [], starved=False)
    caps.forget(f"{NS}/early")
    assert caps.due() == [f"{NS}/late"]


def test_a_job_held_back_by_its_own_cap_does_not_wait_for_the_total() -> None:
    caps = PodCaps(Cache(), 100, 1)
    caps.waiting(job(), [pod("a")], starved=True)
    assert caps.due() == []


def test_per_job_caps_alone_wake_every_waiting_job() -> None:
    caps = PodCaps(Cache(), None, 5)
    caps.waiting(job(), [], starved=True)
    assert caps.due() == [f"{NS}/j1"]


def fanned(name: str, uid: str, items: int, parallelism: int) -> dict[str, Any]:
    body = job_body(name)
    body["metadata"]["uid"] = uid
    body["spec"]["stages"] = [
        {"name": "fan", "image": "registry.example.com/w:1", "forEach": list(range(items)), "parallelism": parallelism}
    ]
    return body


async def test_a_fanned_out_job_runs_at_most_its_cap_and_a_short_job_is_woken_when_room_frees() -> None:
    kube, cache = FakeKube(), Cache()
    clock = Tick()
    caps = PodCaps(cache, 5, 3, monotonic=clock)
    rec = Reconciler(kube, cache, WorkQueue(), CoreConfig(), Metrics(), clock=FakeClock(), pod_caps=caps)  # type: ignore[arg-type]
    first = cache.observe_job(kube.add_job(fanned("first", "u-1", 4, 10)))
    second = cache.observe_job(kube.add_job(fanned("second", "u-2", 10, 10)))
    await rec.reconcile(first)
    assert len(kube.pods) == 3  # its own cap
    await rec.reconcile(second)
    assert len(kube.pods) == 5  # the total: 2 left for it
    assert caps.due() == []

    def finish(index: int) -> None:
        body = kube.pods[(NS, f"first-fan-i{index}-a1-u1")]
        done = copy.deepcopy(body)
        done["status"] = {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0}}}],
        }
        cache.observe_pod(done)
        clock.now += 1

    finish(0)
    await rec.reconcile(first)  # the room its item frees goes to its last item (its own pod change came first)
    assert sorted(n for (_, n) in kube.pods if "first" in n)[-1] == "first-fan-i3-a1-u1"
    assert f"{NS}/second" not in rec.queue._queued
    finish(1)
    await rec.reconcile(first)  # no item left to start: the room goes to the job short of pods
    assert f"{NS}/second" in rec.queue._queued
    await rec.reconcile(second)
    assert sum(1 for p in cache.pods_of(NS, "u-2") if not p.terminal) == 3
