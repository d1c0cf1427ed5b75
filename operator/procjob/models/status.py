"""`ProcessingJob.status`: everything the operator must remember, and what users read.

The status subresource is the operator's only memory: a restart, a lost watch or a conflict never
resets a backoff or loses an attempt because all of it is here. Its size is bounded: at most
MAX_STAGES + MAX_FINALLY stages, the last MAX_ATTEMPTS_KEPT attempts of each (older ones are counted in
`attemptCount` and kept in full in PostgreSQL), stage outputs of at most 4 KiB, and an audit outbox
of at most AUDIT_OUTBOX_HARD_LIMIT entries (see `AuditOutbox`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from procjob.models import contract
from procjob.models.audit import AuditEntry
from procjob.models.base import ApiModel
from procjob.models.fanout import MAX_ITEMS, MAX_PARALLELISM
from procjob.models.spec import MAX_FINALLY, MAX_STAGES, RetryAction

MAX_ATTEMPTS_KEPT = 10
AUDIT_BACKLOG_LIMIT = 100
# Past AUDIT_BACKLOG_LIMIT only the end of the work in progress is recorded: the running attempt's
# end, its stage's and the job's (or a cancel, a deadline, the deletion), never a new attempt, a
# suspend or resume, or a retry request. That is at most this many entries in all, in every path.
AUDIT_OUTBOX_HARD_LIMIT = AUDIT_BACKLOG_LIMIT + 16
MAX_OUTPUT_BYTES = contract.MAX_OUTPUT_BYTES  # the worker contract's; kept here for its importers

Message = Annotated[str, Field(max_length=1024)]


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Reasons of the `Succeeded` condition (and the Status printer column)."""

    QUEUED = "Queued"
    RUNNING = "Running"
    BACKOFF_WAITING = "BackoffWaiting"
    SUSPENDED = "Suspended"
    AUDIT_BACKLOG = "AuditBacklogFull"
    FINALIZING = "Finalizing"  # the stages have ended; spec.finally runs
    SUCCEEDED = "Succeeded"
    STAGE_FAILED = "StageFailed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    CANCELLED = "Cancelled"
    INVALID_SPEC = "InvalidSpec"
    FINALLY_FAILED = "FinallyFailed"  # the stages succeeded, a finally stage did not
    RECONCILE_ERROR = "ReconcileError"  # the operator could not process the job at all (see core.failsafe)


class Phase(StrEnum):
    """Display only (printer columns); derived from conditions, never read back."""

    QUEUED = "Queued"
    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class StageState(StrEnum):
    PENDING = "Pending"  # not started yet
    RUNNING = "Running"  # an attempt's pod exists (Pending or Running)
    BACKOFF_WAITING = "BackoffWaiting"  # waiting for nextAttemptTime
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class AttemptState(StrEnum):
    PENDING = "Pending"  # recorded; the pod is being created or is Pending
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"  # stopped by suspend or cancel: not a failure, not charged


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: Annotated[str, Field(max_length=64)] = Field(description="Succeeded or Suspended.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, Field(max_length=64)] = Field(description="CamelCase reason.")
    message: Message = Field(default="", description="Human-readable detail.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="Generation the condition is about.")


class Attempt(ApiModel):
    """One attempt of a stage: one worker pod."""

    attempt: int = Field(ge=1, description="1 for the first attempt.")
    pod_name: Annotated[str, Field(max_length=253)] = Field(description="The attempt's pod.")
    pod_uid: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Set once the pod has been seen; a later absence means it was deleted."
    )
    state: AttemptState = Field(description="Pending, Running, Succeeded, Failed or Stopped.")
    create_time: datetime = Field(description="When the attempt was recorded (just before its pod was created).")
    start_time: datetime | None = Field(default=None, description="When its container started running.")
    finish_time: datetime | None = Field(default=None, description="When it ended.")
    exit_code: int | None = Field(default=None, description="Container exit code.")
    reason: Annotated[str, Field(max_length=64)] | None = Field(default=None, description="Why it ended.")
    message: Message | None = Field(default=None, description="Detail, e.g. the waiting reason or error.")
    charged: bool | None = Field(default=None, description="Whether the failure counted against the limit.")
    item: int | None = Field(default=None, ge=0, description="The item of a fanned-out stage (forEach), from 0.")


class RetryDecision(ApiModel):
    """Why the operator retried (or did not): retry explainability."""

    rule: Annotated[str, Field(max_length=128)] = Field(
        description="The rule that matched, e.g. rules[0], default, or limit."
    )
    action: RetryAction = Field(description="Retry, FailJob or Ignore.")
    failure_reason: Annotated[str, Field(max_length=64)] = Field(description="How the failure was classified.")
    exit_code: int | None = Field(default=None, description="The exit code that was matched.")
    delay_seconds: float | None = Field(default=None, description="The wait before the next attempt.")
    retries_left: int = Field(description="Charged retries still available after this decision.")


class ItemStatus(ApiModel):
    """One item of a fanned-out stage while it is in flight: running, or waiting for its next attempt."""

    index: int = Field(ge=0, description="The item's place in the list, from 0.")
    state: StageState = Field(description="Running, BackoffWaiting or Suspended.")
    attempt_count: int = Field(default=0, ge=0, description="Attempts of this item in this run.")
    charged_failures: int = Field(default=0, ge=0, description="Its failures counted against the retry limit.")
    attempt: Attempt | None = Field(default=None, description="Its current (or last) attempt.")
    next_attempt_time: datetime | None = Field(default=None, description="When its next attempt starts.")


class FanOutStatus(ApiModel):
    """A fanned-out stage's items: counts and the failed items; the items in flight (at most its
    parallelism); every item's attempts are in the audit. Items start in index order: those below `next`
    have started (and, unless in flight or to be re-run, ended)."""

    total: int = Field(ge=0, le=MAX_ITEMS, description="Items in the list.")
    next: int = Field(default=0, ge=0, le=MAX_ITEMS, description="Items below this index have started.")
    succeeded: int = Field(default=0, ge=0, description="Items that succeeded.")
    failed: int = Field(default=0, ge=0, description="Items that failed for good (after their retries).")
    failed_indexes: Annotated[str, Field(max_length=65536)] = Field(
        default="", description="The failed items, as ranges of indexes: 3,17-19."
    )
    rerun: Annotated[str, Field(max_length=65536)] = Field(
        default="", description="Items to run again (a retried job), as ranges of indexes; they start first."
    )
    in_flight: list[ItemStatus] = Field(
        default_factory=list, max_length=MAX_PARALLELISM, description="The items running or waiting for a retry."
    )
    outputs: dict[str, Any] | None = Field(
        default=None,
        description="The outputs of the items that succeeded so far, by index; in the stage's outputs once it ends.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    output_bytes: int = Field(default=0, ge=0, description="Their size as JSON.")
    outputs_dropped: bool = Field(default=False, description="Outputs were over the bound and are not kept.")
    max_attempt: int = Field(default=0, ge=0, description="The highest attempt number any item has had.")
    rerun_base: int = Field(
        default=0,
        ge=0,
        description="Items number their attempts from this one on (maxAttempt when the job was retried), so that no "
        "pod name is used twice.",
    )


class StageStatus(ApiModel):
    """Progress of one stage."""

    name: Annotated[str, Field(max_length=63)] = Field(description="Stage name.")
    state: StageState = Field(description="Pending, Running, BackoffWaiting, Suspended, Succeeded, Failed, Cancelled.")
    attempt_count: int = Field(default=0, ge=0, description="Attempts made so far (also those no longer listed).")
    charged_failures: int = Field(default=0, ge=0, description="Failures counted against the retry limit.")
    attempts: list[Attempt] = Field(
        default_factory=list, max_length=MAX_ATTEMPTS_KEPT, description="The most recent attempts."
    )
    start_time: datetime | None = Field(default=None, description="When the first attempt was recorded.")
    completion_time: datetime | None = Field(default=None, description="When the stage ended.")
    next_attempt_time: datetime | None = Field(default=None, description="When the next attempt starts.")
    last_retry_decision: RetryDecision | None = Field(default=None, description="The latest retry decision.")
    outputs: dict[str, Any] | None = Field(
        default=None,
        description="The JSON object the stage wrote as its termination message (at most 4 KiB); of a fanned-out "
        "stage, each key's values in item order (null for an item that wrote none).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    message: Message | None = Field(default=None, description="Detail about the stage.")
    items: FanOutStatus | None = Field(default=None, description="A fanned-out stage's items (forEach).")


class AuditOutbox(ApiModel):
    """Transitions not yet confirmed in PostgreSQL (the durable backlog).

    `lastSeq` is the sequence number of the newest transition; entries with seq > `flushedSeq` are in
    `pending`. At AUDIT_BACKLOG_LIMIT pending entries the operator starts no new attempts and defers
    suspend, resume and retry requests (records are never dropped); running attempts still finish
    and are recorded, so `pending` never holds more than AUDIT_OUTBOX_HARD_LIMIT entries.
    """

    last_seq: int = Field(default=0, ge=0, description="Sequence number of the newest transition.")
    flushed_seq: int = Field(default=0, ge=0, description="Highest sequence number PostgreSQL has.")
    pending: list[AuditEntry] = Field(
        default_factory=list, description="Transitions waiting for PostgreSQL, oldest first."
    )
    deletion_recorded: bool = Field(
        default=False, description="The JobDeleted transition is in the outbox (or flushed)."
    )


class FinallyStatus(ApiModel):
    """How the stages ended, kept while spec.finally runs: what the job ends with (unless a finally stage
    fails after the stages succeeded) and what {{ job.status }} and {{ job.reason }} say."""

    outcome: Annotated[str, Field(max_length=16)] = Field(description="Succeeded, Failed or Cancelled.")
    reason: Annotated[str, Field(max_length=64)] = Field(
        description="The Succeeded condition's reason the stages ended with, e.g. StageFailed."
    )
    message: Message = Field(default="", description="The Succeeded condition's message they ended with.")
    start_time: datetime = Field(description="When the finally stages started (finallyDeadlineSeconds counts from it).")


class QueueStatus(ApiModel):
    """Where a queued job stands."""

    position: int | None = Field(default=None, ge=1, description="1 = next to start.")
    estimated_start_time: datetime | None = Field(default=None, description="From recent throughput.")


class ProcessingJobStatus(ApiModel):
    """Observed state; written only by the operator."""

    phase: Phase | None = Field(default=None, description="Display only, derived from conditions.")
    observed_generation: int | None = Field(default=None, description="The spec generation acted on.")
    conditions: list[Condition] = Field(default_factory=list, max_length=8, description="Succeeded, Suspended.")
    start_time: datetime | None = Field(default=None, description="When the job started (left the queue).")
    completion_time: datetime | None = Field(default=None, description="When the job ended.")
    duration: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="Run time from start to end, e.g. 1m23s (set when the job ends)."
    )
    duration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Run time in whole seconds, from startTime to completionTime once the job has ended; while it"
        " runs, to the last status update the operator made for another reason (not refreshed every second, so"
        " that time alone causes no writes; `kubectl pj list` shows the live value).",
    )
    current_stage: Annotated[str, Field(max_length=63)] | None = Field(default=None, description="Stage in progress.")
    progress: Annotated[str, Field(max_length=32)] | None = Field(
        default=None,
        description="Stages done or in progress of all, e.g. 2/3; with a fanned-out stage in progress also its "
        "items done of all, e.g. 2/3 57/200.",
    )
    attempts: int = Field(default=0, ge=0, description="Attempts made in all stages.")
    message: Message | None = Field(default=None, description="The Succeeded condition's message.")
    stages: list[StageStatus] = Field(
        default_factory=list,
        max_length=MAX_STAGES + MAX_FINALLY,
        description="Per-stage progress: spec.stages, then spec.finally.",
    )
    finally_: FinallyStatus | None = Field(
        default=None, alias="finally", description="How the stages ended, once spec.finally runs."
    )
    queue: QueueStatus | None = Field(default=None, description="Position while queued.")
    last_retry_request: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="The last procjob.dev/retry annotation value the operator acted on."
    )
    audit: AuditOutbox = Field(default_factory=AuditOutbox, description="The audit outbox.")
