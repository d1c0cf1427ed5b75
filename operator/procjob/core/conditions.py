"""Conditions are the API; `phase` is derived from them for display and never read back.

SUCCEEDED and SUSPENDED (the condition types) are spelled in models.lifecycle and re-exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from procjob.models.lifecycle import SUCCEEDED, SUSPENDED
from procjob.models.status import (
    AttemptState,
    Condition,
    ConditionStatus,
    FinallyStatus,
    Phase,
    ProcessingJobStatus,
    Reason,
    StageState,
    StageStatus,
)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """Replace the condition of `type_`; lastTransitionTime moves only when `status` changes."""
    old = next((c for c in conditions if c.type == type_), None)
    if old is not None and (old.status, old.reason, old.message, old.observed_generation) == (
        status,
        reason,
        message[:1024],
        generation,
    ):
        return list(conditions)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:1024],
        last_transition_time=since,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, new], key=lambda c: (c.type != SUCCEEDED, c.type))


_ACTIVE = frozenset({StageState.RUNNING, StageState.BACKOFF_WAITING, StageState.SUSPENDED})


def _progress_message(stages: Sequence[StageStatus], current: StageStatus) -> tuple[Reason, str]:
    """What the current stage does; `(+N more stages in progress)` when others run beside it."""
    reason, message = _stage_message(stages, current)
    others = sum(1 for s in stages if s.state in _ACTIVE and s.name != current.name)
    if others:
        message += f" (+{others} more {'stage' if others == 1 else 'stages'} in progress)"
    return reason, message


def _stage_message(stages: Sequence[StageStatus], current: StageStatus) -> tuple[Reason, str]:
    position = f"{[s.name for s in stages].index(current.name) + 1}/{len(stages)}"
    fan = current.items
    if fan is not None and current.state == StageState.RUNNING:
        waiting = sum(1 for i in fan.in_flight if i.state == StageState.BACKOFF_WAITING)
        failed = f", {fan.failed} failed" if fan.failed else ""
        return Reason.RUNNING, (
            f"stage {current.name} ({position}) items {fan.succeeded + fan.failed}/{fan.total} done: "
            f"{len(fan.in_flight) - waiting} running, {waiting} waiting to retry{failed}"
        )
    last = current.attempts[-1] if current.attempts else None
    if current.state == StageState.BACKOFF_WAITING and last is not None:
        code = f" (exit {last.exit_code})" if last.exit_code is not None else ""
        when = current.next_attempt_time.isoformat() if current.next_attempt_time else "now"
        return Reason.BACKOFF_WAITING, (
            f"stage {current.name} ({position}) attempt {last.attempt} failed: {last.reason}{code}; "
            f"attempt {last.attempt + 1} at {when}"
        )
    if last is None:
        return Reason.RUNNING, f"stage {current.name} ({position}) starting"
    if last.state == AttemptState.PENDING:
        detail = f": {last.message}" if last.message else ""
        return Reason.RUNNING, f"stage {current.name} ({position}) attempt {last.attempt} pending{detail}"
    return Reason.RUNNING, f"stage {current.name} ({position}) attempt {last.attempt} running"


def job_conditions(
    conditions: Sequence[Condition],
    stages: Sequence[StageStatus],
    current: StageStatus | None,
    now: datetime,
    generation: int,
    *,
    queued: bool,
    suspended: bool,
    backlogged: bool,
    ended: FinallyStatus | None = None,
) -> list[Condition]:
    """The Succeeded condition of a job in progress (terminal ones are kept as they are); `ended`:
    the stages have ended that way and spec.finally runs (reason Finalizing)."""
    existing = next((c for c in conditions if c.type == SUCCEEDED), None)
    if existing is not None and existing.status != ConditionStatus.UNKNOWN:
        return list(conditions)
    if suspended:
        reason, message = Reason.SUSPENDED, "suspended (spec.suspend is true)"
    elif queued:
        reason, message = Reason.QUEUED, "waiting for a free slot"
    elif backlogged:
        reason, message = (
            Reason.AUDIT_BACKLOG,
            "audit backlog full: no new attempt until PostgreSQL catches up",
        )
    elif current is None:
        reason, message = Reason.RUNNING, "finishing"
    else:
        reason, message = _progress_message(stages, current)
    if ended is not None and not suspended and not queued and not backlogged:
        reason, message = Reason.FINALIZING, f"stages ended {ended.outcome} ({ended.reason}); finally: {message}"
    return set_condition(conditions, SUCCEEDED, ConditionStatus.UNKNOWN, reason, message, now, generation)


def phase_of(status: ProcessingJobStatus) -> Phase:
    succeeded = next((c for c in status.conditions if c.type == SUCCEEDED), None)
    if succeeded is None:
        return Phase.PENDING
    if succeeded.status == ConditionStatus.TRUE:
        return Phase.SUCCEEDED
    if succeeded.status == ConditionStatus.FALSE:
        return Phase.CANCELLED if succeeded.reason == Reason.CANCELLED else Phase.FAILED
    return {
        Reason.QUEUED: Phase.QUEUED,
        Reason.SUSPENDED: Phase.SUSPENDED,
        Reason.BACKOFF_WAITING: Phase.RETRYING,
    }.get(
        Reason(succeeded.reason) if succeeded.reason in Reason._value2member_map_ else Reason.RUNNING,
        Phase.RUNNING,
    )


__all__ = ["SUCCEEDED", "SUSPENDED", "job_conditions", "phase_of", "set_condition"]
