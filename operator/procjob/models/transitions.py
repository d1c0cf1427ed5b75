"""The audit's vocabulary: every transition a job can make, and what each one means.

A transition is recorded once in the audit (PostgreSQL, via the status outbox) and mirrored as a
Kubernetes Event. Everything that depends on its kind — the Event's reason and type, whether it
is a routine step of a healthy run (`--events important` skips those), whether it is about the
job, a stage or an attempt, and whether it ends the job — is spelled here once; nothing infers it
from the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    JOB = "job"
    STAGE = "stage"
    ATTEMPT = "attempt"


@dataclass(frozen=True, slots=True)
class Meaning:
    level: Level
    event_reason: str | None  # None: audited, never mirrored as an Event
    warning: bool = False  # the Event's type: Warning, else Normal
    routine: bool = False  # a healthy run's step (StageStarted, AttemptStarted, StageSucceeded)
    ends_job: bool = False  # the job's outcome (or an invalid spec, which ends it too)


class Transition(StrEnum):
    JOB_CREATED = "JobCreated"
    JOB_QUEUED = "JobQueued"
    JOB_STARTED = "JobStarted"
    STAGE_STARTED = "StageStarted"
    ATTEMPT_STARTED = "AttemptStarted"
    ATTEMPT_RUNNING = "AttemptRunning"
    ATTEMPT_SUCCEEDED = "AttemptSucceeded"
    ATTEMPT_FAILED = "AttemptFailed"
    ATTEMPT_STOPPED = "AttemptStopped"
    RETRY_SCHEDULED = "RetryScheduled"
    STAGE_SUCCEEDED = "StageSucceeded"
    STAGE_FAILED = "StageFailed"
    ITEM_FAILED = "ItemFailed"  # an item of a fanned-out stage failed for good (after its retries)
    FINALLY_STARTED = "FinallyStarted"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    JOB_CANCELLED = "JobCancelled"
    JOB_SUSPENDED = "JobSuspended"
    JOB_RESUMED = "JobResumed"
    JOB_RETRIED = "JobRetried"
    RETRY_IGNORED = "RetryIgnored"
    INVALID_SPEC = "InvalidSpec"
    JOB_DELETED = "JobDeleted"

    @property
    def meaning(self) -> Meaning:
        return MEANINGS[self]

    @property
    def rank(self) -> int:
        """Which transition names a grouped Event, lowest first: the job's end (or an invalid
        spec), then the job's, a stage's, an attempt's."""
        meaning = self.meaning
        if meaning.ends_job:
            return 0
        return {Level.JOB: 1, Level.STAGE: 2, Level.ATTEMPT: 3}[meaning.level]


_J, _S, _A = Level.JOB, Level.STAGE, Level.ATTEMPT
MEANINGS: dict[Transition, Meaning] = {
    Transition.JOB_CREATED: Meaning(_J, None),
    Transition.JOB_QUEUED: Meaning(_J, "Queued"),
    Transition.JOB_STARTED: Meaning(_J, "Started"),
    Transition.STAGE_STARTED: Meaning(_S, "StageStarted", routine=True),
    Transition.ATTEMPT_STARTED: Meaning(_A, "AttemptStarted", routine=True),
    Transition.ATTEMPT_RUNNING: Meaning(_A, None),
    Transition.ATTEMPT_SUCCEEDED: Meaning(_A, None),
    Transition.ATTEMPT_FAILED: Meaning(_A, "AttemptFailed", warning=True),
    Transition.ATTEMPT_STOPPED: Meaning(_A, "AttemptStopped"),
    Transition.RETRY_SCHEDULED: Meaning(_S, "RetryScheduled"),
    Transition.STAGE_SUCCEEDED: Meaning(_S, "StageSucceeded", routine=True),
    Transition.STAGE_FAILED: Meaning(_S, "StageFailed", warning=True),
    Transition.ITEM_FAILED: Meaning(_S, "ItemFailed", warning=True),
    Transition.FINALLY_STARTED: Meaning(_J, "FinallyStarted"),
    Transition.JOB_SUCCEEDED: Meaning(_J, "JobSucceeded", ends_job=True),
    Transition.JOB_FAILED: Meaning(_J, "JobFailed", warning=True, ends_job=True),
    Transition.JOB_CANCELLED: Meaning(_J, "Cancelled", ends_job=True),
    Transition.JOB_SUSPENDED: Meaning(_J, "Suspended"),
    Transition.JOB_RESUMED: Meaning(_J, "Resumed"),
    Transition.JOB_RETRIED: Meaning(_J, "Retried"),
    Transition.RETRY_IGNORED: Meaning(_J, "RetryIgnored", warning=True),
    Transition.INVALID_SPEC: Meaning(_J, "InvalidSpec", warning=True, ends_job=True),
    Transition.JOB_DELETED: Meaning(_J, None),
}
