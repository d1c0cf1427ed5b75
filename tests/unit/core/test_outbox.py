"""The outbox decisions: trim what PostgreSQL confirmed; a trim-only write only for a finished job,
after a wait for company; a job in progress trims with its next write."""

from __future__ import annotations

from procjob.core.decision import Decision, FinalizerAction
from procjob.core.outbox import TRIM_DELAY, WritePlan, plan_write, trimmed
from procjob.models.audit import AuditEntry
from procjob.models.status import AuditOutbox, Condition, ConditionStatus, ProcessingJobStatus
from procjob.models.transitions import Transition
from tests.unit.core.builders import NOW


def entry(seq: int) -> AuditEntry:
    return AuditEntry(seq=seq, type=Transition.JOB_QUEUED, time=NOW)


def status(pending: list[int], flushed: int = 0, **fields: object) -> ProcessingJobStatus:
    audit = AuditOutbox(
        last_seq=max(pending, default=flushed), flushed_seq=flushed, pending=[entry(s) for s in pending]
    )
    return ProcessingJobStatus(audit=audit, **fields)


def test_trimming_drops_what_postgresql_confirmed() -> None:
    before = status([3, 4, 5], flushed=2)
    after = trimmed(before, 4)
    assert [e.seq for e in after.audit.pending] == [5]
    assert after.audit.flushed_seq == 4
    assert trimmed(before, 2) is before  # nothing new confirmed: the same object
    assert trimmed(before, 9).audit.flushed_seq == 5  # never past the last entry


def test_a_real_change_is_written_at_once() -> None:
    stored = status([1])
    new = stored.model_copy(update={"attempts": 1})
    assert plan_write(stored, Decision(status=new), now=0.0, due=None) == WritePlan(True)
    transitions = (entry(2),)
    assert plan_write(
        stored,
        Decision(status=stored.model_copy(update={"audit": trimmed(stored, 1).audit}), transitions=transitions),
        now=0.0,
        due=None,
    ) == WritePlan(True)


def test_nothing_changed_needs_no_write() -> None:
    stored = status([1])
    assert plan_write(stored, Decision(status=stored), now=0.0, due=5.0) == WritePlan(False)


def done(pending: list[int]) -> ProcessingJobStatus:
    """A finished job's status (its Succeeded condition True)."""
    ended = Condition(type="Succeeded", status=ConditionStatus.TRUE, reason="Succeeded", last_transition_time=NOW)
    return status(pending, conditions=[ended])


def test_a_trim_alone_of_a_job_in_progress_is_never_written_it_rides_the_next_write() -> None:
    stored = status([1, 2])
    trim_only = Decision(status=trimmed(stored, 2))
    assert plan_write(stored, trim_only, now=10.0, due=None) == WritePlan(False)
    assert plan_write(stored, trim_only, now=1e9, due=None) == WritePlan(False)
    moved = trimmed(stored, 2).model_copy(update={"attempts": 1})  # its next write carries the trim
    assert plan_write(stored, Decision(status=moved), now=11.0, due=None) == WritePlan(True)


def test_a_finished_jobs_trim_alone_waits_for_company_then_goes() -> None:
    stored = done([1, 2])
    trim_only = Decision(status=trimmed(stored, 2))
    plan = plan_write(stored, trim_only, now=10.0, due=None)
    assert plan == WritePlan(False, 10.0 + TRIM_DELAY)
    assert plan_write(stored, trim_only, now=11.0, due=plan.due) == WritePlan(False, plan.due)
    assert plan_write(stored, trim_only, now=12.5, due=plan.due) == WritePlan(True)


def test_a_job_about_to_go_needs_no_trim() -> None:
    stored = done([1, 2])
    leaving = Decision(status=trimmed(stored, 2), finalizer=FinalizerAction.REMOVE)
    assert plan_write(stored, leaving, now=0.0, due=None) == WritePlan(False)
