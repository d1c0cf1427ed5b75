"""Builders for the core's unit tests: jobs from plain dicts, pods as `PodObservation`s, and `Run`,
a tiny world that drives `decide` pass by pass.

`Run.decide()` is the loop the controller runs: decide, store `decision.status.to_api()` as the job's
status (parsed back, so every status the core writes is also one the schema accepts), create the pods
it asks for (Pending, with a fresh UID) and remove the pods it deletes. Tests then change the pods or
the clock and decide again. The clock is fake: `NOW` is fixed and only `Run.tick` moves it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from procjob.core.config import CoreConfig
from procjob.core.decide import decide
from procjob.core.decision import CreatePod, Decision
from procjob.core.observe import PodObservation
from procjob.models.job import LABEL_ATTEMPT, LABEL_ITEM, LABEL_JOB_UID, LABEL_STAGE, ProcessingJob
from procjob.models.status import ProcessingJobStatus, StageStatus

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
JOB_NAME = "thumbs"
JOB_NAMESPACE = "media"
JOB_UID = "0a1b2c3d-4e5f-4a0b-8c9d-000000000001"
OTHER_UID = "99999999-4e5f-4a0b-8c9d-000000000002"


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def image_stage(name: str = "work", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.example.com/work:1.0", **fields}


def spec_of(*stages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A spec dict (wire form): the given stages, or one image stage."""
    return {"stages": list(stages) or [image_stage()], **fields}


def make_job(
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    *,
    name: str = JOB_NAME,
    uid: str = JOB_UID,
    generation: int = 1,
    deletion_time: datetime | None = None,
    finalizers: tuple[str, ...] = (),
    annotations: Mapping[str, str] | None = None,
) -> ProcessingJob:
    """A ProcessingJob parsed from its wire form, as the controller would hand it to `decide`."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": JOB_NAMESPACE,
        "uid": uid,
        "generation": generation,
        "creationTimestamp": iso(NOW),
        "resourceVersion": "1",
        "finalizers": list(finalizers),
        "annotations": dict(annotations or {}),
    }
    if deletion_time is not None:
        metadata["deletionTimestamp"] = iso(deletion_time)
    body = {"metadata": metadata, "spec": dict(spec if spec is not None else spec_of()), "status": dict(status or {})}
    return ProcessingJob.from_api(body)


def make_pod(
    name: str = "p",
    *,
    uid: str = "pod-uid-1",
    job_uid: str | None = JOB_UID,
    owner_uid: str | None = JOB_UID,
    stage: str | None = "work",
    attempt: int | None = 1,
    phase: str = "Pending",
    **fields: Any,
) -> PodObservation:
    """A pod observation with this job's labels and owner unless told otherwise."""
    return PodObservation(
        name=name,
        uid=uid,
        job_uid=job_uid,
        owner_uid=owner_uid,
        stage=stage,
        attempt=attempt,
        phase=phase,
        **fields,
    )


def pod_from(create: CreatePod, uid: str, now: datetime) -> PodObservation:
    """The pod the API server would hold right after `create`: Pending, labels from the manifest."""
    meta = create.manifest["metadata"]
    labels = meta["labels"]
    owner = next(ref["uid"] for ref in meta["ownerReferences"] if ref["controller"])
    return PodObservation(
        name=meta["name"],
        uid=uid,
        job_uid=labels[LABEL_JOB_UID],
        owner_uid=owner,
        stage=labels[LABEL_STAGE],
        attempt=int(labels[LABEL_ATTEMPT]),
        item=int(labels[LABEL_ITEM]) if LABEL_ITEM in labels else None,
        created=now,
    )


class Run:
    """One job and its pods, driven through `decide` pass after pass."""

    def __init__(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        config: CoreConfig | None = None,
        status: Mapping[str, Any] | None = None,
        now: datetime = NOW,
        admitted: bool = True,
    ) -> None:
        self.spec: dict[str, Any] = dict(spec if spec is not None else spec_of())
        self.config = config or CoreConfig()
        self.status: dict[str, Any] = dict(status or {})
        self.now = now
        self.admitted = admitted
        self.pods: dict[str, PodObservation] = {}
        self.deletion_time: datetime | None = None
        self.finalizers: tuple[str, ...] = ()
        self.annotations: dict[str, str] = {}
        self.generation = 1
        self.pods_left: int | None = None  # the operator's pod caps for the next pass (None: no limit)
        self.decisions: list[Decision] = []
        self._uids = itertools.count(1)

    # ------------------------------------------------------------------ the loop
    def job(self) -> ProcessingJob:
        return make_job(
            self.spec,
            self.status,
            generation=self.generation,
            deletion_time=self.deletion_time,
            finalizers=self.finalizers,
            annotations=self.annotations,
        )

    def decide(self, *, apply: bool = True) -> Decision:
        """One reconcile pass: decide, store the status, and (unless `apply` is False) carry out the pod actions."""
        decision = decide(
            self.job(),
            list(self.pods.values()),
            self.now,
            self.config,
            admitted=self.admitted,
            pods_left=self.pods_left,
        )
        self.status = ProcessingJobStatus.model_validate(decision.status.to_api()).to_api()
        self.decisions.append(decision)
        if apply:
            for create in decision.create:
                if create.name not in self.pods:
                    self.pods[create.name] = pod_from(create, f"pod-uid-{next(self._uids)}", self.now)
            for delete in decision.delete:
                self.pods.pop(delete.name, None)
        return decision

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def set_spec(self, **fields: Any) -> None:
        self.spec = {**self.spec, **fields}
        self.generation += 1

    def trim_audit(self) -> None:
        """What the audit relay does once PostgreSQL has the pending entries."""
        audit = dict(self.status.get("audit") or {})
        audit["flushedSeq"] = audit.get("lastSeq", 0)
        audit["pending"] = []
        self.status = {**self.status, "audit": audit}

    # ------------------------------------------------------------------ what the world does to pods
    @property
    def live_pod(self) -> str:
        """The name of the one live pod (fails the test when there is not exactly one)."""
        (name,) = [p.name for p in self.pods.values() if p.live]
        return name

    def change(self, name: str | None = None, **fields: Any) -> None:
        name = name or self.live_pod
        self.pods[name] = dataclasses.replace(self.pods[name], **fields)

    def running(self, name: str | None = None) -> None:
        self.change(name, phase="Running", started=self.now, waiting_reason=None, waiting_message=None)

    def succeeded(self, name: str | None = None, message: str | None = None) -> None:
        pod = self.pods[name or self.live_pod]
        self.change(
            pod.name,
            phase="Succeeded",
            started=pod.started or self.now,
            finished=self.now,
            exit_code=0,
            terminated_reason="Completed",
            termination_message=message,
        )

    def failed(self, name: str | None = None, exit_code: int | None = 1, reason: str = "Error", **fields: Any) -> None:
        pod = self.pods[name or self.live_pod]
        self.change(
            pod.name,
            **{
                "phase": "Failed",
                "started": pod.started or self.now,
                "finished": self.now,
                "exit_code": exit_code,
                "terminated_reason": reason,
                **fields,
            },
        )

    def evicted(self, name: str | None = None) -> None:
        self.failed(name, exit_code=None, reason="Error", status_reason="Evicted", status_message="low on memory")

    def vanish(self, name: str | None = None) -> None:
        del self.pods[name or self.live_pod]

    # ------------------------------------------------------------------ reading the status
    @property
    def parsed(self) -> ProcessingJobStatus:
        return ProcessingJobStatus.model_validate(self.status)

    def stage(self, name: str = "work") -> StageStatus:
        return next(s for s in self.parsed.stages if s.name == name)

    @property
    def succeeded_condition(self) -> tuple[str, str]:
        cond = next(c for c in self.parsed.conditions if c.type == "Succeeded")
        return cond.status.value, cond.reason

    def transitions(self, type_: str | None = None) -> list[str]:
        """The transition types made so far (or the messages of one type)."""
        if type_ is None:
            return [t.type for d in self.decisions for t in d.transitions]
        return [t.message for d in self.decisions for t in d.transitions if t.type == type_]
