"""The audit schema: numbered SQL files in `procjob/migrations`, applied in order by `migrate()`.

Each file is applied in its own transaction, under a PostgreSQL advisory lock so that two operators
starting together do not race; applied versions (and a checksum of each file, so that a file
changed after it was applied is refused) are kept in `schema_migrations`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import psycopg

from procjob.adapters.audit.connection import connect_error, connect_kwargs
from procjob.adapters.audit.dsn import check_dsn, scrub
from procjob.adapters.audit.errors import AuditError, AuditUnavailable

# pg_advisory_lock key that serialises migrations: the bytes of "procjob" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"procjob", "big")


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
        conn = psycopg.connect(dsn, autocommit=True, **connect_kwargs(dsn, connect_timeout))
    except psycopg.Error as exc:
        raise connect_error(exc, dsn) from None
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
