"""What `decide` returns: the new status and the actions that carry it out.

The controller applies a Decision in a fixed order that is safe after a crash at any line:
1. the status (it records intent: the attempt about to be created, the transitions in the outbox);
2. pod creations (deterministic names: repeating one gives 409, which adopts our own pod);
3. pod deletions (repeating one gives 404, which is fine), and a finished job's finished pods
   collected by one request (`collect`: by its job-UID label, only pods not Pending or Running);
4. Events (a lossy mirror of the transitions);
5. a requeue at `requeue_at`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from procjob.models.audit import AuditEntry
from procjob.models.status import ProcessingJobStatus


@dataclass(frozen=True, slots=True)
class CreatePod:
    stage: str
    attempt: int
    name: str
    manifest: dict[str, Any] = field(compare=False, repr=False)
    item: int | None = None  # the item of a fanned-out stage


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    uid: str | None  # a precondition: delete only this incarnation
    why: str
    force: bool = False  # grace period 0: the pod is stuck terminating on a node that is gone


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    reason: str
    message: str
    # only a healthy run's progress (the job's start, a stage's start and success): the shell may
    # gather it with the job's next Events (controller.reporting)
    progress: bool = field(default=False, compare=False)


class FinalizerAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class Decision:
    status: ProcessingJobStatus
    create: tuple[CreatePod, ...] = ()
    delete: tuple[DeletePod, ...] = ()
    # podGC of a finished job whose every pod has ended and may go: all of them in one request (a
    # DeleteCollection by the job's UID label, finished pods only), not one DELETE a pod
    collect: tuple[DeletePod, ...] = ()
    events: tuple[Event, ...] = ()
    transitions: tuple[AuditEntry, ...] = ()  # made by this decision (also in the outbox when audited)
    requeue_at: datetime | None = None
    finalizer: FinalizerAction | None = None
    delete_job: bool = False  # a finished job past its ttlSecondsAfterFinished: delete the object
    starved: bool = False  # an attempt could have started but the pass had no pod left (see decide's pods_left)
