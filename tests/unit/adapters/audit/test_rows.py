"""Row building for PostgreSQL never raises and stays bounded, whatever a job put in its records.

Properties over hostile values (random unicode with lone surrogates and NUL, NaN and Infinity, huge
integers, bytes, deep nesting, huge strings): `event_row` and `job_row` return one JSON object
that strict UTF-8 and a strict JSON parser accept (what PostgreSQL requires of text and jsonb),
with no NUL, within the byte bound, nested no deeper than the bound, readable back through the
models (history), and marked when anything was degraded.
(`procjob.core.sanitize` by example: tests/unit/core/test_sanitize.py.)
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procjob.adapters.audit.read_models import JobSummary
from procjob.adapters.audit.rows import DEGRADED_KEY, DETAIL_CHARS, JSON_DEPTH, SPEC_CHARS, event_row, job_row
from procjob.core.redact import REDACTED
from procjob.core.sanitize import cut_text
from procjob.models.audit import AuditEntry, AuditRecord
from tests.unit.adapters.audit.hostile import hostile, hostile_text, strict_json

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
UID = "5f0c1a2e-7d1b-4c1e-9a57-0c8f3b2d9e10"


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    detail=hostile,
    message=hostile_text,
    stage=st.one_of(st.none(), hostile_text),
    attempt=st.one_of(st.none(), st.integers()),
    exit_code=st.one_of(st.none(), st.integers()),
    name=hostile_text,
)
def test_an_event_row_is_always_valid_bounded_and_readable_back(
    detail: Any, message: str, stage: str | None, attempt: int | None, exit_code: int | None, name: str
) -> None:
    entry = AuditEntry.model_construct(  # unvalidated: even what the model would refuse
        seq=7,
        type="AttemptFailed",
        reason="Error",
        message=message,
        stage=stage,
        attempt=attempt,
        pod_name=None,
        exit_code=exit_code,
        time=T0,
        detail={"outputs": detail},
    )
    data = event_row(AuditRecord.model_construct(job_uid=UID, namespace="media", name=name, entry=entry))
    assert len(data) <= 2 * DETAIL_CHARS + 16384
    row = strict_json(data)
    assert row["seq"] == 7
    assert row["job_uid"] == UID
    assert depth_of(row["detail"]) <= JSON_DEPTH + 1
    assert row["attempt"] is None or 1 <= row["attempt"] < 2**31
    assert row["exit_code"] is None or -(2**31) <= row["exit_code"] < 2**31
    read_back = {k: v for k, v in row.items() if k not in ("job_uid", "namespace", "name")}
    read_back |= {"type": read_back.pop("event_type"), "time": read_back.pop("occurred_at")}
    AuditEntry.model_validate(read_back)  # what history() does with the row


@PROPERTY
@given(with_=hostile, state=hostile_text, attempts=st.integers(0, 2**70))
def test_a_job_row_is_always_valid_bounded_redacted_and_readable_back(with_: Any, state: str, attempts: int) -> None:
    spec = {"stages": [{"name": "fetch", "uses": "fetch", "with": {"headers": {"A": "secret"}, "p": with_}}]}
    summary = JobSummary.model_construct(
        uid=UID,
        namespace="media",
        name="thumbs",
        spec=spec,
        state=state,
        reason="",
        created_at=T0,
        started_at=None,
        finished_at=None,
        attempts=attempts,
        deleted_at=None,
        last_seq=3,
    )
    data = job_row(summary)
    assert len(data) <= 2 * SPEC_CHARS + 16384
    row = strict_json(data)
    assert depth_of(row["spec"]) <= JSON_DEPTH + 1
    assert row["attempts"] < 2**31
    assert row["last_seq"] == 3
    assert row["spec"]["stages"][0]["with"]["headers"] == {"A": REDACTED}
    JobSummary.model_validate(row)


def test_a_row_that_needed_nothing_is_not_marked() -> None:
    entry = AuditEntry(seq=1, type="RetryScheduled", time=T0, detail={"delaySeconds": 4, "nextAttemptTime": T0})
    row = json.loads(event_row(AuditRecord(job_uid=UID, namespace="media", name="thumbs", entry=entry)))
    assert row["detail"] == {"delaySeconds": 4, "nextAttemptTime": "2026-05-01T10:00:00Z"}


def test_a_degraded_row_says_what_was_degraded_per_column() -> None:
    entry = AuditEntry.model_construct(
        seq=1,
        type="AttemptFailed",
        reason="",
        message="m" * 2000,
        stage="s\ud800",
        attempt=2**40,
        pod_name=None,
        exit_code=None,
        time=T0,
        detail={"outputs": {"k": "\ud800", "n": math.inf}},
    )
    row = json.loads(event_row(AuditRecord(job_uid=UID, namespace="media", name="thumbs", entry=entry)))
    assert row["stage"] == "s\ufffd"
    assert row["message"] == cut_text("m" * 2000, 1024)
    assert len(row["message"]) == 1024
    assert row["attempt"] is None
    assert row["detail"]["outputs"] == {"k": "\ufffd", "n": "Infinity"}
    assert row["detail"][DEGRADED_KEY] == [
        "stage: NUL or invalid UTF-16 replaced by U+FFFD",
        f"attempt: {2**40} is out of range",
        "message: cut to 1024 characters",
        "detail: NUL or invalid UTF-16 replaced by U+FFFD",
        "detail: NaN and Infinity became strings",
    ]


def test_a_row_whose_building_fails_keeps_the_record_identity_and_says_why() -> None:
    entry = AuditEntry.model_construct(
        seq=5,
        type="JobStarted",
        reason=12345,  # not text: a value our own code does not expect
        message="",
        stage=None,
        attempt=None,
        pod_name=None,
        exit_code=None,
        time=T0,
        detail={},
    )
    row = json.loads(event_row(AuditRecord.model_construct(job_uid=UID, namespace="media", name="t", entry=entry)))
    assert (row["job_uid"], row["seq"], row["event_type"]) == (UID, 5, "JobStarted")
    assert row["detail"] == {DEGRADED_KEY: ["the row could not be built (TypeError); only its identity kept"]}
