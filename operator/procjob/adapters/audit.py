"""The audit of record in PostgreSQL: transitions (`audit_events`) and job summaries (`jobs`).

The relay hands `insert()` batches of `AuditRecord`s taken from a job's status outbox. A batch is
one statement in one transaction, `INSERT ... ON CONFLICT (job_uid, seq) DO NOTHING`, so a batch
repeated after a crash between the insert and the status update is absorbed and `insert()` reports
only the rows that were new. `jobs` keeps one row per job UID that outlives the custom resource,
so `history()` still answers after `kubectl delete`. Plain psycopg 3 on an async pool, no ORM.

Errors (every message is one line, with the DSN's password removed; psycopg's own exception is
never chained, because libpq can echo the connection string):

    AuditError                 anything that went wrong talking to the audit database
    ├── AuditUnavailable       refused, dropped, timed out, pool exhausted: retry later and keep
    │                          the backlog (the relay's case; the CLI exits 1)
    └── AuditConfigError       no/invalid DSN, unreadable DSN file, authentication failed,
                               no such database: retrying will not help (the CLI exits 2)

Usage::

    async with await AuditStore.open(resolve_dsn(os.environ)) as store:
        await store.migrate()
        new_rows = await store.insert(records)

Schema changes are numbered SQL files in `procjob/migrations` applied by `migrate()`, each in its
own transaction, under a PostgreSQL advisory lock so that two operators starting together do not
race; applied versions (and a checksum of each file) are kept in `schema_migrations`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import psycopg
import pydantic_core
from annotated_types import MaxLen
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from pydantic import AwareDatetime, Field, computed_field

from procjob.core.redact import redact_spec
from procjob.core.sanitize import bounded_json, clean_text, has_invalid_text
from procjob.core.timefmt import utc
from procjob.models.audit import AuditEntry, AuditRecord
from procjob.models.base import ApiModel

ENV_DSN = "PROCJOB_DATABASE_URL"
ENV_DSN_FILE = "PROCJOB_DATABASE_URL_FILE"

# pg_advisory_lock key that serialises migrations: the bytes of "procjob" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"procjob", "big")


# ---------------------------------------------------------------------------------------- errors


class AuditError(Exception):
    """The audit database could not do what was asked. `sqlstate` is set when PostgreSQL said why."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class AuditUnavailable(AuditError):
    """Transient: the database is down, unreachable or too slow. Keep the backlog and retry."""


class AuditConfigError(AuditError):
    """Permanent until someone fixes the configuration (DSN, secret, credentials, database)."""


# ------------------------------------------------------------------------------------------ DSN


def resolve_dsn(environ: Mapping[str, str]) -> str | None:
    """The DSN from PROCJOB_DATABASE_URL or from the file PROCJOB_DATABASE_URL_FILE names.

    The file is how a Kubernetes Secret is mounted; surrounding whitespace (a trailing newline) is
    stripped. Both set is an error rather than a silent precedence rule. None when neither is set.
    """
    direct = environ.get(ENV_DSN, "").strip()
    path = environ.get(ENV_DSN_FILE, "").strip()
    if direct and path:
        raise AuditConfigError(f"set either {ENV_DSN} or {ENV_DSN_FILE}, not both")
    if direct:
        return direct
    if not path:
        return None
    try:
        content = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise AuditConfigError(f"cannot read {ENV_DSN_FILE}={path}: {reason}") from None
    if not content:
        raise AuditConfigError(f"{ENV_DSN_FILE}={path} is empty")
    return content


_URL_CREDENTIALS = re.compile(r"^(?P<head>postgres(?:ql)?://[^:@/?]*:)(?P<password>[^@/?]*)(?=@)", re.I)
_URL_PASSWORD_PARAM = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&#]*)", re.I)
_REDACTED = "***"


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `***`, for messages; the shape is kept."""
    if re.match(r"^postgres(?:ql)?://", dsn, re.I):
        dsn = _URL_CREDENTIALS.sub(lambda m: m["head"] + _REDACTED, dsn)
        return _URL_PASSWORD_PARAM.sub(lambda m: m["head"] + _REDACTED, dsn)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparseable connection string>"
    if "password" in params:
        params["password"] = _REDACTED
    return make_conninfo("", **params)


def _secrets_of(dsn: str) -> list[str]:
    """Every spelling of the password the DSN carries (decoded and as written), longest first."""
    found: set[str] = set()
    with contextlib.suppress(psycopg.Error):
        password = conninfo_to_dict(dsn).get("password")
        if password:
            found.add(str(password))
    for pattern in (_URL_CREDENTIALS, _URL_PASSWORD_PARAM):
        found.update(m["password"] for m in pattern.finditer(dsn) if m["password"])
    return sorted(found, key=len, reverse=True)


def scrub(text: str, dsn: str) -> str:
    """`text` on one line, with the DSN redacted and no trace of its password."""
    if dsn:
        text = text.replace(dsn, redact_dsn(dsn))
    for secret in _secrets_of(dsn):
        text = text.replace(secret, _REDACTED)
    return " ".join(text.split())


def check_dsn(dsn: str) -> None:
    """Parse the DSN locally (libpq's parser, no network) so that syntax errors are config errors.

    libpq's "missing =" message quotes the rest of the string, password included, so only messages
    that name an option are passed on.
    """
    if not dsn.strip():
        raise AuditConfigError(f"empty database URL: set {ENV_DSN}")
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        detail = scrub(str(exc), dsn)
        if not detail.startswith("invalid connection option"):
            detail = "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME or key=value pairs"
        raise AuditConfigError(f"invalid database URL {redact_dsn(dsn)}: {detail}") from None


# Markers of a connection failure that retrying will not cure (libpq and server messages).
_CONFIG_MARKERS = (
    "connection is bad:",  # libpq rejected an option value before any network I/O
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # database or role
    "certificate",  # sslrootcert/sslcert files
    "invalid sslmode",
)


def _connect_error(exc: psycopg.Error, dsn: str) -> AuditError:
    detail = scrub(str(exc), dsn)
    cls = AuditConfigError if any(m in detail for m in _CONFIG_MARKERS) else AuditUnavailable
    return cls(f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {detail}")


def _query_error(exc: BaseException, dsn: str, what: str) -> AuditError:
    """Map what a pooled operation raised to the exception tree."""
    if isinstance(exc, PoolClosed):
        return AuditError(f"audit {what}: the store is closed")
    if isinstance(exc, PoolTimeout):
        return AuditUnavailable(f"audit {what}: no connection to PostgreSQL at {redact_dsn(dsn)} in time")
    if isinstance(exc, TimeoutError):
        return AuditUnavailable(f"audit {what}: PostgreSQL at {redact_dsn(dsn)} did not answer in time")
    assert isinstance(exc, psycopg.Error)
    detail = scrub(str(exc), dsn)
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return AuditError(f"audit {what}: the audit schema is missing, run `procjob db migrate`: {detail}")
    if isinstance(exc, psycopg.OperationalError):
        return AuditUnavailable(f"audit {what}: PostgreSQL at {redact_dsn(dsn)}: {detail}", sqlstate=exc.sqlstate)
    return AuditError(f"audit {what}: {detail}", sqlstate=exc.sqlstate)


def _connect_kwargs(dsn: str, connect_timeout: float) -> dict[str, Any]:
    """libpq options the operator wants unless the DSN says otherwise: a connect timeout, TCP
    keepalives (a dead peer is noticed on idle pooled connections) and an application_name."""
    given = conninfo_to_dict(dsn)
    wanted: dict[str, Any] = {
        "connect_timeout": max(1, math.ceil(connect_timeout)),
        "application_name": "procjob",
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    return {key: value for key, value in wanted.items() if key not in given}


# ---------------------------------------------------------------------------------------- models


class JobSummary(ApiModel):
    """One job as `jobs` keeps it: the latest snapshot the controller upserted.

    `last_seq` is the audit seq the snapshot reflects: an upsert with a lower one is ignored, so a
    replayed (older) snapshot never moves a job backwards.
    """

    uid: str = Field(min_length=1)
    namespace: str
    name: str
    spec: dict[str, Any] = Field(default_factory=dict)
    state: str
    reason: str = ""
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    attempts: int = Field(default=0, ge=0)
    deleted_at: AwareDatetime | None = None
    last_seq: int = Field(default=0, ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_seconds(self) -> float | None:
        """Run time from start to finish (the same value as the `jobs.duration_seconds` column)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


AttemptResult = Literal["Pending", "Running", "Succeeded", "Failed", "Interrupted"]


class AttemptRow(ApiModel):
    """One attempt of one stage, derived from its events (AttemptStarted ... AttemptSucceeded/Failed).

    `Interrupted`: the job ended or was suspended while the attempt had no outcome recorded.
    """

    stage: str
    attempt: int
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
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


class JobHistory(ApiModel):
    """What `procjob history` and the operator's history endpoint show for one job UID."""

    uid: str
    namespace: str
    name: str
    job: JobSummary | None = Field(default=None, description="None until the first upsert_job().")
    attempts: tuple[AttemptRow, ...] = ()
    events: tuple[AuditEntry, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON document (camelCase keys, RFC 3339 times, nulls kept so every key is present)."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class SeqGap:
    """Sequence numbers missing for a job: first..last inclusive."""

    job_uid: str
    first_missing: int
    last_missing: int


# ------------------------------------------------------------------------------------- timeline

_INTERRUPTING = frozenset({"JobSuspended", "JobSucceeded", "JobFailed", "JobCancelled", "JobDeleted"})


def attempt_timeline(events: Iterable[AuditEntry]) -> tuple[AttemptRow, ...]:
    """One row per (stage, attempt), in the order the attempts started.

    An attempt starts at AttemptStarted (the pod was created), runs from AttemptRunning and ends at
    AttemptSucceeded or AttemptFailed, which carry the exit code and reason. A job-level end or
    suspension closes attempts still open as `Interrupted`; an outcome recorded after that wins.
    """
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if event.type in _INTERRUPTING:
            for row in rows.values():
                if row["result"] in ("Pending", "Running"):
                    row.update(end_time=event.time, reason=event.reason or event.type, result="Interrupted")
            continue
        if not event.type.startswith("Attempt") or event.stage is None or event.attempt is None:
            continue
        row = rows.setdefault(
            (event.stage, event.attempt),
            {"stage": event.stage, "attempt": event.attempt, "result": "Pending"},
        )
        if event.pod_name and not row.get("pod_name"):
            row["pod_name"] = event.pod_name
        if event.type == "AttemptStarted":
            row.setdefault("start_time", event.time)
        elif event.type == "AttemptRunning":
            row.setdefault("running_time", event.time)
            if row["result"] == "Pending":
                row["result"] = "Running"
        elif event.type in ("AttemptSucceeded", "AttemptFailed"):
            succeeded = event.type == "AttemptSucceeded"
            row.update(
                end_time=event.time,
                exit_code=event.exit_code,
                reason=event.reason or ("Completed" if succeeded else "Failed"),
                result="Succeeded" if succeeded else "Failed",
            )
    return tuple(AttemptRow.model_validate(row) for row in rows.values())


# ----------------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str


_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_[a-z0-9_]+\.sql$")

_BOOTSTRAP = b"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@cache
def load_migrations() -> tuple[Migration, ...]:
    """The packaged `procjob/migrations/NNNN_name.sql` files, by version."""
    found: dict[int, Migration] = {}
    for item in files("procjob").joinpath("migrations").iterdir():
        match = _MIGRATION_FILE.match(item.name)
        if not match:
            continue
        data = item.read_bytes()
        version = int(match["version"])
        if version in found:
            raise AuditError(f"two migrations numbered {version:04d}")
        found[version] = Migration(
            version, item.name.removesuffix(".sql"), data.decode(), hashlib.sha256(data).hexdigest()
        )
    return tuple(found[v] for v in sorted(found))


def migrate(dsn: str, *, connect_timeout: float = 10.0, lock_timeout: float = 60.0) -> list[str]:
    """Apply the migrations the database lacks; return their names (empty: already up to date).

    Synchronous, for `procjob db migrate`; `AuditStore.migrate()` runs it in a thread. A session
    advisory lock serialises concurrent callers (the second waits, then finds nothing to do); it is
    released on unlock or when the connection ends, whatever happened.
    """
    check_dsn(dsn)
    migrations = load_migrations()
    try:
        conn = psycopg.connect(dsn, autocommit=True, **_connect_kwargs(dsn, connect_timeout))
    except psycopg.Error as exc:
        raise _connect_error(exc, dsn) from None
    applied: list[str] = []
    current = "lock"
    try:
        with conn:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{int(lock_timeout * 1000)}ms"])
            conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
            try:
                conn.execute(_BOOTSTRAP)
                done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
                for migration in migrations:
                    current = migration.name
                    if migration.version in done:
                        if done[migration.version] != migration.checksum:
                            raise AuditError(f"migration {migration.name} was changed after it was applied")
                        continue
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            [migration.version, migration.name, migration.checksum],
                        )
                    applied.append(migration.name)
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
    except psycopg.errors.LockNotAvailable:
        raise AuditUnavailable(f"migration {current}: another migration holds the lock") from None
    except psycopg.OperationalError as exc:
        raise AuditUnavailable(f"migration {current}: {scrub(str(exc), dsn)}", sqlstate=exc.sqlstate) from None
    except psycopg.Error as exc:
        raise AuditError(f"migration {current} failed: {scrub(str(exc), dsn)}", sqlstate=exc.sqlstate) from None
    return applied


# ---------------------------------------------------------------------------------------- store

# The batch travels as one JSON array: one parameter whatever the batch size, serialised by
# pydantic-core and parsed by the server; about twice as fast as 13 unnest() arrays.
_INSERT_EVENTS = """
INSERT INTO audit_events (job_uid, seq, namespace, name, stage, attempt, event_type, reason, message,
                          pod_name, exit_code, occurred_at, detail)
SELECT job_uid, seq, namespace, name, stage, attempt, event_type, reason, message,
       pod_name, exit_code, occurred_at, detail
  FROM json_to_recordset(%s::json) AS batch(
       job_uid text, seq bigint, namespace text, name text, stage text, attempt integer, event_type text,
       reason text, message text, pod_name text, exit_code integer, occurred_at timestamptz, detail jsonb)
ON CONFLICT (job_uid, seq) DO NOTHING
"""

_UPSERT_JOBS = """
INSERT INTO jobs AS j (uid, namespace, name, spec, state, reason, created_at, started_at, finished_at,
                       attempts, deleted_at, last_seq)
SELECT uid, namespace, name, spec, state, reason, created_at, started_at, finished_at,
       attempts, deleted_at, last_seq
  FROM json_to_recordset(%s::json) AS batch(
       uid text, namespace text, name text, spec jsonb, state text, reason text, created_at timestamptz,
       started_at timestamptz, finished_at timestamptz, attempts integer, deleted_at timestamptz, last_seq bigint)
ON CONFLICT (uid) DO UPDATE SET
    namespace = EXCLUDED.namespace, name = EXCLUDED.name, spec = EXCLUDED.spec, state = EXCLUDED.state,
    reason = EXCLUDED.reason, created_at = EXCLUDED.created_at, started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at, attempts = EXCLUDED.attempts,
    deleted_at = coalesce(j.deleted_at, EXCLUDED.deleted_at), last_seq = EXCLUDED.last_seq
WHERE j.last_seq <= EXCLUDED.last_seq
"""

_LATEST_UID = """
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

_GAPS = """
SELECT job_uid, prev + 1 AS first_missing, seq - 1 AS last_missing FROM (
    SELECT job_uid, seq, coalesce(lag(seq) OVER (PARTITION BY job_uid ORDER BY seq), 0) AS prev
      FROM audit_events WHERE %(uid)s::text IS NULL OR job_uid = %(uid)s::text
) AS numbered
WHERE seq > prev + 1 ORDER BY job_uid, first_missing
"""


# ------------------------------------------------------------------------------------------ rows
#
# A row is built so that PostgreSQL accepts it whatever a job put in it (see procjob.core.sanitize):
# text without NUL or lone surrogates, within the model's lengths (history reads rows back through
# the models); jsonb bounded in depth and size; integers within their column's range. A value that
# had to change is kept degraded, and the row says so under DEGRADED_KEY (a list of notes) in its
# `detail` (events) or `spec` (jobs). Building a row never raises: a failure of this code itself
# still yields a minimal row that keeps the record (identity, seq, type, time) and says why.

DEGRADED_KEY = "auditDegraded"
JSON_DEPTH = 32
DETAIL_CHARS = 65536
SPEC_CHARS = 262144
INT32 = 2**31 - 1
NAME_CHARS = 253

log = logging.getLogger("procjob.audit")


def _max_length(field: str) -> int:
    """A text column's bound: the AuditEntry field's own max_length (one source of truth)."""
    return next(m.max_length for m in AuditEntry.model_fields[field].metadata if isinstance(m, MaxLen))


_TEXT_BOUNDS = {f: _max_length(f) for f in ("type", "reason", "message", "stage", "pod_name")}


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


def _event_row(r: AuditRecord) -> bytes:
    """One `audit_events` row as JSON (keys are `_INSERT_EVENTS`' columns); never raises."""
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


def _job_row(job: JobSummary) -> bytes:
    """One `jobs` row as JSON (keys are `_UPSERT_JOBS`' columns), spec redacted; never raises."""
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
                "state": row.text("state", str(job.state), 64),
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
        "state": row.text("state", job.state, 64),
        "reason": row.text("reason", job.reason, _TEXT_BOUNDS["reason"]),
        "created_at": utc(job.created_at),
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "attempts": min(job.attempts, INT32),
        "deleted_at": job.deleted_at,
        "last_seq": job.last_seq,
    }
    return fields | {"spec": redact_spec(row.json("spec", job.spec, budget))}


def _redacted(job_row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its spec redacted again: rows written before redaction existed hold
    literal credentials, and history must not show them."""
    spec = job_row.get("spec")
    return job_row | {"spec": redact_spec(spec)} if isinstance(spec, dict) else job_row


def _batch(rows: Iterable[bytes]) -> str:
    """Rows as the one JSON array parameter that json_to_recordset unpacks."""
    return (b"[" + b",".join(rows) + b"]").decode()


def _in_utc(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in row.items()}


class AuditStore:
    """The audit database behind a small async connection pool. Open with `AuditStore.open()`."""

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        dsn: str,
        *,
        connect_timeout: float,
        op_timeout: float,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 10.0,
        op_timeout: float = 30.0,
        wait: bool = True,
    ) -> AuditStore:
        """Open the pool.

        wait=True (the CLI, a normal start): connect once first, so that a wrong password or an
        unreachable server fails now with the right exception. wait=False (the operator starting
        while PostgreSQL is down): return at once; the pool keeps connecting in the background and
        operations raise AuditUnavailable until it succeeds. `op_timeout` bounds every operation,
        so that a black-holed connection cannot stall the relay.
        """
        check_dsn(dsn)
        kwargs = _connect_kwargs(dsn, connect_timeout)
        if wait:
            try:
                probe = await psycopg.AsyncConnection.connect(dsn, **kwargs)
            except psycopg.Error as exc:
                raise _connect_error(exc, dsn) from None
            await probe.close()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            dsn,
            kwargs=kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name="procjob-audit",
            timeout=connect_timeout,
            check=AsyncConnectionPool.check_connection,
        )
        try:
            await pool.open(wait=wait, timeout=connect_timeout)
        except PoolTimeout:
            await pool.close()
            raise AuditUnavailable(f"cannot connect to PostgreSQL at {redact_dsn(dsn)} in time") from None
        return cls(pool, dsn, connect_timeout=connect_timeout, op_timeout=op_timeout)

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection for one operation (committed at the end), errors mapped to the tree."""
        try:
            async with asyncio.timeout(self._op_timeout), self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolClosed, TimeoutError) as exc:
            raise _query_error(exc, self._dsn, what) from None

    async def migrate(self) -> list[str]:
        """`migrate()` for this store's database, in a worker thread."""
        return await asyncio.to_thread(migrate, self._dsn, connect_timeout=self._connect_timeout)

    async def ping(self) -> None:
        """One round trip (`SELECT 1`), for the relay's measure of `procjob_audit_up` while idle;
        raises like any operation when PostgreSQL does not answer."""
        async with self._connection("ping") as conn:
            await conn.execute("SELECT 1")

    async def insert(self, records: Sequence[AuditRecord]) -> int:
        """Insert a batch exactly once; return how many rows were new (a repeat returns 0)."""
        if not records:
            return 0
        batch = _batch(_event_row(r) for r in records)
        async with self._connection("insert") as conn:
            cursor = await conn.execute(_INSERT_EVENTS, [batch])
            return cursor.rowcount

    async def upsert_job(self, job: JobSummary) -> bool:
        """Create or refresh the job's row; False when the stored snapshot is newer (kept)."""
        return await self.upsert_jobs([job]) == 1

    async def upsert_jobs(self, jobs: Sequence[JobSummary]) -> int:
        """`upsert_job` for a batch, in one statement; returns how many rows were written.

        A job named twice counts once, with its newest snapshot (PostgreSQL refuses to update a row
        twice in one statement)."""
        newest: dict[str, JobSummary] = {}
        for job in jobs:
            if job.uid not in newest or newest[job.uid].last_seq <= job.last_seq:
                newest[job.uid] = job
        if not newest:
            return 0
        rows = _batch(_job_row(job) for job in newest.values())
        async with self._connection("upsert_jobs") as conn:
            cursor = await conn.execute(_UPSERT_JOBS, [rows])
            return cursor.rowcount

    async def mark_deleted(self, uid: str, when: datetime) -> bool:
        """Record that the custom resource is gone (the first time counts); False if the job is unknown."""
        async with self._connection("mark_deleted") as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET deleted_at = coalesce(deleted_at, %s) WHERE uid = %s", [utc(when), uid]
            )
            return cursor.rowcount == 1

    async def history(self, namespace: str, name: str) -> JobHistory | None:
        """The latest job that carried this name (by creation), deleted or not; None if never seen."""
        async with self._connection("history") as conn:
            cursor = await conn.execute(_LATEST_UID, {"namespace": namespace, "name": name})
            row = await cursor.fetchone()
            return None if row is None else await self._history(conn, str(row[0]))

    async def history_by_uid(self, uid: str) -> JobHistory | None:
        async with self._connection("history") as conn:
            return await self._history(conn, uid)

    async def _history(self, conn: psycopg.AsyncConnection[Any], uid: str) -> JobHistory | None:
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
        events = tuple(
            AuditEntry.model_validate({k: v for k, v in r.items() if k not in ("namespace", "name")})
            for r in event_rows
        )
        return JobHistory(
            uid=uid,
            namespace=identity["namespace"],
            name=identity["name"],
            job=None if job_row is None else JobSummary.model_validate(_redacted(job_row)),
            attempts=attempt_timeline(events),
            events=events,
        )

    async def gaps(self, job_uid: str | None = None) -> list[SeqGap]:
        """Missing sequence numbers (per job, from 1 to its highest seq): empty means gap-free."""
        async with self._connection("gaps") as conn:
            cursor = await conn.execute(_GAPS, {"uid": job_uid})
            return [SeqGap(str(uid), int(first), int(last)) for uid, first, last in await cursor.fetchall()]


async def history_document(store: AuditStore, namespace: str, name: str) -> dict[str, Any] | None:
    """The JSON document of a job's history (HTTP endpoint and `procjob history -o json`)."""
    found = await store.history(namespace, name)
    return None if found is None else found.to_json_dict()
