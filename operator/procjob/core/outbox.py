"""The audit outbox's two decisions that used to hide in the reconciler: trimming what PostgreSQL
has confirmed, and whether a status write that would only trim is made at all (a finished job's,
after a wait for company) or rides on the job's next write (a job in progress).

Pure: the caller passes what the relay confirmed and the loop's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from procjob.core.decision import Decision, FinalizerAction
from procjob.models.lifecycle import finished, succeeded_condition
from procjob.models.status import ProcessingJobStatus

TRIM_DELAY = 2.0  # seconds a finished job's status write that only trims the audit outbox waits for company


def trimmed(status: ProcessingJobStatus, confirmed: int) -> ProcessingJobStatus:
    """The status without the outbox entries up to `confirmed` (the highest seq PostgreSQL has)."""
    outbox = status.audit
    if confirmed <= outbox.flushed_seq:
        return status
    pending = [e for e in outbox.pending if e.seq > confirmed]
    audit = outbox.model_copy(update={"flushed_seq": min(confirmed, outbox.last_seq), "pending": pending})
    return status.model_copy(update={"audit": audit})


@dataclass(frozen=True, slots=True)
class WritePlan:
    """Write the status now, or not; a trim-only write not yet due says when it is (`due`)."""

    write: bool
    due: float | None = None


def _without_audit(status: ProcessingJobStatus) -> ProcessingJobStatus:
    return status.model_copy(update={"audit": None})


def plan_write(stored: ProcessingJobStatus, decision: Decision, *, now: float, due: float | None) -> WritePlan:
    """Write when anything but the outbox trim changed. A trim alone is never written for a job in
    progress: it rides on the job's next write, which comes (its attempt ends, it is resumed, it is
    deleted); every write trims what PostgreSQL has confirmed, so the outbox keeps its bound, and an
    entry relayed but not yet trimmed is only inserted again, which the relay's key absorbs. A
    finished job has no next write: its trim waits until `due` (first set to now + TRIM_DELAY), so
    that its outbox drains. A job about to go (finalizer removed) needs no trim at all."""
    new = decision.status
    if new == stored:
        return WritePlan(False)
    if decision.transitions or _without_audit(new) != _without_audit(stored):
        return WritePlan(True)
    if decision.finalizer == FinalizerAction.REMOVE or not finished(succeeded_condition(new.conditions)[0]):
        return WritePlan(False)
    due = now + TRIM_DELAY if due is None else due
    return WritePlan(True) if now >= due else WritePlan(False, due)
