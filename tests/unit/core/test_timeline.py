"""Attempt rows derived from audit events: one row per (stage, attempt), table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from procjob.core.timeline import AttemptRow, attempt_timeline
from procjob.models.audit import AuditEntry

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)


def events(*specs: tuple[Any, ...]) -> list[AuditEntry]:
    """(second, type, stage, attempt, extra) tuples -> entries numbered from 1."""
    out = []
    for seq, (second, kind, stage, attempt, extra) in enumerate(specs, start=1):
        out.append(
            AuditEntry.model_validate(
                {
                    "seq": seq,
                    "type": kind,
                    "stage": stage,
                    "attempt": attempt,
                    "time": T0 + timedelta(seconds=second),
                    **extra,
                }
            )
        )
    return out


def summary(rows: tuple[AttemptRow, ...]) -> list[tuple[Any, ...]]:
    return [(r.stage, r.attempt, r.pod_name, r.duration_seconds, r.exit_code, r.reason, r.result) for r in rows]


CASES = [
    pytest.param(
        events(
            (0, "JobCreated", None, None, {}),
            (1, "AttemptStarted", "fetch", 1, {"podName": "p-fetch-1"}),
            (2, "AttemptRunning", "fetch", 1, {}),
            (5, "AttemptSucceeded", "fetch", 1, {"exitCode": 0, "reason": "Completed"}),
            (5, "StageSucceeded", "fetch", None, {}),
        ),
        [("fetch", 1, "p-fetch-1", 4.0, 0, "Completed", "Succeeded")],
        id="a successful attempt lasts from pod creation to its outcome",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "resize", 1, {"podName": "p1"}),
            (2, "AttemptRunning", "resize", 1, {}),
            (9, "AttemptFailed", "resize", 1, {"exitCode": 137, "reason": "OOMKilled"}),
            (9, "RetryScheduled", "resize", 1, {"detail": {"rule": "default", "delaySeconds": 2}}),
            (11, "AttemptStarted", "resize", 2, {"podName": "p2"}),
            (71, "AttemptFailed", "resize", 2, {"reason": "StartupTimeout"}),
            (75, "AttemptStarted", "resize", 3, {"podName": "p3"}),
            (76, "AttemptRunning", "resize", 3, {}),
            (80, "AttemptSucceeded", "resize", 3, {"exitCode": 0}),
        ),
        [
            ("resize", 1, "p1", 8.0, 137, "OOMKilled", "Failed"),
            ("resize", 2, "p2", 60.0, None, "StartupTimeout", "Failed"),
            ("resize", 3, "p3", 5.0, 0, "Completed", "Succeeded"),
        ],
        id="each retry is its own row with its exit code and reason",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "a", 1, {"podName": "p1"}),
            (2, "AttemptStarted", "a", 2, {"podName": "p2"}),
            (3, "AttemptRunning", "a", 2, {}),
        ),
        [("a", 1, "p1", None, None, "", "Pending"), ("a", 2, "p2", None, None, "", "Running")],
        id="open attempts are pending until running and have no duration",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "a", 1, {"podName": "p1"}),
            (2, "AttemptRunning", "a", 1, {}),
            (6, "JobCancelled", None, None, {"reason": "Cancelled"}),
        ),
        [("a", 1, "p1", 5.0, None, "Cancelled", "Interrupted")],
        id="a cancelled job interrupts its running attempt",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "a", 1, {"podName": "p1"}),
            (3, "JobSuspended", None, None, {}),
            (4, "AttemptFailed", "a", 1, {"reason": "PodDeleted", "exitCode": 143}),
        ),
        [("a", 1, "p1", 3.0, 143, "PodDeleted", "Failed")],
        id="an outcome recorded after a suspension wins over the interruption",
    ),
    pytest.param(
        events(
            (1, "AttemptFailed", "a", 1, {"reason": "Evicted", "podName": "p1"}),
            (2, "StageFailed", "a", None, {}),
            (2, "JobFailed", None, None, {}),
        ),
        [("a", 1, "p1", None, None, "Evicted", "Failed")],
        id="an outcome without a start has no duration",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "a", 1, {"podName": "p1"}),
            (2, "AttemptRunning", "a", 1, {}),
            (3, "AttemptStopped", "a", 1, {"reason": "Suspended"}),
            (4, "JobSuspended", None, None, {"reason": "Suspended"}),
        ),
        [("a", 1, "p1", 2.0, None, "Suspended", "Interrupted")],
        id="a stopped attempt ends when it is stopped",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "a", 1, {"podName": "p1"}),
            (3, "JobSuspended", None, None, {"reason": "JobSuspended"}),
            (3, "AttemptStopped", "a", 1, {"reason": "Suspended"}),
        ),
        [("a", 1, "p1", 2.0, None, "JobSuspended", "Interrupted")],
        id="a stop after the job's suspension (the order a pass records them in) changes nothing",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "b", 1, {"podName": "pb"}),
            (1, "AttemptStarted", "c", 1, {"podName": "pc"}),
            (4, "AttemptFailed", "b", 1, {"exitCode": 1, "reason": "Error"}),
            (4, "AttemptStopped", "c", 1, {"reason": "StageFailed"}),
            (4, "FinallyStarted", None, None, {"reason": "StageFailed"}),
            (5, "AttemptStarted", "cleanup", 1, {"podName": "pf"}),
            (30, "AttemptSucceeded", "cleanup", 1, {"exitCode": 0}),
            (30, "JobFailed", None, None, {"reason": "StageFailed"}),
        ),
        [
            ("b", 1, "pb", 3.0, 1, "Error", "Failed"),
            ("c", 1, "pc", 3.0, None, "StageFailed", "Interrupted"),
            ("cleanup", 1, "pf", 25.0, 0, "Completed", "Succeeded"),
        ],
        id="a sibling stopped by a failed stage ends then, not when the finally stages end",
    ),
    pytest.param(
        events(
            (1, "AttemptStarted", "a", 1, {"podName": "p1"}),
            (2, "AttemptFailed", "a", 1, {"exitCode": 1, "reason": "Error"}),
            (3, "AttemptRunning", "a", 1, {}),
        ),
        [("a", 1, "p1", 1.0, 1, "Error", "Failed")],
        id="a running report after the outcome does not reopen the attempt",
    ),
    pytest.param(
        events((0, "JobCreated", None, None, {}), (1, "InvalidSpec", None, None, {})),
        [],
        id="a job without attempts has no rows",
    ),
]


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_attempt_rows(given: list[AuditEntry], expected: list[tuple[Any, ...]]) -> None:
    assert summary(attempt_timeline(given)) == expected


def test_events_are_taken_in_seq_order_whatever_order_they_arrive_in() -> None:
    given = events(
        (1, "AttemptStarted", "a", 1, {"podName": "p1"}),
        (4, "AttemptFailed", "a", 1, {"exitCode": 1, "reason": "Error"}),
        (5, "AttemptStarted", "a", 2, {"podName": "p2"}),
    )
    assert attempt_timeline(reversed(given)) == attempt_timeline(given)
    assert [r.attempt for r in attempt_timeline(reversed(given))] == [1, 2]


def test_rows_keep_the_times_of_start_running_and_end() -> None:
    (row,) = attempt_timeline(
        events(
            (1, "AttemptStarted", "a", 1, {}),
            (3, "AttemptRunning", "a", 1, {}),
            (7, "AttemptSucceeded", "a", 1, {}),
        )
    )
    assert (row.start_time, row.running_time, row.end_time) == (
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=3),
        T0 + timedelta(seconds=7),
    )


def test_the_items_of_a_fanned_out_stage_are_rows_of_their_own() -> None:
    given = events(
        (1, "AttemptStarted", "fan", 1, {"podName": "p0", "detail": {"item": 0}}),
        (1, "AttemptStarted", "fan", 1, {"podName": "p1", "detail": {"item": 1}}),
        (3, "AttemptFailed", "fan", 1, {"exitCode": 1, "reason": "Error", "detail": {"item": 1}}),
        (4, "AttemptSucceeded", "fan", 1, {"exitCode": 0, "detail": {"item": 0}}),
        (5, "AttemptStarted", "fan", 2, {"podName": "p1b", "detail": {"item": 1}}),
        (6, "AttemptStarted", "odd", 1, {"podName": "x", "detail": {"item": True}}),
    )
    rows = attempt_timeline(given)
    assert [(r.stage, r.item, r.attempt, r.pod_name, r.result) for r in rows] == [
        ("fan", 0, 1, "p0", "Succeeded"),
        ("fan", 1, 1, "p1", "Failed"),
        ("fan", 1, 2, "p1b", "Pending"),
        ("odd", None, 1, "x", "Pending"),
    ]
