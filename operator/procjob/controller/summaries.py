"""A job's row in the audit's `jobs` table: its summary and a bounded, redacted spec snapshot.

Total: whatever a job holds, a summary comes out (degraded and marked if it must be), so one job's
content can never stop the relay that writes everyone's records.
"""

from __future__ import annotations

import logging
from typing import Any

from procjob.adapters.audit import DEGRADED_KEY, JobSummary
from procjob.core.redact import redact_spec
from procjob.core.sanitize import bounded_json
from procjob.models.audit import AuditEntry
from procjob.models.job import ProcessingJob
from procjob.models.lifecycle import finished, succeeded_condition
from procjob.models.spec import ProcessingJobSpec
from procjob.models.transitions import Transition

log = logging.getLogger("procjob.audit")

WITH_DEPTH = 24  # a stage's `with` in the spec snapshot; the stored spec is cut at 32 in all
WITH_CHARS = 65536

__all__ = ["spec_snapshot", "summary_of"]


def spec_snapshot(spec: ProcessingJobSpec | None) -> dict[str, Any]:
    """The spec as the audit keeps it: API form, each stage's `with` bounded in depth and size
    (procjob.core.sanitize), credentials redacted (procjob.core.redact).

    Never raises: `spec.to_api()` gives up on a `with` nested a few hundred levels deep, so
    `with` is dumped by the bounded walk; anything else that fails gives a marker document.
    """
    if spec is None:
        return {}
    try:
        document = spec.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"stages": {"__all__": {"with_"}}}
        )
        degraded: list[str] = []
        for index, (stage_doc, stage) in enumerate(zip(document["stages"], spec.stages, strict=True)):
            if stage.with_ is not None:
                stage_doc["with"], notes = bounded_json(stage.with_, max_depth=WITH_DEPTH, max_chars=WITH_CHARS)
                degraded += [f"stages[{index}].with: {note}" for note in notes]
        snapshot = redact_spec(document)
        return snapshot | {DEGRADED_KEY: degraded} if degraded else snapshot
    except Exception as exc:
        log.warning("audit: a spec could not be recorded (%s); storing a marker", type(exc).__name__)
        return {DEGRADED_KEY: [f"the spec could not be recorded ({type(exc).__name__})"]}


def summary_of(job: ProcessingJob, entries: list[AuditEntry]) -> JobSummary:
    """The job's row in `jobs`, as of the newest of `entries` (never empty).

    Total for any spec (see `spec_snapshot`); should the rest fail, a minimal summary keeps the job
    identifiable, its spec a marker that says why.
    """
    last_seq = max(e.seq for e in entries)
    try:
        status = job.status
        state, reason = succeeded_condition(status.conditions)
        return JobSummary(
            uid=job.meta.uid,
            namespace=job.meta.namespace,
            name=job.meta.name,
            spec=spec_snapshot(job.spec),
            state=status.phase.value if status.phase else "Pending",
            reason=reason or "",
            created_at=job.meta.creation_time,
            started_at=status.start_time,
            finished_at=status.completion_time if finished(state) else None,
            attempts=status.attempts,
            deleted_at=next((e.time for e in entries if e.type == Transition.JOB_DELETED), None),
            last_seq=last_seq,
        )
    except Exception as exc:
        log.exception("audit: the summary of %s could not be built; storing a minimal one", job.meta.key)
        return JobSummary(
            uid=job.meta.uid,
            namespace=job.meta.namespace,
            name=job.meta.name,
            spec={DEGRADED_KEY: [f"the summary could not be built ({type(exc).__name__})"]},
            state="Unknown",
            created_at=job.meta.creation_time,
            last_seq=last_seq,
        )
