"""The operator's own API writes for a 3-stage job, counted against the fake API server: every pod
event gets a reconcile of its own (the worst case), the audit relay confirms every submission at
once. Counts, never times. The audit still gets every transition exactly once (seq 1..N), the
Events mirror every transition, and each attempt is in the status before its pod is created."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from procjob.adapters.metrics import Metrics
from procjob.controller.cache import Cache
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import Reconciler
from procjob.core import outbox
from procjob.core.config import CoreConfig
from procjob.models.audit import AuditEntry
from procjob.models.job import ProcessingJob
from procjob.models.transitions import Transition
from tests.unit.controller.fakes import FakeClock, FakeKube

NS = "team-a"
UID = "11111111-2222-4333-8444-555555555555"
STAGES = 3
WRITES = ("replace_status", "create_pod", "delete_pod", "delete_finished_pods", "patch_job", "post_event")


def three_stages() -> dict[str, Any]:
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {
            "name": "j1",
            "namespace": NS,
            "uid": UID,
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:00:00Z",
        },
        "spec": {
            "podGC": "OnCompletion",
            "stages": [{"name": f"s{i}", "image": "registry.example.com/w:1"} for i in range(STAGES)],
        },
    }


class Relay:
    """An AuditOutlet whose PostgreSQL has every submitted entry at once; keeps the rows it got."""

    def __init__(self) -> None:
        self.rows: list[AuditEntry] = []
        self.done = 0

    def confirmed(self, uid: str) -> int:
        return self.done

    def submit(self, job: ProcessingJob, pending: list[AuditEntry]) -> None:
        fresh = [e for e in pending if e.seq > self.done]  # ON CONFLICT (job_uid, seq) DO NOTHING
        self.rows.extend(fresh)
        self.done = max([self.done, *(e.seq for e in fresh)])

    def problem(self, uid: str) -> str | None:
        return None


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    def __init__(self) -> None:
        self.kube, self.cache, self.clock, self.relay = FakeKube(), Cache(), FakeClock(), Relay()
        self.key = self.cache.observe_job(self.kube.add_job(three_stages()))
        self.rec = Reconciler(
            self.kube,  # type: ignore[arg-type]
            self.cache,
            WorkQueue(),
            CoreConfig(audit_enabled=True),
            Metrics(),
            clock=self.clock,
            audit=self.relay,
        )
        self.intent_before_create: list[bool] = []
        create = self.kube.create_pod

        async def checked_create(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
            attempts = [a for s in self.status().get("stages") or [] for a in s.get("attempts") or []]
            self.intent_before_create.append(manifest["metadata"]["name"] in {a["podName"] for a in attempts})
            return await create(namespace, manifest)

        self.kube.create_pod = checked_create  # type: ignore[method-assign]

    def status(self) -> dict[str, Any]:
        return dict(self.kube.jobs[(NS, "j1")].get("status") or {})

    async def reconcile(self) -> None:
        body = self.cache.job(self.key)
        assert body is not None
        self.cache.observe_job(copy.deepcopy(self.kube.jobs[(NS, "j1")]))  # the watch caught up
        await self.rec.reconcile(self.key)

    def live_pod(self) -> str:
        (name,) = [n for (_, n), p in self.kube.pods.items() if p["status"]["phase"] in ("Pending", "Running")]
        return name

    async def pod_event(self, phase: str) -> None:
        """The kubelet moves the live pod on; the watch delivers it; a reconcile follows."""
        pod = self.kube.pods[(NS, self.live_pod())]
        self.clock.tick(1)
        started = pod["status"].get("startTime") or iso(self.clock())
        if phase == "Running":
            state: dict[str, Any] = {"running": {"startedAt": started}}
        else:
            state = {"terminated": {"startedAt": started, "finishedAt": iso(self.clock()), "exitCode": 0}}
        pod["status"] = {"phase": phase, "startTime": started, "containerStatuses": [{"name": "main", "state": state}]}
        pod["metadata"]["resourceVersion"] = str(next(self.kube._rv))
        self.cache.observe_pod(copy.deepcopy(pod))
        await self.reconcile()


async def run_job(world: World, *, seen_pending: bool) -> None:
    await world.reconcile()  # admitted: the finalizer, then the status with the first attempt, then its pod
    for _ in range(STAGES):
        if seen_pending:
            await world.reconcile()  # the created pod seen Pending (scheduled, pulling)
        await world.pod_event("Running")
        await world.pod_event("Succeeded")
    await world.reconcile()  # the relay's confirmation of the last entries: a finished job's trim, once due
    await world.reconcile()


@pytest.mark.parametrize(
    ("seen_pending", "status_writes"),
    [
        # first write (admission + first intent); per stage: the pod's UID (riding with its running
        # when first seen running), its end (+ the next intent or the job's end); the finished job's trim
        (False, 1 + STAGES + STAGES + 1),
        # the same, the pod's UID recorded in a pass of its own; running rides with the end
        (True, 1 + STAGES + STAGES + 1),
    ],
)
async def test_a_three_stage_job_costs_these_writes(
    seen_pending: bool, status_writes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "TRIM_DELAY", 0.0)  # a finished job's trim is due at its next reconcile
    world = World()
    await run_job(world, seen_pending=seen_pending)
    world.rec.events.flush()
    await asyncio.gather(*world.rec.events.tasks)
    writes = Counter(verb for verb, _ in world.kube.calls if verb in WRITES)
    assert writes == {
        "patch_job": 1,  # the audit finalizer
        "replace_status": status_writes,
        "create_pod": STAGES,
        "delete_finished_pods": 1,  # podGC: OnCompletion, every pod of the job in one request
        "post_event": 1,  # the job's Events, gathered into one (its end posts them)
    }
    assert world.intent_before_create == [True] * STAGES
    status = world.status()
    assert status["conditions"][0]["reason"] == "Succeeded"
    assert (status["audit"]["pending"], status["audit"]["flushedSeq"]) == ([], status["audit"]["lastSeq"])
    seqs = [e.seq for e in world.relay.rows]
    assert seqs == list(range(1, status["audit"]["lastSeq"] + 1))  # exactly once, no gap
    types = [e.type for e in world.relay.rows]
    assert types.count(Transition.ATTEMPT_RUNNING) == STAGES  # every attempt's run, at its pod's start
    assert types.count(Transition.ATTEMPT_SUCCEEDED) == STAGES
    (event,) = world.kube.events
    mirrored = [t for t in world.relay.rows if t.type.meaning.event_reason is not None]
    assert event["message"] == "; ".join(dict.fromkeys(t.message for t in mirrored))  # every transition, in order
    assert event["reason"] == "JobSucceeded"
