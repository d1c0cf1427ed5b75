"""Connecting to the audit database: the libpq options the operator adds, and how psycopg's and
the pool's exceptions map onto the audit's exception tree (`errors`), messages scrubbed of the
DSN's password."""

from __future__ import annotations

import math
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolClosed, PoolTimeout

from procjob.adapters.audit.dsn import redact_dsn, scrub
from procjob.adapters.audit.errors import AuditConfigError, AuditError, AuditSchemaMissing, AuditUnavailable

# Markers of a connection failure that retrying will not cure (libpq and server messages).
_CONFIG_MARKERS = (
    "connection is bad:",  # libpq rejected an option value before any network I/O
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # database or role
    "certificate",  # sslrootcert/sslcert files
    "invalid sslmode",
)


def connect_error(exc: psycopg.Error, dsn: str) -> AuditError:
    """What a failed connect means: a configuration error (see `_CONFIG_MARKERS`) or unavailability."""
    detail = scrub(str(exc), dsn)
    cls = AuditConfigError if any(m in detail for m in _CONFIG_MARKERS) else AuditUnavailable
    return cls(f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {detail}")


def query_error(exc: BaseException, dsn: str, what: str) -> AuditError:
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
        return AuditSchemaMissing(f"audit {what}: the audit schema is missing, run `procjob db migrate`: {detail}")
    if isinstance(exc, psycopg.OperationalError):
        return AuditUnavailable(f"audit {what}: PostgreSQL at {redact_dsn(dsn)}: {detail}", sqlstate=exc.sqlstate)
    return AuditError(f"audit {what}: {detail}", sqlstate=exc.sqlstate)


def connect_kwargs(dsn: str, connect_timeout: float) -> dict[str, Any]:
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


async def durable_commits(conn: psycopg.AsyncConnection[Any]) -> None:
    """Make every commit on `conn` durable before it is acknowledged (the pool's `configure`).

    The relay marks audit rows flushed once their INSERT commits. Under `synchronous_commit = off`
    PostgreSQL acknowledges a commit before its WAL is written, and a crash in the next few hundred
    milliseconds loses it: rows the status outbox has already let go, a gap nothing refills (seen in
    the chaos suite, PostgreSQL stopped in immediate mode on a test cluster configured so). Where the
    server or database says `off`, the operator's sessions say `on`; any other value (`local`,
    `remote_write`, `on`, `remote_apply`) is durable at least locally and is kept.
    """
    cursor = await conn.execute("SHOW synchronous_commit")
    row = await cursor.fetchone()
    if row is not None and row[0] == "off":
        await conn.execute("SET synchronous_commit = on")
    await conn.commit()
