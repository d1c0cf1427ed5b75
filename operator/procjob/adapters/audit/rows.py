"""Audit rows as PostgreSQL must receive them, whatever a job put in its records.

A row is built so that PostgreSQL accepts it (see procjob.core.sanitize): text without NUL or lone
surrogates, within the model's lengths (history reads rows back through the models); jsonb bounded
in depth and size; integers within their column's range. A value that had to change is kept
degraded, and the row says so under DEGRADED_KEY (a list of notes) in its `detail` (events) or
`spec` (jobs). Building a row never raises: a failure of this code itself still yields a minimal
row that keeps the record (identity, seq, type, time) and says why.

Rows are JSON objects whose keys are the columns of the store's INSERT statements; `batch()`
joins them into the one JSON array parameter that `json_to_recordset` unpacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pydantic_core
from annotated_types import MaxLen

from procjob.adapters.audit.read_models import JobSummary
from procjob.core.redact import redact_spec
from procjob.core.sanitize import bounded_json, clean_text, has_invalid_text
from procjob.core.timefmt import utc
from procjob.models.audit import AuditEntry, AuditRecord

DEGRADED_KEY = "auditDegraded"
JSON_DEPTH = 32
DETAIL_CHARS = 65536
SPEC_CHARS = 262144
INT32 = 2**31 - 1
NAME_CHARS = 253
STATE_CHARS = 64
EVENT_TYPE_CHARS = 64  # the bound when the model bounds `type` otherwise (a closed set of names)

log = logging.getLogger("procjob.audit")


def _max_length(field: str, default: int) -> int:
    """A text column's bound: the AuditEntry field's own max_length (one source of truth), or
    `default` when the model bounds the field otherwise."""
    bounds = (m.max_length for m in AuditEntry.model_fields[field].metadata if isinstance(m, MaxLen))
    return next(bounds, default)


_TEXT_BOUNDS = {f: _max_length(f, EVENT_TYPE_CHARS) for f in ("type", "reason", "message", "stage", "pod_name")}


class _Row:
    """Collects the notes of one row while its columns are cleaned."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def text(self, column: str, value: str, limit: int) -> str:
        cleaned = clean_text(value, limit)
        if cleaned is not value:
            if has_invalid_text(value):
                self.notes.append(f"{column}: NUL or invalid UTF-16 replaced by U+FFFD")
            if len(value) > limit:
                self.notes.append(f"{column}: cut to {limit} characters")
        return cleaned

    def optional_text(self, column: str, value: str | None, limit: int) -> str | None:
        return None if value is None else self.text(column, value, limit)

    def int32(self, column: str, value: int | None, low: int) -> int | None:
        if value is None or low <= value <= INT32:
            return value
        self.notes.append(f"{column}: {value if value.bit_length() <= 128 else 'a huge number'} is out of range")
        return None

    def json(self, column: str, value: object, max_chars: int) -> dict[str, Any]:
        """`value` bounded (see bounded_json), always a JSON object, with this row's notes in it."""
        bounded, notes = bounded_json(value, max_depth=JSON_DEPTH, max_chars=max_chars)
        document = bounded if isinstance(bounded, dict) else {"value": bounded}
        all_notes = self.notes + [f"{column}: {note}" for note in notes]
        if all_notes:
            document[DEGRADED_KEY] = all_notes
        return document


def _encode(build: Callable[[int], dict[str, Any]], byte_limit: int, chars: int) -> bytes:
    """`build(max_chars)` encoded, with smaller budgets while the bytes are over `byte_limit`
    (control characters are escaped six to one, non-ASCII takes up to four bytes)."""
    for budget in (chars, chars // 8, 256):
        data: bytes = pydantic_core.to_json(build(budget))
        if len(data) <= byte_limit:
            return data
    return pydantic_core.to_json(build(0))


def event_row(r: AuditRecord) -> bytes:
    """One `audit_events` row as JSON (keys are the store's INSERT columns); never raises."""
    try:
        return _encode(lambda budget: _event_fields(r, budget), 2 * DETAIL_CHARS + 16384, DETAIL_CHARS)
    except Exception as exc:  # a bug here must not lose the record: keep what identifies it
        log.exception("audit: the row of %s seq %s could not be built; storing a minimal one", r.job_uid, r.entry.seq)
        row = _Row()
        return pydantic_core.to_json(
            {
                "job_uid": row.text("job_uid", str(r.job_uid), NAME_CHARS),
                "seq": r.entry.seq,
                "namespace": row.text("namespace", str(r.namespace), NAME_CHARS),
                "name": row.text("name", str(r.name), NAME_CHARS),
                "event_type": row.text("event_type", str(r.entry.type), _TEXT_BOUNDS["type"]),
                "occurred_at": utc(r.entry.time),
                "detail": {
                    DEGRADED_KEY: [f"the row could not be built ({type(exc).__name__}); only its identity kept"]
                },
            }
        )


def _event_fields(r: AuditRecord, budget: int) -> dict[str, Any]:
    e, row = r.entry, _Row()
    fields = {
        "job_uid": row.text("job_uid", r.job_uid, NAME_CHARS),
        "seq": e.seq,  # the key: never changed (a seq beyond bigint is refused, the relay isolates it)
        "namespace": row.text("namespace", r.namespace, NAME_CHARS),
        "name": row.text("name", r.name, NAME_CHARS),
        "stage": row.optional_text("stage", e.stage, _TEXT_BOUNDS["stage"]),
        "attempt": row.int32("attempt", e.attempt, 1),
        "event_type": row.text("event_type", e.type, _TEXT_BOUNDS["type"]),
        "reason": row.text("reason", e.reason, _TEXT_BOUNDS["reason"]),
        "message": row.text("message", e.message, _TEXT_BOUNDS["message"]),
        "pod_name": row.optional_text("pod_name", e.pod_name, _TEXT_BOUNDS["pod_name"]),
        "exit_code": row.int32("exit_code", e.exit_code, -INT32 - 1),
        "occurred_at": utc(e.time),  # naive means UTC, not the session's time zone
    }
    return fields | {"detail": row.json("detail", e.detail, budget)}


def job_row(job: JobSummary) -> bytes:
    """One `jobs` row as JSON (keys are the store's UPSERT columns), spec redacted; never raises."""
    try:
        return _encode(lambda budget: _job_fields(job, budget), 2 * SPEC_CHARS + 16384, SPEC_CHARS)
    except Exception as exc:  # as for events: keep the job's identity and say why
        log.exception("audit: the summary of %s could not be built; storing a minimal one", job.uid)
        row = _Row()
        return pydantic_core.to_json(
            {
                "uid": row.text("uid", str(job.uid), NAME_CHARS),
                "namespace": row.text("namespace", str(job.namespace), NAME_CHARS),
                "name": row.text("name", str(job.name), NAME_CHARS),
                "state": row.text("state", str(job.state), STATE_CHARS),
                "created_at": utc(job.created_at),
                "last_seq": job.last_seq,
                "spec": {DEGRADED_KEY: [f"the snapshot could not be built ({type(exc).__name__})"]},
            }
        )


def _job_fields(job: JobSummary, budget: int) -> dict[str, Any]:
    row = _Row()
    fields = {
        "uid": row.text("uid", job.uid, NAME_CHARS),
        "namespace": row.text("namespace", job.namespace, NAME_CHARS),
        "name": row.text("name", job.name, NAME_CHARS),
        "state": row.text("state", job.state, STATE_CHARS),
        "reason": row.text("reason", job.reason, _TEXT_BOUNDS["reason"]),
        "created_at": utc(job.created_at),
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "attempts": min(job.attempts, INT32),
        "deleted_at": job.deleted_at,
        "last_seq": job.last_seq,
    }
    return fields | {"spec": redact_spec(row.json("spec", job.spec, budget))}


def batch(rows: Iterable[bytes]) -> str:
    """Rows as the one JSON array parameter that json_to_recordset unpacks."""
    return (b"[" + b",".join(rows) + b"]").decode()
