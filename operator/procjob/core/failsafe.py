"""The last line of defence: the status of a job the operator cannot process at all.

When reconciling one job raises again and again (a bug, or content no bound anticipated), that job
must not be retried in silence forever nor hold a queue slot: it ends Failed with reason
ReconcileError and the cause, the transition goes to the audit outbox like any other, and what
might be what cannot be serialised (stage outputs) is dropped from the status. Pure, like decide.
"""

from __future__ import annotations

from datetime import datetime

from procjob.core.conditions import SUCCEEDED, set_condition
from procjob.models.audit import AuditEntry
from procjob.models.job import ProcessingJob
from procjob.models.status import ConditionStatus, Phase, ProcessingJobStatus, Reason


def fail_unprocessable(job: ProcessingJob, cause: str, now: datetime, *, audit: bool) -> ProcessingJobStatus:
    status = job.status
    message = f"the operator cannot process this job: {cause}"[:1024]
    outbox = status.audit
    entry = AuditEntry(
        seq=outbox.last_seq + 1,
        type="JobFailed",
        reason=Reason.RECONCILE_ERROR.value,
        message=message,
        time=now,
    )
    outbox = outbox.model_copy(
        update={
            "last_seq": entry.seq,
            "pending": [*outbox.pending, entry] if audit else [],
            "flushed_seq": outbox.flushed_seq if audit else entry.seq,
        }
    )
    conditions = set_condition(
        status.conditions, SUCCEEDED, ConditionStatus.FALSE, Reason.RECONCILE_ERROR, message, now, job.meta.generation
    )
    return status.model_copy(
        update={
            "conditions": conditions,
            "phase": Phase.FAILED,
            "message": message,
            "completion_time": now,
            "current_stage": None,
            "queue": None,
            "stages": [s.model_copy(update={"outputs": None}) for s in status.stages],
            "audit": outbox,
        }
    )
