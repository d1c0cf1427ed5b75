"""Conditions are the API; phase is derived from them. Also the small time and naming helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from procjob.core.conditions import job_conditions, phase_of, set_condition
from procjob.core.naming import pod_name
from procjob.core.timefmt import earliest, human_duration, parse_time, utc
from procjob.models.status import (
    Attempt,
    AttemptState,
    Condition,
    ConditionStatus,
    Phase,
    ProcessingJobStatus,
    Reason,
    StageState,
    StageStatus,
)
from tests.unit.core.builders import NOW

LATER = NOW + timedelta(minutes=5)
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


def cond(type_: str, status: ConditionStatus, reason: str, message: str = "", generation: int = 1) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=NOW,
        observed_generation=generation,
    )


class TestSetCondition:
    def test_a_new_condition_starts_its_transition_now(self) -> None:
        (new,) = set_condition([], "Succeeded", UNKNOWN, "Running", "go", LATER, 1)
        assert new == Condition(
            type="Succeeded",
            status=UNKNOWN,
            reason="Running",
            message="go",
            last_transition_time=LATER,
            observed_generation=1,
        )

    def test_an_unchanged_condition_is_returned_as_it_was(self) -> None:
        old = [cond("Succeeded", UNKNOWN, "Running", "go")]
        assert set_condition(old, "Succeeded", UNKNOWN, "Running", "go", LATER, 1) == old

    def test_a_new_reason_with_the_same_status_keeps_the_transition_time(self) -> None:
        (new,) = set_condition([cond("Succeeded", UNKNOWN, "Running")], "Succeeded", UNKNOWN, "Queued", "", LATER, 1)
        assert (new.reason, new.last_transition_time) == ("Queued", NOW)

    def test_a_new_generation_updates_observed_generation_but_not_the_transition_time(self) -> None:
        (new,) = set_condition([cond("Succeeded", UNKNOWN, "Running")], "Succeeded", UNKNOWN, "Running", "", LATER, 2)
        assert (new.observed_generation, new.last_transition_time) == (2, NOW)

    def test_a_new_status_moves_the_transition_time(self) -> None:
        (new,) = set_condition([cond("Succeeded", UNKNOWN, "Running")], "Succeeded", TRUE, "Succeeded", "", LATER, 1)
        assert (new.status, new.last_transition_time) == (TRUE, LATER)

    def test_messages_are_cut_at_1024_characters_and_then_compare_equal(self) -> None:
        (new,) = set_condition([], "Succeeded", FALSE, "InvalidSpec", "x" * 5000, NOW, 1)
        assert len(new.message) == 1024
        assert set_condition([new], "Succeeded", FALSE, "InvalidSpec", "x" * 5000, LATER, 1) == [new]

    def test_succeeded_comes_first_and_other_types_are_kept(self) -> None:
        conditions = set_condition(
            [cond("Suspended", TRUE, "Suspended")], "Succeeded", UNKNOWN, "Suspended", "", NOW, 1
        )
        assert [c.type for c in conditions] == ["Succeeded", "Suspended"]
        conditions = set_condition(conditions, "Alpha", TRUE, "X", "", NOW, 1)
        assert [c.type for c in conditions] == ["Succeeded", "Alpha", "Suspended"]


def attempt(n: int, state: AttemptState, **fields: Any) -> Attempt:
    return Attempt(attempt=n, pod_name=f"p{n}", state=state, create_time=NOW, **fields)


FETCH_DONE = StageStatus(name="fetch", state=StageState.SUCCEEDED)


def stage(state: StageState, *attempts: Attempt, **fields: Any) -> StageStatus:
    return StageStatus(name="resize", state=state, attempts=list(attempts), **fields)


@pytest.mark.parametrize(
    ("current", "flags", "reason", "message"),
    [
        pytest.param(
            stage(StageState.RUNNING),
            {"queued": True, "suspended": True, "backlogged": True},
            Reason.SUSPENDED,
            "suspended (spec.suspend is true)",
            id="a suspended job says so before anything else, even while it has not started",
        ),
        pytest.param(
            stage(StageState.RUNNING),
            {"queued": True, "suspended": False, "backlogged": True},
            Reason.QUEUED,
            "waiting for a free slot",
            id="a queued job says so before a backlog",
        ),
        pytest.param(
            stage(StageState.RUNNING),
            {"suspended": True, "backlogged": True},
            Reason.SUSPENDED,
            "suspended (spec.suspend is true)",
            id="a suspended job says so before a full audit backlog",
        ),
        pytest.param(
            stage(StageState.PENDING),
            {"backlogged": True},
            Reason.AUDIT_BACKLOG,
            "audit backlog full: no new attempt until PostgreSQL catches up",
            id="a full audit backlog is the reason when nothing else holds the job",
        ),
        pytest.param(None, {}, Reason.RUNNING, "finishing", id="a job with no stage left is finishing"),
        pytest.param(
            stage(StageState.PENDING),
            {},
            Reason.RUNNING,
            "stage resize (2/2) starting",
            id="a stage without attempts is starting",
        ),
        pytest.param(
            stage(StageState.RUNNING, attempt(1, AttemptState.PENDING, message="ImagePullBackOff: back-off")),
            {},
            Reason.RUNNING,
            "stage resize (2/2) attempt 1 pending: ImagePullBackOff: back-off",
            id="a pending attempt shows why it waits",
        ),
        pytest.param(
            stage(StageState.RUNNING, attempt(1, AttemptState.PENDING)),
            {},
            Reason.RUNNING,
            "stage resize (2/2) attempt 1 pending",
            id="a pending attempt without a waiting reason is just pending",
        ),
        pytest.param(
            stage(StageState.RUNNING, attempt(2, AttemptState.RUNNING)),
            {},
            Reason.RUNNING,
            "stage resize (2/2) attempt 2 running",
            id="a running attempt is running",
        ),
        pytest.param(
            stage(
                StageState.BACKOFF_WAITING,
                attempt(1, AttemptState.FAILED, reason="Error", exit_code=1),
                next_attempt_time=LATER,
            ),
            {},
            Reason.BACKOFF_WAITING,
            f"stage resize (2/2) attempt 1 failed: Error (exit 1); attempt 2 at {LATER.isoformat()}",
            id="a stage waiting for a retry says what failed and when the next attempt starts",
        ),
        pytest.param(
            stage(StageState.BACKOFF_WAITING, attempt(3, AttemptState.FAILED, reason="PodDeleted")),
            {},
            Reason.BACKOFF_WAITING,
            "stage resize (2/2) attempt 3 failed: PodDeleted; attempt 4 at now",
            id="a waiting stage without an exit code or a due time still reads well",
        ),
        pytest.param(
            stage(StageState.BACKOFF_WAITING),
            {},
            Reason.RUNNING,
            "stage resize (2/2) starting",
            id="a waiting stage without attempts is starting",
        ),
    ],
)
def test_job_conditions_in_progress(
    current: StageStatus | None, flags: dict[str, bool], reason: Reason, message: str
) -> None:
    stages = [FETCH_DONE, current or FETCH_DONE.model_copy(update={"name": "resize"})]
    options = {"queued": False, "suspended": False, "backlogged": False} | flags
    (succeeded,) = job_conditions([], stages, current, NOW, 1, **options)
    assert (succeeded.type, succeeded.status, succeeded.reason, succeeded.message) == (
        "Succeeded",
        UNKNOWN,
        reason,
        message,
    )


@pytest.mark.parametrize("status", [TRUE, FALSE], ids=["a succeeded job keeps", "a failed job keeps"])
def test_job_conditions_keep_terminal_conditions(status: ConditionStatus) -> None:
    conditions = [cond("Succeeded", status, "Whatever"), cond("Suspended", FALSE, "Resumed")]
    assert job_conditions(conditions, [], None, LATER, 2, queued=True, suspended=True, backlogged=True) == conditions


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        pytest.param([], Phase.PENDING, id="no Succeeded condition yet is Pending"),
        pytest.param([cond("Suspended", TRUE, "Suspended")], Phase.PENDING, id="only other conditions is Pending"),
        pytest.param([cond("Succeeded", TRUE, "Succeeded")], Phase.SUCCEEDED, id="Succeeded True is Succeeded"),
        pytest.param([cond("Succeeded", FALSE, "StageFailed")], Phase.FAILED, id="Succeeded False is Failed"),
        pytest.param([cond("Succeeded", FALSE, "DeadlineExceeded")], Phase.FAILED, id="a deadline is Failed"),
        pytest.param([cond("Succeeded", FALSE, "Cancelled")], Phase.CANCELLED, id="reason Cancelled is Cancelled"),
        pytest.param([cond("Succeeded", UNKNOWN, "Queued")], Phase.QUEUED, id="reason Queued is Queued"),
        pytest.param([cond("Succeeded", UNKNOWN, "Suspended")], Phase.SUSPENDED, id="reason Suspended is Suspended"),
        pytest.param([cond("Succeeded", UNKNOWN, "BackoffWaiting")], Phase.RETRYING, id="BackoffWaiting is Retrying"),
        pytest.param([cond("Succeeded", UNKNOWN, "Running")], Phase.RUNNING, id="reason Running is Running"),
        pytest.param(
            [cond("Succeeded", UNKNOWN, "AuditBacklogFull")], Phase.RUNNING, id="an audit backlog shows as Running"
        ),
        pytest.param(
            [cond("Succeeded", UNKNOWN, "SomethingNew")], Phase.RUNNING, id="an unknown reason shows as Running"
        ),
    ],
)
def test_phase_of(conditions: list[Condition], phase: Phase) -> None:
    assert phase_of(ProcessingJobStatus(conditions=conditions)) == phase


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(-5, "0s", id="a negative duration shows as 0s"),
        pytest.param(0, "0s", id="zero is 0s"),
        pytest.param(59.9, "59s", id="under a minute shows whole seconds"),
        pytest.param(187, "3m07s", id="minutes show zero-padded seconds"),
        pytest.param(7500, "2h05m", id="hours show zero-padded minutes"),
        pytest.param(3 * 86400 + 4 * 3600 + 59, "3d04h", id="days show zero-padded hours"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2025-03-14T09:26:53Z", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC), id="Z means UTC"),
        pytest.param(
            "2025-03-14T09:26:53.5+00:00",
            datetime(2025, 3, 14, 9, 26, 53, 500000, tzinfo=UTC),
            id="fractions and offsets parse",
        ),
        pytest.param("", None, id="an empty string is no time"),
        pytest.param(None, None, id="None is no time"),
    ],
)
def test_parse_time(value: str | None, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_earliest_ignores_missing_times() -> None:
    assert earliest(None, LATER, NOW, None) == NOW
    assert earliest() is None
    assert earliest(None) is None


def test_utc_makes_naive_times_aware_and_keeps_aware_ones() -> None:
    assert utc(datetime(2025, 1, 1)) == datetime(2025, 1, 1, tzinfo=UTC)
    assert utc(NOW) is NOW


@pytest.mark.parametrize(
    ("args", "name"),
    [
        pytest.param(("thumbs", "0a1b2c3d-4e5f", "resize", 2), "thumbs-resize-a2-0a1b2c3d", id="uid prefix of 8"),
        pytest.param(("j", "ab-cd-ef-gh-ij", "s", 10), "j-s-a10-abcdefgh", id="dashes of the uid are dropped first"),
    ],
)
def test_pod_name(args: tuple[str, str, str, int], name: str) -> None:
    assert pod_name(*args) == name
