"""Reading a job's history back: the queries, and the `JobHistory` built from what they return.

`jobs` keeps one row per job UID that outlives the custom resource, so a history still answers
after `kubectl delete`; the attempts are projected from the events (`procjob.core.timeline`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from procjob.adapters.audit.logs import ArchivedLog, read_index
from procjob.adapters.audit.read_models import JobHistory, JobSummary
from procjob.core.redact import redact_spec
from procjob.core.timeline import attempt_timeline
from procjob.models.audit import AuditEntry

if TYPE_CHECKING:
    from procjob.adapters.audit.store import AuditStore

LATEST_UID = """
SELECT uid FROM (
    SELECT uid, created_at AS born FROM jobs WHERE namespace = %(namespace)s AND name = %(name)s
    UNION ALL
    SELECT job_uid, min(occurred_at) FROM audit_events
     WHERE namespace = %(namespace)s AND name = %(name)s GROUP BY job_uid
) AS candidates
GROUP BY uid ORDER BY min(born) DESC, uid DESC LIMIT 1
"""

_JOB_BY_UID = """
SELECT uid, namespace, name, spec, state, reason, created_at, started_at, finished_at, attempts,
       deleted_at, last_seq
  FROM jobs WHERE uid = %s
"""

_EVENTS_BY_UID = """
SELECT seq, event_type AS type, reason, message, stage, attempt, pod_name, exit_code,
       occurred_at AS time, detail, namespace, name
  FROM audit_events WHERE job_uid = %s ORDER BY seq
"""


async def read_history(conn: psycopg.AsyncConnection[Any], uid: str) -> JobHistory | None:
    """The history of the job with this UID, from its `jobs` row and its events; None if neither exists."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_JOB_BY_UID, [uid])
        job_row = await cursor.fetchone()
        await cursor.execute(_EVENTS_BY_UID, [uid])
        event_rows = await cursor.fetchall()
    if job_row is None and not event_rows:
        return None
    # Times come back in the session's time zone, which the DSN or server may set: show UTC.
    job_row = None if job_row is None else _in_utc(job_row)
    event_rows = [_in_utc(r) for r in event_rows]
    identity = job_row or event_rows[0]
    logs = await _logs(conn, uid)
    events = tuple(
        AuditEntry.model_validate({k: v for k, v in r.items() if k not in ("namespace", "name")}) for r in event_rows
    )
    return JobHistory(
        uid=uid,
        namespace=identity["namespace"],
        name=identity["name"],
        job=None if job_row is None else JobSummary.model_validate(_redacted(job_row)),
        attempts=attempt_timeline(events),
        events=events,
        logs=logs,
    )


async def _logs(conn: psycopg.AsyncConnection[Any], uid: str) -> tuple[ArchivedLog, ...]:
    """The job's archived logs; none while the database lacks the table or its item column
    (`procjob db migrate` not yet run after an upgrade): the history itself must not fail for it."""
    try:
        async with conn.transaction():  # a savepoint: the failed statement does not spoil the rest
            return await read_index(conn, uid)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        return ()


def _redacted(job_row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its spec redacted again: rows written before redaction existed hold
    literal credentials, and history must not show them."""
    spec = job_row.get("spec")
    return job_row | {"spec": redact_spec(spec)} if isinstance(spec, dict) else job_row


def _in_utc(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in row.items()}


async def history_document(store: AuditStore, namespace: str, name: str) -> dict[str, Any] | None:
    """The JSON document of a job's history (HTTP endpoint and `procjob history -o json`)."""
    found = await store.history(namespace, name)
    return None if found is None else found.to_json_dict()
