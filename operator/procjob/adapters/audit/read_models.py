"""What the audit database gives back: a job's summary, its history, and gaps in its sequence.

These are read models (what `history()` and `gaps()` return, and what the relay upserts as the
`jobs` row), not the audit records themselves (`procjob.models.audit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import AwareDatetime, Field, computed_field

from procjob.adapters.audit.logs import ArchivedLog
from procjob.core.timeline import AttemptRow, seconds_between
from procjob.models.audit import AuditEntry
from procjob.models.base import ApiModel


class JobSummary(ApiModel):
    """One job as `jobs` keeps it: the latest snapshot the controller upserted.

    `last_seq` is the audit seq the snapshot reflects: an upsert with a lower one is ignored, so a
    replayed (older) snapshot never moves a job backwards.
    """

    uid: str = Field(min_length=1)
    namespace: str
    name: str
    spec: dict[str, Any] = Field(default_factory=dict)
    state: str
    reason: str = ""
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    attempts: int = Field(default=0, ge=0)
    deleted_at: AwareDatetime | None = None
    last_seq: int = Field(default=0, ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_seconds(self) -> float | None:
        """Run time from start to finish (the same value as the `jobs.duration_seconds` column)."""
        return seconds_between(self.started_at, self.finished_at)


class JobHistory(ApiModel):
    """What `procjob history` and the operator's history endpoint show for one job UID."""

    uid: str
    namespace: str
    name: str
    job: JobSummary | None = Field(default=None, description="None until the first upsert_job().")
    attempts: tuple[AttemptRow, ...] = ()
    events: tuple[AuditEntry, ...] = ()
    logs: tuple[ArchivedLog, ...] = Field(default=(), description="Archived container logs (no content).")

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON document (camelCase keys, RFC 3339 times, nulls kept so every key is present)."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class SeqGap:
    """Sequence numbers missing for a job: first..last inclusive."""

    job_uid: str
    first_missing: int
    last_missing: int
