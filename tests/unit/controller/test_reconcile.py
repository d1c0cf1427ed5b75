"""Reconciler.apply and its error paths against a fake API client and a fake clock: status first,
then pods; a 409 re-reads and gives a queue slot back; a refused pod fails its stage with the API
server's words; a look-alike pod is never adopted; the relay gets the decided job; a job that keeps
crashing the reconcile ends Failed (ReconcileError) with a Warning Event."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from procjob.adapters.kube import ApiError, Conflict
from procjob.adapters.metrics import Metrics
from procjob.controller import reconcile as reconcile_module
from procjob.controller.admission import Ticket
from procjob.controller.cache import Cache
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import CRASHES_TO_FAIL, Reconciler, refused
from procjob.core.config import CoreConfig
from procjob.core.observe import PodObservation
from procjob.models.audit import AuditEntry
from procjob.models.job import ProcessingJob
from tests.unit.controller.fakes import START, FakeClock, FakeKube
from tests.unit.controller.fakes import refused as refusal

NS = "team-a"
UID = "11111111-2222-4333-8444-555555555555"


def job_body(name: str = "j1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": UID,
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:00:00Z",
        },
        "spec": {"stages": [{"name": "work", "image": "registry.example.com/w:1"}], **spec},
    }


class Slots:
    """An Admission that counts reservations and releases."""

    def __init__(self, admit: bool = True) -> None:
        self.admit = admit
        self.tickets: list[str] = []
        self.released: list[str] = []

    def ticket(self, job: ProcessingJob) -> Ticket:
        self.tickets.append(job.meta.key)
        return Ticket(self.admit)

    def release(self, key: str) -> None:
        self.released.append(key)

    def forget(self, key: str) -> None:
        return None

    def admissible(self) -> list[str]:
        return []


class Outlet:
    def __init__(self) -> None:
        self.submitted: list[tuple[ProcessingJob, list[AuditEntry]]] = []
        self.problems: dict[str, str] = {}

    def confirmed(self, uid: str) -> int:
        return 0

    def submit(self, job: ProcessingJob, pending: list[AuditEntry]) -> None:
        self.submitted.append((job, pending))

    def problem(self, uid: str) -> str | None:
        return self.problems.get(uid)


def setup(
    body: dict[str, Any] | None = None, *, audit: bool = False, admission: Slots | None = None
) -> tuple[Reconciler, FakeKube, Cache, FakeClock, str]:
    kube, cache, clock = FakeKube(), Cache(), FakeClock()
    stored = kube.add_job(body or job_body())
    key = cache.observe_job(stored)
    rec = Reconciler(
        kube,  # type: ignore[arg-type]
        cache,
        WorkQueue(),
        CoreConfig(audit_enabled=audit),
        Metrics(),
        clock=clock,
        admission=admission or Slots(),
        audit=Outlet() if audit else None,
    )
    return rec, kube, cache, clock, key


def stored_status(kube: FakeKube, name: str = "j1") -> dict[str, Any]:
    return dict(kube.jobs[(NS, name)].get("status") or {})


async def settle(rec: Reconciler) -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.gather(*rec.events.tasks)


async def test_a_new_job_gets_its_status_written_before_its_pod_is_created() -> None:
    rec, kube, cache, _, key = setup()
    await rec.reconcile(key)
    assert [verb for verb, _ in kube.calls] == ["replace_status", "create_pod"]
    attempts = stored_status(kube)["stages"][0]["attempts"]
    assert [a["podName"] for a in attempts] == [name for _, name in kube.pods]
    assert len(cache.pods_of(NS, UID)) == 1


async def test_a_conflict_on_the_status_write_re_reads_creates_nothing_and_gives_the_slot_back() -> None:
    slots = Slots()
    rec, kube, _, _, key = setup(admission=slots)
    kube.fail["replace_status"] = [Conflict(409, "Conflict", "modified")]
    await rec.reconcile(key)
    assert kube.pods == {}
    assert ("get_job", "j1") in kube.calls
    assert slots.released == [key]
    assert key in rec.queue._queued


async def test_a_reconcile_that_raises_after_admission_gives_the_slot_back() -> None:
    slots = Slots()
    rec, kube, _, _, key = setup(admission=slots)
    kube.fail["replace_status"] = [OSError("connection reset")]
    with pytest.raises(OSError, match="connection reset"):
        await rec.reconcile(key)
    assert slots.released == [key]


async def test_a_started_job_takes_no_ticket() -> None:
    slots = Slots()
    rec, _kube, _cache, _, key = setup(admission=slots)
    await rec.reconcile(key)
    assert slots.tickets == [key]
    await rec.reconcile(key)
    assert slots.tickets == [key]


async def test_a_pod_the_api_server_refuses_fails_the_stage_with_its_words_and_is_not_retried() -> None:
    rec, kube, _, _, key = setup(job_body(retry={"limit": 5}))
    words = "spec.containers[0].resources.requests: Invalid value: must be less than or equal to limit"
    kube.fail["create_pod"] = [refusal(words)]
    await rec.reconcile(key)
    assert kube.pods == {}
    await rec.reconcile(key)
    status = stored_status(kube)
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "StageFailed")
    assert words in succeeded["message"]
    assert status["stages"][0]["attempts"][-1]["reason"] == "PodRejected"
    assert [v for v, _ in kube.calls].count("create_pod") == 1
    assert rec._rejected == {}


@pytest.mark.parametrize(
    ("status", "message", "job_fault"),
    [
        (400, "bad request", True),
        (422, "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Invalid value", True),
        (413, "too large", True),
        (403, 'pods "p" is forbidden: violates PodSecurity "restricted:latest"', True),
        (403, 'pods "p" is forbidden: maximum cpu usage per Container is 100m, but limit is 1', True),
        (403, 'pods "p" is forbidden: exceeded quota: compute, requested: cpu=1, used: cpu=4, limited: cpu=4', False),
        (403, 'pods is forbidden: User "system:serviceaccount:x:procjob" cannot create resource "pods"', False),
        (401, "Unauthorized", False),
        (404, "namespaces not found", False),
        (409, "already exists", False),
        (429, "too many requests", False),
        (500, "etcd", False),
    ],
)
def test_which_refusals_are_the_jobs(status: int, message: str, job_fault: bool) -> None:
    assert refused(ApiError(status, "x", message)) is job_fault


async def test_a_look_alike_pod_of_another_owner_is_never_adopted_and_fails_the_attempt() -> None:
    rec, kube, _, _, key = setup()
    await rec.reconcile(key)
    ((_, name),) = kube.pods
    kube.pods[(NS, name)]["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    rec.cache.pods.clear()
    meta = ProcessingJob.from_api(kube.jobs[(NS, "j1")]).meta
    await rec._create_pod(key, meta, kube.pods[(NS, name)])
    assert rec.cache.pods_of(NS, UID) == []
    await rec.reconcile(key)
    attempt = stored_status(kube)["stages"][0]["attempts"][-1]
    assert (attempt["state"], attempt["reason"]) == ("Failed", "PodRejected")
    assert "taken by a pod this job does not own" in attempt["message"]


async def test_our_own_pod_is_adopted_on_a_409() -> None:
    rec, kube, cache, _, key = setup()
    await rec.reconcile(key)
    ((_, name),) = kube.pods
    cache.pods.clear()
    meta = ProcessingJob.from_api(kube.jobs[(NS, "j1")]).meta
    await rec._create_pod(key, meta, kube.pods[(NS, name)])
    assert [p.name for p in cache.pods_of(NS, UID)] == [name]


async def test_the_relay_gets_the_job_as_decided_not_as_read() -> None:
    rec, _kube, _, _, key = setup(audit=True)
    await rec.reconcile(key)  # adds the finalizer, writes JobCreated/JobStarted/...
    outlet = rec.audit
    assert isinstance(outlet, Outlet)
    job, pending = outlet.submitted[-1]
    assert job.status.start_time is not None  # the decided status, not the empty one read
    assert job.status.audit.last_seq == pending[-1].seq


async def test_a_stuck_pod_is_deleted_by_force() -> None:
    rec, kube, cache, clock, key = setup()
    await rec.reconcile(key)
    ((_, name),) = kube.pods
    pod = kube.pods[(NS, name)]
    pod["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    pod["metadata"]["resourceVersion"] = "999"
    cache.observe_pod(pod)
    clock.tick(3600)
    await rec.reconcile(key)
    assert ("delete_pod_grace", "0") in kube.calls


async def test_a_job_that_keeps_crashing_the_reconcile_ends_failed_with_the_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, kube, _, _, key = setup()

    def broken(*_: Any, **__: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(reconcile_module, "decide", broken)
    for _ in range(CRASHES_TO_FAIL):
        with pytest.raises(RecursionError):
            await rec.reconcile(key)
        await rec._crashed(key, RecursionError("maximum recursion depth exceeded"))
    await settle(rec)
    status = stored_status(kube)
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "ReconcileError")
    assert "RecursionError" in succeeded["message"]
    warnings = [e for e in kube.events if e["type_"] == "Warning" and e["reason"] == "ReconcileError"]
    assert len(warnings) == CRASHES_TO_FAIL


async def test_an_unreadable_object_is_reported_on_it() -> None:
    body = job_body()
    body["status"] = {"stages": "not a list"}
    rec, kube, _, _, key = setup(body)
    await rec.reconcile(key)
    await settle(rec)
    assert [e["reason"] for e in kube.events] == ["ReconcileError"]
    assert "cannot read" in kube.events[0]["message"]
    assert START  # the fake clock's start, for readers of the fixtures


async def test_a_job_whose_records_the_relay_cannot_write_says_so_once() -> None:
    rec, kube, _, clock, key = setup(audit=True)
    outlet = rec.audit
    assert isinstance(outlet, Outlet)
    outlet.problems[UID] = "PostgreSQL refuses this job's records: invalid byte sequence"
    await rec.reconcile(key)
    clock.tick(1)
    kube.pods.clear()
    await rec.reconcile(key)
    await settle(rec)
    blocked = [e for e in kube.events if e["reason"] == "AuditBlocked"]
    assert len(blocked) == 1
    assert blocked[0]["type_"] == "Warning"
    assert "invalid byte sequence" in blocked[0]["message"]


def succeeded(kube: FakeKube) -> dict[str, Any]:
    """The job's one pod, ended Succeeded (a newer resourceVersion)."""
    ((_, name),) = kube.pods
    pod = kube.pods[(NS, name)]
    pod["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
    }
    pod["metadata"]["resourceVersion"] = "900"
    return pod


async def test_a_finished_job_past_its_ttl_is_deleted_with_a_uid_precondition() -> None:
    rec, kube, _, clock, key = setup(job_body(ttlSecondsAfterFinished=0))
    await rec.reconcile(key)
    rec.cache.observe_pod(succeeded(kube))
    await rec.reconcile(key)  # the job succeeds
    assert (NS, "j1") in kube.jobs
    clock.tick(1)
    await rec.reconcile(key)  # past its TTL of 0 s
    assert (NS, "j1") not in kube.jobs
    assert ("delete_job", "j1") in kube.calls


class Archive:
    """A log archive that knows the attempts it was told were archived."""

    def __init__(self) -> None:
        self.archived: set[str] = set()
        self.seen: list[list[str]] = []

    def observe(self, job: ProcessingJob, pods: list[PodObservation]) -> list[PodObservation]:
        self.seen.append([p.name for p in pods])
        return [dataclasses.replace(p, log_archived=p.name in self.archived) for p in pods]


async def test_podgc_waits_for_the_log_archive_the_reconcile_asks() -> None:
    kube, cache, clock, archive = FakeKube(), Cache(), FakeClock(), Archive()
    key = cache.observe_job(kube.add_job(job_body()))
    rec = Reconciler(
        kube,  # type: ignore[arg-type]
        cache,
        WorkQueue(),
        CoreConfig(audit_enabled=True, log_archive_wait_seconds=300),
        Metrics(),
        clock=clock,
        audit=Outlet(),
        logs=archive,
    )
    await rec.reconcile(key)
    ((_, name),) = kube.pods
    pod = kube.pods[(NS, name)]
    pod["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [
            {"name": "main", "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-02T03:04:05Z"}}}
        ],
    }
    pod["metadata"]["resourceVersion"] = "900"
    cache.observe_pod(pod)
    await rec.reconcile(key)  # the job succeeds; its pod waits for the archive
    assert archive.seen[-1] == [name]
    assert ("delete_pod", name) not in kube.calls
    archive.archived.add(name)
    await rec.reconcile(key)
    assert ("delete_pod", name) in kube.calls


async def test_a_finished_job_without_pods_has_its_tombstones_forgotten_a_running_one_keeps_them() -> None:
    """#18's memory: a finished job's deleted pods are read no more (it creates no pod and waits for
    none), so the reconcile that sees it finished with no pod left drops their tombstones."""
    rec, kube, cache, _, key = setup(job_body(podGC="OnCompletion"))
    await rec.reconcile(key)
    pod = succeeded(kube)
    name = pod["metadata"]["name"]
    cache.observe_pod(pod)
    await rec.reconcile(key)  # the job succeeds; its pod is still cached (podGC's delete not seen yet)
    assert cache.pods_of(NS, UID)
    cache.observe_pod(pod, deleted=True)
    assert cache.gone(NS, UID) == {name: pod["metadata"]["uid"]}  # kept while a pass may need it
    await rec.reconcile(key)  # finished, no pod left
    assert cache.gone(NS, UID) == {}
    assert cache.vanished(NS, UID) == {}


async def test_a_running_job_keeps_the_tombstones_of_its_deleted_pods() -> None:
    rec, kube, cache, _, key = setup()
    await rec.reconcile(key)
    ((_, name),) = kube.pods
    pod = kube.pods[(NS, name)]
    cache.observe_pod(pod)
    cache.observe_pod(pod, deleted=True)  # deleted while running: the job goes on (a new attempt)
    await rec.reconcile(key)
    assert name in cache.gone(NS, UID)
