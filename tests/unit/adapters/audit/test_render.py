"""`procjob history` output: the aligned table and the JSON document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from procjob.adapters.audit import AttemptRow, JobHistory, JobSummary
from procjob.cli.audit import HEADERS, render_history, render_table
from procjob.models.audit import AuditEntry

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)

ROWS = (
    AttemptRow(
        stage="fetch",
        attempt=1,
        pod_name="thumbs-0a1b-fetch-1",
        start_time=T0,
        end_time=T0 + timedelta(seconds=4),
        exit_code=0,
        reason="Completed",
        result="Succeeded",
    ),
    AttemptRow(
        stage="resize",
        attempt=12,
        pod_name="thumbs-0a1b-resize-12",
        start_time=T0 + timedelta(seconds=5),
        end_time=T0 + timedelta(minutes=3, seconds=12),
        exit_code=137,
        reason="OOMKilled",
        result="Failed",
    ),
    AttemptRow(stage="resize", attempt=13, start_time=T0 + timedelta(minutes=4), result="Running"),
)


def test_the_table_has_the_documented_columns_aligned() -> None:
    lines = render_table(ROWS).splitlines()
    assert lines[0].split() == list(HEADERS)
    starts = [lines[0].index(h) for h in HEADERS]
    for line in lines[1:]:
        for start in starts[1:]:
            assert line[start - 1] == " ", "each column starts where its header starts"
    assert lines[1].split() == [
        "fetch",
        "1",
        "thumbs-0a1b-fetch-1",
        "2026-05-01T10:00:00Z",
        "2026-05-01T10:00:04Z",
        "4s",
        "0",
        "Completed",
    ]
    assert lines[2].split()[5:] == ["3m07s", "137", "OOMKilled"]
    assert lines[3].split() == ["resize", "13", "-", "2026-05-01T10:04:00Z", "-", "-", "-", "Running"]


def test_the_summary_line_says_when_the_resource_was_deleted() -> None:
    history = JobHistory(
        uid="0a1b",
        namespace="media",
        name="thumbs",
        job=JobSummary(
            uid="0a1b",
            namespace="media",
            name="thumbs",
            state="Failed",
            reason="RetriesExhausted",
            created_at=T0,
            deleted_at=T0 + timedelta(hours=1),
        ),
        attempts=ROWS,
    )
    first = render_history(history).splitlines()[0]
    assert first == ("processingjob media/thumbs uid 0a1b: Failed (RetriesExhausted), deleted 2026-05-01T11:00:00Z")


def test_a_job_known_only_from_events_still_renders() -> None:
    out = render_history(JobHistory(uid="u", namespace="ns", name="n"))
    assert out == "processingjob ns/n uid u: no summary recorded yet\n\nno attempts recorded\n"


def test_the_json_document_uses_camel_case_and_keeps_every_key() -> None:
    entry = AuditEntry(seq=1, type="AttemptStarted", stage="fetch", attempt=1, pod_name="p", time=T0)
    doc = JobHistory(uid="u", namespace="ns", name="n", attempts=ROWS[:1], events=(entry,)).to_json_dict()
    assert doc["job"] is None
    assert doc["attempts"][0] == {
        "stage": "fetch",
        "attempt": 1,
        "item": None,  # the item of a fanned-out stage's attempt
        "podName": "thumbs-0a1b-fetch-1",
        "startTime": "2026-05-01T10:00:00Z",
        "runningTime": None,
        "endTime": "2026-05-01T10:00:04Z",
        "exitCode": 0,
        "reason": "Completed",
        "result": "Succeeded",
        "durationSeconds": 4.0,
    }
    assert doc["events"][0]["podName"] == "p"
    assert doc["events"][0]["time"] == "2026-05-01T10:00:00Z"


def test_the_attempts_of_a_fanned_out_stage_are_grouped_by_stage_and_item() -> None:
    rows = (
        AttemptRow(stage="list", attempt=1, result="Succeeded"),
        AttemptRow(stage="fan", item=1, attempt=1, result="Failed", reason="Error"),
        AttemptRow(stage="fan", item=0, attempt=1, result="Succeeded"),
        AttemptRow(stage="join", attempt=1, result="Running"),
        AttemptRow(stage="fan", item=1, attempt=2, result="Succeeded"),
    )
    lines = render_table(rows).splitlines()
    assert lines[0].split() == ["STAGE", "ITEM", *HEADERS[1:]]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["list", "-", "1"],
        ["fan", "0", "1"],
        ["fan", "1", "1"],
        ["fan", "1", "2"],
        ["join", "-", "1"],
    ]
    assert "ITEM" not in render_table(ROWS)
