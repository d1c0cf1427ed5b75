"""What can go wrong talking to the audit database, as one exception tree.

Every message is one line, with the DSN's password removed; psycopg's own exception is never
chained, because libpq can echo the connection string:

    AuditError                 anything that went wrong talking to the audit database
    ├── AuditUnavailable       refused, dropped, timed out, pool exhausted: retry later and keep
    │                          the backlog (the relay's case; the CLI exits 1)
    ├── AuditConfigError       no/invalid DSN, unreadable DSN file, authentication failed,
    │                          no such database: retrying will not help (the CLI exits 2)
    └── AuditSchemaMissing     a table the operation needs does not exist: `procjob db migrate`

`procjob.adapters.audit.connection` maps psycopg's and the pool's exceptions onto this tree.
"""

from __future__ import annotations


class AuditError(Exception):
    """The audit database could not do what was asked. `sqlstate` is set when PostgreSQL said why."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class AuditUnavailable(AuditError):
    """Transient: the database is down, unreachable or too slow. Keep the backlog and retry."""


class AuditSchemaMissing(AuditError):
    """The database lacks a table of the audit schema: its migrations were not applied."""


class AuditConfigError(AuditError):
    """Permanent until someone fixes the configuration (DSN, secret, credentials, database)."""
