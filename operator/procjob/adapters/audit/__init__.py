"""The audit of record in PostgreSQL: transitions (`audit_events`) and job summaries (`jobs`).

Usage::

    async with await AuditStore.open(resolve_dsn(os.environ)) as store:
        await store.migrate()
        new_rows = await store.insert(records)

One module per concern; this package re-exports what the rest of procjob uses:

    errors       the exception tree (AuditError, AuditUnavailable, AuditConfigError, AuditSchemaMissing)
    dsn          where the DSN comes from (env or a mounted Secret), checking and redacting it
    connection   libpq options, and psycopg's exceptions mapped onto the tree
    read_models  JobSummary, JobHistory, SeqGap (what the store upserts and gives back)
    rows         records and summaries as rows PostgreSQL accepts, whatever a job put in them
    migrations   the numbered SQL files in `procjob/migrations` and `migrate()`
    history      reading a job's history back, and its JSON document
    logs         archived pod logs (`job_logs`): ArchivedLog, LogIndex
    store        AuditStore: the pool and its operations

The attempt timeline is a pure projection of the events: `procjob.core.timeline`.
"""

from __future__ import annotations

from procjob.adapters.audit.dsn import ENV_DSN, ENV_DSN_FILE, check_dsn, redact_dsn, resolve_dsn, scrub
from procjob.adapters.audit.errors import AuditConfigError, AuditError, AuditSchemaMissing, AuditUnavailable
from procjob.adapters.audit.history import history_document
from procjob.adapters.audit.logs import ArchivedLog, LogIndex
from procjob.adapters.audit.migrations import MIGRATION_LOCK_KEY, Migration, load_migrations, migrate
from procjob.adapters.audit.read_models import JobHistory, JobSummary, SeqGap
from procjob.adapters.audit.rows import DEGRADED_KEY, DETAIL_CHARS, JSON_DEPTH, SPEC_CHARS, batch, event_row, job_row
from procjob.adapters.audit.store import AuditStore
from procjob.core.timeline import AttemptResult, AttemptRow, attempt_timeline

# The names the row builders had before the package split, for callers not yet moved to the
# public ones (tests/unit/controller/test_relay.py).

__all__ = [
    "DEGRADED_KEY",
    "DETAIL_CHARS",
    "ENV_DSN",
    "ENV_DSN_FILE",
    "JSON_DEPTH",
    "MIGRATION_LOCK_KEY",
    "SPEC_CHARS",
    "ArchivedLog",
    "AttemptResult",
    "AttemptRow",
    "AuditConfigError",
    "AuditError",
    "AuditSchemaMissing",
    "AuditStore",
    "AuditUnavailable",
    "JobHistory",
    "JobSummary",
    "LogIndex",
    "Migration",
    "SeqGap",
    "attempt_timeline",
    "batch",
    "check_dsn",
    "event_row",
    "history_document",
    "job_row",
    "load_migrations",
    "migrate",
    "redact_dsn",
    "resolve_dsn",
    "scrub",
]
