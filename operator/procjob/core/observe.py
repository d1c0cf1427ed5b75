"""Reduce a Pod API object to the few facts the core decides on.

Doing this once, at the edge of the core, keeps `decide` free of dict-walking and lets the unit
tests build pods with a one-line constructor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from procjob.core.timefmt import parse_time
from procjob.models.job import LABEL_ATTEMPT, LABEL_JOB_UID, LABEL_STAGE

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class PodObservation:
    """What the operator knows about one worker pod."""

    name: str
    uid: str
    job_uid: str | None = None  # from the procjob.dev/job-uid label
    owner_uid: str | None = None  # the controller ownerReference's UID
    stage: str | None = None
    attempt: int | None = None
    phase: str = "Pending"
    created: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None
    termination_message: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    status_reason: str | None = None  # pod.status.reason, e.g. Evicted
    status_message: str | None = None
    disruption: str | None = None  # the DisruptionTarget condition's reason, when True
    unschedulable: str | None = None  # the PodScheduled=False message
    deleting: bool = False

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def live(self) -> bool:
        """Might still run: neither finished nor on its way out."""
        return not self.terminal and not self.deleting

    @classmethod
    def from_api(cls, pod: dict[str, Any]) -> PodObservation:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        labels = meta.get("labels") or {}
        owner_uid = next(
            (ref.get("uid") for ref in meta.get("ownerReferences") or [] if ref.get("controller")),
            None,
        )
        attempt_label = labels.get(LABEL_ATTEMPT)
        container = _main_container_status(status)
        state = container.get("state") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        running = state.get("running") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        disruption = conditions.get("DisruptionTarget") or {}
        scheduled = conditions.get("PodScheduled") or {}
        return cls(
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            job_uid=labels.get(LABEL_JOB_UID),
            owner_uid=owner_uid,
            stage=labels.get(LABEL_STAGE),
            attempt=int(attempt_label) if attempt_label and attempt_label.isdigit() else None,
            phase=status.get("phase") or "Pending",
            created=parse_time(meta.get("creationTimestamp")),
            started=parse_time(running.get("startedAt") or terminated.get("startedAt") or status.get("startTime")),
            finished=parse_time(terminated.get("finishedAt")),
            exit_code=terminated.get("exitCode"),
            terminated_reason=terminated.get("reason"),
            termination_message=terminated.get("message"),
            waiting_reason=waiting.get("reason"),
            waiting_message=waiting.get("message"),
            status_reason=status.get("reason"),
            status_message=status.get("message"),
            disruption=(disruption.get("reason") or "DisruptionTarget") if disruption.get("status") == "True" else None,
            unschedulable=scheduled.get("message") or "unschedulable" if scheduled.get("status") == "False" else None,
            deleting=bool(meta.get("deletionTimestamp")),
        )


def _main_container_status(status: dict[str, Any]) -> dict[str, Any]:
    statuses = status.get("containerStatuses") or []
    for entry in statuses:
        if entry.get("name") == "main":
            return dict(entry)
    return dict(statuses[0]) if statuses else {}
