"""Audit records: one per transition of a ProcessingJob, numbered per job without gaps.

The pure core appends an `AuditEntry` to `status.audit.pending` in the same status write that makes
the transition (an outbox in the status subresource). The relay inserts pending entries into
PostgreSQL, keyed by (job UID, seq) so that a repeated insert is absorbed, and then advances
`status.audit.flushedSeq` and trims the list. `AuditRecord` is the row: the entry plus the job's
identity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from procjob.models.transitions import Transition


class AuditEntry(BaseModel):
    """One transition, as kept in the status outbox until PostgreSQL has it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    seq: int = Field(ge=1, description="Per-job sequence number: 1, 2, 3... without gaps.")
    type: Transition = Field(
        description="What happened, e.g. JobStarted, AttemptStarted, AttemptFailed, RetryScheduled.",
    )
    reason: str = Field(default="", max_length=128, description="CamelCase reason of the transition.")
    message: str = Field(default="", max_length=1024, description="Human-readable detail.")
    stage: str | None = Field(default=None, max_length=63, description="Stage name, when it concerns one.")
    attempt: int | None = Field(default=None, ge=1, description="Attempt number within the stage.")
    pod_name: str | None = Field(default=None, alias="podName", max_length=253, description="Worker pod.")
    exit_code: int | None = Field(default=None, alias="exitCode", description="Container exit code.")
    time: datetime = Field(description="When the operator observed the transition (RFC 3339).")
    detail: dict[str, Any] = Field(
        default_factory=dict, description="Extra structured facts (retry decision, outputs...)."
    )


class AuditRecord(BaseModel):
    """An audit row in PostgreSQL: the entry plus the job it belongs to."""

    model_config = ConfigDict(frozen=True)

    job_uid: str
    namespace: str
    name: str
    entry: AuditEntry
