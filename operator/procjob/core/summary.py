"""What a pass shows: conditions, phase and the printer-column fields, all derived from the stage
statuses the pass leaves (see `core.passstate`). Nothing here is read back by the operator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procjob.core.conditions import SUCCEEDED, job_conditions, phase_of
from procjob.core.timefmt import human_duration
from procjob.models.status import ProcessingJobStatus, StageState, StageStatus

if TYPE_CHECKING:
    from procjob.core.passstate import PassState


def current_stage(ordered: list[StageStatus]) -> StageStatus | None:
    """The stage to show as in progress, in the order a pass looks at stages: one whose attempt runs,
    else one waiting for its next attempt (or suspended), else the first that has not succeeded. In a
    chain that is the first stage that has not succeeded."""
    for wanted in ({StageState.RUNNING}, {StageState.BACKOFF_WAITING, StageState.SUSPENDED}):
        found = next((s for s in ordered if s.state in wanted), None)
        if found is not None:
            return found
    return next((s for s in ordered if s.state != StageState.SUCCEEDED), None)


def items_progress(stages: list[StageStatus]) -> str:
    """` 57/200`: items done of all, over the fanned-out stages that have started (none: empty)."""
    fans = [s.items for s in stages if s.items is not None and s.state != StageState.PENDING]
    if not fans:
        return ""
    return f" {sum(f.succeeded + f.failed for f in fans)}/{sum(f.total for f in fans)}"


def summarize(state: PassState, status: ProcessingJobStatus) -> ProcessingJobStatus:
    """Conditions, phase, printer-column fields, all derived from the stage statuses."""
    stages = [v.status for v in state.stages]
    ordered = [v.status for v in (*state.main, *state.finale)]
    current = current_stage(ordered)
    reached = sum(1 for s in stages if s.state != StageState.PENDING)
    conditions = job_conditions(
        status.conditions,
        stages,
        current,
        state.now,
        state.job.meta.generation,
        queued=status.start_time is None,
        suspended=state.suspend_wanted(),
        backlogged=state.backlogged,
        ended=status.finally_,
    )
    status = status.model_copy(
        update={
            "stages": stages,
            "conditions": conditions,
            "observed_generation": state.job.meta.generation,
            "current_stage": current.name if current and not state.terminal else None,
            "progress": f"{max(reached, 1 if status.start_time else 0)}/{len(stages)}" + items_progress(stages),
            "attempts": sum(s.attempt_count for s in stages),
        }
    )
    cond = next(c for c in conditions if c.type == SUCCEEDED)
    duration = None
    if status.start_time and status.completion_time:
        duration = human_duration(status.completion_time - status.start_time)
    status = status.model_copy(update={"phase": phase_of(status), "message": cond.message, "duration": duration})
    return with_duration_seconds(state, status)


def with_duration_seconds(state: PassState, status: ProcessingJobStatus) -> ProcessingJobStatus:
    """`durationSeconds`: startTime to completionTime, or to now while the job runs — but only
    when this pass writes the status anyway (a transition, any other field changed). Time alone
    never makes a pass write, so a quiet pass keeps the stored value (decide stays idempotent
    and the controller's write-only-on-change holds); once the job ends the value is exact."""
    stored = state.job.status.duration_seconds
    if status.start_time is None:
        seconds = None
    elif not state.transitions and status.model_copy(update={"duration_seconds": stored}) == state.job.status:
        return status.model_copy(update={"duration_seconds": stored})
    else:
        end = status.completion_time or state.now
        seconds = max(0, int((end - status.start_time).total_seconds()))
    return status.model_copy(update={"duration_seconds": seconds})
