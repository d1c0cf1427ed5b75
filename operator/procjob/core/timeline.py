"""The attempt timeline: one row per (stage, item, attempt), projected from a job's audit entries
(the item of a fanned-out stage is in each entry's detail).

Pure (no I/O): the audit store projects what it read from PostgreSQL with it, and anything holding
a job's entries can do the same. `AttemptRow` is the projection's value; `procjob history` and the
operator's history endpoint show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import computed_field

from procjob.models.audit import AuditEntry
from procjob.models.base import ApiModel
from procjob.models.transitions import Level, Transition

AttemptResult = Literal["Pending", "Running", "Succeeded", "Failed", "Interrupted"]


class AttemptRow(ApiModel):
    """One attempt of one stage (of one item of a fanned-out stage), derived from its events
    (AttemptStarted ... AttemptSucceeded/Failed).

    `Interrupted`: the job ended or was suspended while the attempt had no outcome recorded.
    """

    stage: str
    attempt: int
    item: int | None = None
    pod_name: str | None = None
    start_time: datetime | None = None
    running_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    result: AttemptResult = "Pending"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_seconds(self) -> float | None:
        return seconds_between(self.start_time, self.end_time)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """How long from `start` to `end`; None while either is unknown (a duration never guesses)."""
    return None if start is None or end is None else (end - start).total_seconds()


# What closes an attempt still open: the job's end, its suspension, its deletion.
_INTERRUPTING = frozenset(
    {Transition.JOB_SUSPENDED, Transition.JOB_SUCCEEDED, Transition.JOB_FAILED, Transition.JOB_CANCELLED}
    | {Transition.JOB_DELETED}
)


def attempt_timeline(events: Iterable[AuditEntry]) -> tuple[AttemptRow, ...]:
    """One row per (stage, item, attempt), in the order the attempts started.

    An attempt starts at AttemptStarted (the pod was created), runs from AttemptRunning and ends at
    AttemptSucceeded or AttemptFailed, which carry the exit code and reason. AttemptStopped (suspend,
    cancel, a deadline, another stage's failure) closes it as `Interrupted` with its reason, and so does
    a job-level end or suspension for attempts still open; an outcome recorded after that wins.
    """
    rows: dict[tuple[str, int | None, int], dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if event.type in _INTERRUPTING:
            for row in rows.values():
                if row["result"] in ("Pending", "Running"):
                    row.update(end_time=event.time, reason=event.reason or event.type, result="Interrupted")
            continue
        if event.type.meaning.level is not Level.ATTEMPT or event.stage is None or event.attempt is None:
            continue
        item = event.detail.get("item")
        item = item if isinstance(item, int) and not isinstance(item, bool) and item >= 0 else None
        row = rows.setdefault(
            (event.stage, item, event.attempt),
            {"stage": event.stage, "item": item, "attempt": event.attempt, "result": "Pending"},
        )
        if event.pod_name and not row.get("pod_name"):
            row["pod_name"] = event.pod_name
        if event.type == Transition.ATTEMPT_STARTED:
            row.setdefault("start_time", event.time)
        elif event.type == Transition.ATTEMPT_RUNNING:
            row.setdefault("running_time", event.time)
            if row["result"] == "Pending":
                row["result"] = "Running"
        elif event.type == Transition.ATTEMPT_STOPPED and row["result"] in ("Pending", "Running"):
            row.update(end_time=event.time, reason=event.reason or event.type, result="Interrupted")
        elif event.type in (Transition.ATTEMPT_SUCCEEDED, Transition.ATTEMPT_FAILED):
            succeeded = event.type == Transition.ATTEMPT_SUCCEEDED
            row.update(
                end_time=event.time,
                exit_code=event.exit_code,
                reason=event.reason or ("Completed" if succeeded else "Failed"),
                result="Succeeded" if succeeded else "Failed",
            )
    return tuple(AttemptRow.model_validate(row) for row in rows.values())
