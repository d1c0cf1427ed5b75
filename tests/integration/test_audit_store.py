"""The audit store against a real PostgreSQL: migrations, exactly-once inserts, history, outages,
and the `procjob db migrate` / `procjob history` commands run as subprocesses."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import pytest

from procjob.adapters.audit import (
    DEGRADED_KEY,
    MIGRATION_LOCK_KEY,
    AuditConfigError,
    AuditError,
    AuditStore,
    AuditUnavailable,
    JobSummary,
    SeqGap,
    history_document,
    load_migrations,
    migrate,
)
from procjob.adapters.audit.connection import durable_commits
from procjob.adapters.metrics import Metrics
from procjob.controller.queue import WorkQueue
from procjob.controller.relay import AuditRelay
from procjob.models.audit import AuditEntry, AuditRecord
from procjob.models.job import ProcessingJob
from tests.support.postgres import PostgresCluster
from tests.unit.core.builders import make_job, spec_of

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
UID = "5f0c1a2e-7d1b-4c1e-9a57-0c8f3b2d9e10"
ALL_MIGRATIONS = [m.name for m in load_migrations()]
PROCJOB = Path(sys.executable).with_name("procjob")


def rows(db: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(query, params).fetchall()


def record(seq: int, kind: str = "JobStarted", uid: str = UID, name: str = "thumbs", **fields: Any) -> AuditRecord:
    second = fields.pop("second", seq)
    entry = AuditEntry.model_validate({"seq": seq, "type": kind, "time": T0 + timedelta(seconds=second), **fields})
    return AuditRecord(job_uid=uid, namespace="media", name=name, entry=entry)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def insert_eventually(store: AuditStore, batch: list[AuditRecord]) -> int:
    """What the relay does: retry on AuditUnavailable (each try waits at most the pool timeout)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await store.insert(batch)
        except AuditUnavailable:
            assert time.monotonic() < deadline, "the store did not recover"


@pytest.fixture
async def store(database: str) -> AsyncIterator[AuditStore]:
    async with await AuditStore.open(database, connect_timeout=2) as opened:
        await opened.migrate()
        yield opened


@pytest.fixture
def restart_after(postgres: PostgresCluster) -> Iterator[PostgresCluster]:
    """For outage tests: the cluster is running again afterwards, whatever the test did."""
    yield postgres
    if not postgres.running:
        postgres.start()


# ------------------------------------------------------------------------------------ migrations


def test_migrate_creates_the_schema_on_an_empty_database(database: str) -> None:
    assert (
        migrate(database) == ALL_MIGRATIONS == ["0001_audit_events", "0002_jobs", "0003_job_logs", "0004_job_logs_item"]
    )
    tables = rows(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    assert tables == [("audit_events",), ("job_logs",), ("jobs",), ("schema_migrations",)]
    indexes = {r[0] for r in rows(database, "SELECT indexname FROM pg_indexes WHERE tablename = 'audit_events'")}
    assert indexes == {"audit_events_pkey", "audit_events_by_name", "audit_events_by_time"}


def test_migrate_on_a_migrated_database_does_nothing(database: str) -> None:
    migrate(database)
    before = rows(database, "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY 1")
    assert migrate(database) == []
    assert rows(database, "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY 1") == before
    assert [r[0] for r in before] == [1, 2, 3, 4]


def test_concurrent_migrations_apply_each_version_once(database: str) -> None:
    barrier = threading.Barrier(4)

    def run() -> list[str]:
        barrier.wait()
        return migrate(database)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(), range(4)))
    assert sorted(results, key=len) == [[], [], [], ALL_MIGRATIONS]
    assert rows(database, "SELECT count(*) FROM schema_migrations") == [(len(ALL_MIGRATIONS),)]


def test_a_migration_waits_for_the_advisory_lock_held_by_another_operator(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as holder, ThreadPoolExecutor(1) as pool:
        holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        pending = pool.submit(migrate, database)
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        wait_until(lambda: rows(database, waiting) == [(1,)])
        assert not pending.done()
        assert rows(database, "SELECT to_regclass('schema_migrations')") == [(None,)]
        holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
        assert pending.result(timeout=30) == ALL_MIGRATIONS


def test_a_lock_held_too_long_is_reported_as_unavailable(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        with pytest.raises(AuditUnavailable, match="another migration holds the lock"):
            migrate(database, lock_timeout=0.2)


def test_a_migration_changed_after_it_was_applied_is_refused(database: str) -> None:
    migrate(database)
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(AuditError, match="0001_audit_events was changed"):
        migrate(database)


# --------------------------------------------------------------------------------------- inserts


async def test_the_same_batch_twice_inserts_once_and_changes_nothing(store: AuditStore, database: str) -> None:
    batch = [record(seq) for seq in range(1, 6)]
    assert await store.insert(batch) == 5
    before = rows(database, "SELECT * FROM audit_events ORDER BY job_uid, seq")
    assert await store.insert(batch) == 0
    assert rows(database, "SELECT * FROM audit_events ORDER BY job_uid, seq") == before


async def test_overlapping_batches_insert_only_the_new_rows(store: AuditStore, database: str) -> None:
    assert await store.insert([record(seq) for seq in range(1, 6)]) == 5
    assert await store.insert([record(seq) for seq in range(3, 9)]) == 3
    assert await store.insert([record(4), record(4), record(9)]) == 1, "a duplicate inside a batch too"
    assert rows(database, "SELECT array_agg(seq ORDER BY seq) FROM audit_events") == [(list(range(1, 10)),)]
    assert await store.gaps() == []


async def test_an_empty_batch_is_a_no_op(store: AuditStore) -> None:
    assert await store.insert([]) == 0


async def test_gaps_name_the_missing_sequence_numbers_per_job(store: AuditStore) -> None:
    other = "0e6b7c11-0000-4000-8000-000000000002"
    await store.insert([record(seq) for seq in (1, 2, 5, 6, 9)])
    await store.insert([record(seq, uid=other) for seq in (2, 3)])
    assert await store.gaps() == [
        SeqGap(other, 1, 1),
        SeqGap(UID, 3, 4),
        SeqGap(UID, 7, 8),
    ]
    assert await store.gaps(other) == [SeqGap(other, 1, 1)]


async def test_every_field_round_trips(store: AuditStore, database: str) -> None:
    plus_two = timezone(timedelta(hours=2))
    await store.insert(
        [
            record(
                1,
                "RetryScheduled",
                stage="resize",
                attempt=2,
                podName="thumbs-5f0c-resize-2",
                exitCode=137,
                reason="OOMKilled",
                message="attempt 2 failed\x00 (exit 137)",
                detail={"rule": "default", "delaySeconds": 4, "nextAttemptTime": T0, "log": ["a\x00b"]},
            ),
            AuditRecord(
                job_uid=UID,
                namespace="media",
                name="thumbs",
                entry=AuditEntry(seq=2, type="JobStarted", time=datetime(2026, 5, 1, 12, 0, tzinfo=plus_two)),
            ),
            AuditRecord(
                job_uid=UID,
                namespace="media",
                name="thumbs",
                entry=AuditEntry(seq=3, type="JobSuspended", time=datetime(2026, 5, 1, 10, 0)),
            ),
        ]
    )
    got = rows(
        database,
        "SELECT seq, namespace, name, stage, attempt, event_type, reason, message, pod_name, exit_code,"
        " occurred_at, detail, recorded_at IS NOT NULL FROM audit_events ORDER BY seq",
    )
    assert got[0][:10] == (
        1,
        "media",
        "thumbs",
        "resize",
        2,
        "RetryScheduled",
        "OOMKilled",
        "attempt 2 failed\ufffd (exit 137)",
        "thumbs-5f0c-resize-2",
        137,
    )
    assert got[0][11] == {
        "rule": "default",
        "delaySeconds": 4,
        "nextAttemptTime": "2026-05-01T10:00:00Z",
        "log": ["a\ufffdb"],
        "auditDegraded": [
            "message: NUL or invalid UTF-16 replaced by U+FFFD",
            "detail: NUL or invalid UTF-16 replaced by U+FFFD",
        ],
    }, "datetimes become RFC 3339, NUL (which jsonb refuses) becomes U+FFFD, and the row says so"
    assert got[0][12] is True
    assert [r[10] for r in got] == [T0 + timedelta(seconds=1), T0, T0], "offsets kept, naive times are UTC"


# --------------------------------------------------------------------------------------- history


def realistic_run(uid: str = UID, name: str = "thumbs", start: int = 0) -> list[AuditRecord]:
    """A job whose second stage fails twice (OOM, then a startup timeout) and succeeds on attempt 3."""

    def at(seq: int, second: int, kind: str, **fields: Any) -> AuditRecord:
        return record(seq, kind, uid=uid, name=name, second=start + second, **fields)

    pod = f"{name}-{uid[:4]}"
    return [
        at(1, 0, "JobCreated"),
        at(2, 0, "JobQueued", reason="Queued"),
        at(3, 1, "JobStarted"),
        at(4, 1, "AttemptStarted", stage="fetch", attempt=1, podName=f"{pod}-fetch-1"),
        at(5, 2, "AttemptRunning", stage="fetch", attempt=1, podName=f"{pod}-fetch-1"),
        at(6, 4, "AttemptSucceeded", stage="fetch", attempt=1, exitCode=0, reason="Completed"),
        at(7, 4, "StageSucceeded", stage="fetch"),
        at(8, 5, "AttemptStarted", stage="resize", attempt=1, podName=f"{pod}-resize-1"),
        at(9, 6, "AttemptRunning", stage="resize", attempt=1),
        at(10, 19, "AttemptFailed", stage="resize", attempt=1, exitCode=137, reason="OOMKilled"),
        at(11, 19, "RetryScheduled", stage="resize", attempt=1, detail={"delaySeconds": 1, "retriesLeft": 2}),
        at(12, 20, "AttemptStarted", stage="resize", attempt=2, podName=f"{pod}-resize-2"),
        at(13, 140, "AttemptFailed", stage="resize", attempt=2, reason="StartupTimeout"),
        at(14, 140, "RetryScheduled", stage="resize", attempt=2, detail={"delaySeconds": 2, "retriesLeft": 1}),
        at(15, 142, "AttemptStarted", stage="resize", attempt=3, podName=f"{pod}-resize-3"),
        at(16, 143, "AttemptRunning", stage="resize", attempt=3),
        at(17, 150, "AttemptSucceeded", stage="resize", attempt=3, exitCode=0),
        at(18, 150, "StageSucceeded", stage="resize"),
        at(19, 150, "JobSucceeded", reason="Completed"),
    ]


def summary(uid: str = UID, name: str = "thumbs", **fields: Any) -> JobSummary:
    values: dict[str, Any] = {
        "uid": uid,
        "namespace": "media",
        "name": name,
        "spec": {"stages": [{"name": "fetch"}, {"name": "resize"}]},
        "state": "Succeeded",
        "reason": "Completed",
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=1),
        "finished_at": T0 + timedelta(seconds=150),
        "attempts": 4,
        "last_seq": 19,
    }
    return JobSummary.model_validate(values | fields)


async def test_history_gives_one_row_per_attempt_with_durations_exit_codes_and_reasons(store: AuditStore) -> None:
    await store.insert(realistic_run())
    await store.upsert_job(summary())
    history = await store.history("media", "thumbs")
    assert history is not None
    assert history.uid == UID
    assert history.job is not None
    assert history.job.duration_seconds == 149.0
    assert [e.seq for e in history.events] == list(range(1, 20))
    assert [
        (r.stage, r.attempt, r.pod_name, r.start_time, r.duration_seconds, r.exit_code, r.reason, r.result)
        for r in history.attempts
    ] == [
        ("fetch", 1, "thumbs-5f0c-fetch-1", T0 + timedelta(seconds=1), 3.0, 0, "Completed", "Succeeded"),
        ("resize", 1, "thumbs-5f0c-resize-1", T0 + timedelta(seconds=5), 14.0, 137, "OOMKilled", "Failed"),
        ("resize", 2, "thumbs-5f0c-resize-2", T0 + timedelta(seconds=20), 120.0, None, "StartupTimeout", "Failed"),
        ("resize", 3, "thumbs-5f0c-resize-3", T0 + timedelta(seconds=142), 8.0, 0, "Completed", "Succeeded"),
    ]


async def test_history_of_a_deleted_job_and_of_a_reused_name(store: AuditStore) -> None:
    await store.insert(realistic_run())
    await store.upsert_job(summary())
    assert await store.mark_deleted(UID, T0 + timedelta(hours=1))
    newer = "9c1d2e3f-0000-4000-8000-000000000003"
    await store.insert(realistic_run(uid=newer, start=7200)[:5])
    await store.upsert_job(summary(uid=newer, state="Running", created_at=T0 + timedelta(hours=2), last_seq=5))

    latest = await store.history("media", "thumbs")
    assert latest is not None
    assert (latest.uid, latest.job and latest.job.state) == (newer, "Running")
    assert [(r.attempt, r.result) for r in latest.attempts] == [(1, "Running")]

    deleted = await store.history_by_uid(UID)
    assert deleted is not None
    assert deleted.job is not None
    assert deleted.job.deleted_at == T0 + timedelta(hours=1)
    assert len(deleted.attempts) == 4


async def test_history_of_a_job_known_only_from_its_events(store: AuditStore) -> None:
    await store.insert(realistic_run()[:6])
    history = await store.history("media", "thumbs")
    assert history is not None
    assert (history.uid, history.namespace, history.name, history.job) == (UID, "media", "thumbs", None)
    assert len(history.attempts) == 1


async def test_an_unknown_job_has_no_history(store: AuditStore) -> None:
    assert await store.history("media", "nope") is None
    assert await store.history_by_uid("nope") is None
    assert await history_document(store, "media", "nope") is None


async def test_the_history_document_is_json(store: AuditStore) -> None:
    await store.insert(realistic_run())
    await store.upsert_job(summary())
    doc = await history_document(store, "media", "thumbs")
    assert doc is not None
    assert json.loads(json.dumps(doc)) == doc
    assert (doc["uid"], doc["job"]["state"], doc["job"]["durationSeconds"]) == (UID, "Succeeded", 149.0)
    assert doc["attempts"][1]["reason"] == "OOMKilled"
    assert doc["events"][9]["exitCode"] == 137


# ------------------------------------------------------------------------------------------ jobs


async def test_upsert_job_is_idempotent_and_never_moves_a_job_backwards(store: AuditStore, database: str) -> None:
    select = "SELECT uid, state, attempts, last_seq, duration_seconds, deleted_at, spec FROM jobs"
    running = summary(state="Running", reason="", finished_at=None, attempts=2, last_seq=12)
    assert await store.upsert_job(running)
    first = rows(database, select)
    assert await store.upsert_job(running)
    assert rows(database, select) == first
    assert first[0][4] is None

    assert await store.upsert_job(summary())
    assert rows(database, select)[0][1:5] == ("Succeeded", 4, 19, 149.0)
    assert not await store.upsert_job(running), "an older snapshot is ignored"
    assert rows(database, select)[0][1] == "Succeeded"


async def test_upsert_jobs_writes_a_batch_in_one_statement_with_the_same_rules(
    store: AuditStore, database: str
) -> None:
    other = "22222222-2222-2222-2222-222222222222"
    running = summary(state="Running", reason="", finished_at=None, attempts=2, last_seq=12)
    assert await store.upsert_jobs([]) == 0
    assert await store.upsert_jobs([summary(), running, summary(uid=other, name="second", spec={"x": "\x00y"})]) == 2
    select = "SELECT uid, name, state, last_seq, spec FROM jobs ORDER BY name"
    assert rows(database, select) == [
        (
            other,
            "second",
            "Succeeded",
            19,
            {"x": "\ufffdy", "auditDegraded": ["spec: NUL or invalid UTF-16 replaced by U+FFFD"]},
        ),
        (UID, "thumbs", "Succeeded", 19, {"stages": [{"name": "fetch"}, {"name": "resize"}]}),
    ], "the newest snapshot of a job named twice wins; NUL is replaced, and the row says so"
    assert await store.upsert_jobs([running, summary(uid=other, name="second", last_seq=25)]) == 1
    assert [r[2:4] for r in rows(database, select)] == [("Succeeded", 25), ("Succeeded", 19)]


async def test_mark_deleted_keeps_the_first_deletion_time(store: AuditStore, database: str) -> None:
    await store.upsert_job(summary())
    first = T0 + timedelta(hours=1)
    assert await store.mark_deleted(UID, first)
    assert await store.mark_deleted(UID, first + timedelta(minutes=5))
    await store.upsert_job(summary(last_seq=20))
    assert rows(database, "SELECT deleted_at FROM jobs") == [(first,)]
    assert not await store.mark_deleted("unknown-uid", first)


# ------------------------------------------------------------------------------ durable commits


async def test_the_operators_sessions_commit_durably_where_the_server_says_off(
    store: AuditStore, database: str
) -> None:
    # The test cluster runs with synchronous_commit = off (tests/support/postgres.py): an
    # acknowledged commit could be lost by a crash, and with it audit rows the outbox let go.
    assert rows(database, "SHOW synchronous_commit") == [("off",)]
    async with store._connection("probe") as conn:  # the pool's own connection, as the relay gets it
        cursor = await conn.execute("SHOW synchronous_commit")
        assert await cursor.fetchone() == ("on",)


@pytest.mark.parametrize("setting", ["local", "remote_write", "remote_apply", "on"])
async def test_a_durable_setting_of_the_database_is_kept(database: str, setting: str) -> None:
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                psycopg.sql.Identifier(admin.info.dbname), psycopg.sql.Literal(setting)
            )
        )
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await durable_commits(conn)
        cursor = await conn.execute("SHOW synchronous_commit")
        assert await cursor.fetchone() == (setting,)


# ---------------------------------------------------------------------------- errors and outages


async def test_a_stopped_database_is_unavailable_then_the_store_recovers(
    store: AuditStore, restart_after: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert await store.insert([record(1)]) == 1
    restart_after.stop()
    with pytest.raises(AuditUnavailable) as caught:
        await store.insert([record(2)])
    assert restart_after.password not in str(caught.value)
    restart_after.start()
    assert await insert_eventually(store, [record(2)]) == 1
    assert await store.gaps() == []
    assert restart_after.password not in caplog.text


async def test_an_operator_can_start_while_the_database_is_down(
    database: str, restart_after: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    migrate(database)
    restart_after.stop()
    with pytest.raises(AuditUnavailable):
        await AuditStore.open(database, connect_timeout=1)
    async with await AuditStore.open(database, connect_timeout=1, wait=False) as store:
        with pytest.raises(AuditUnavailable):
            await store.insert([record(1)])
        restart_after.start()
        assert await insert_eventually(store, [record(1)]) == 1
    assert restart_after.password not in caplog.text


@pytest.mark.parametrize(
    ("mangle", "error", "expected"),
    [
        pytest.param(
            lambda dsn, pw: dsn.replace(pw, "wrong-password-1234"),
            AuditConfigError,
            "password authentication failed",
            id="a wrong password is a config error",
        ),
        pytest.param(
            lambda dsn, pw: dsn.rsplit("/", 1)[0] + "/no_such_db",
            AuditConfigError,
            'database "no_such_db" does not exist',
            id="a missing database is a config error",
        ),
        pytest.param(
            lambda dsn, pw: dsn.replace("@127.0.0.1:", "@127.0.0.1:x"),
            AuditConfigError,
            "invalid integer value",
            id="a bad port is a config error",
        ),
    ],
)
async def test_open_classifies_bad_settings_without_leaking_the_password(
    database: str, postgres: PostgresCluster, mangle: Callable[[str, str], str], error: type, expected: str
) -> None:
    with pytest.raises(error) as caught:
        await AuditStore.open(mangle(database, postgres.password), connect_timeout=2)
    assert expected in str(caught.value)
    assert postgres.password not in str(caught.value)
    assert "wrong-password-1234" not in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_querying_before_migrating_says_what_to_do(database: str) -> None:
    async with await AuditStore.open(database) as store:
        with pytest.raises(AuditError, match="run `procjob db migrate`"):
            await store.insert([record(1)])


async def test_a_closed_store_says_so(database: str) -> None:
    store = await AuditStore.open(database)
    await store.close()
    with pytest.raises(AuditError, match="closed"):
        await store.history("media", "x")


# ---------------------------------------------------------------------- the CLI, as a subprocess


def procjob(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROCJOB_DATABASE_URL")}
    return subprocess.run(
        [str(PROCJOB), *args], capture_output=True, text=True, env=clean | (env or {}), timeout=60, check=False
    )


@pytest.fixture
async def filled(store: AuditStore, database: str) -> str:
    await store.insert(realistic_run())
    await store.upsert_job(summary())
    await store.mark_deleted(UID, T0 + timedelta(hours=1))
    return database


def test_cli_db_migrate_is_idempotent(database: str) -> None:
    first = procjob("db", "migrate", "--database-url", database)
    assert (first.returncode, first.stdout, first.stderr) == (
        0,
        "applied 0001_audit_events, 0002_jobs, 0003_job_logs, 0004_job_logs_item\n",
        "",
    )
    again = procjob("db", "migrate", env={"PROCJOB_DATABASE_URL": database})
    assert (again.returncode, again.stdout) == (0, "audit schema is up to date\n")


def test_cli_history_prints_the_attempt_table_of_a_deleted_job(filled: str, tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(filled + "\n")
    out = procjob("history", "thumbs", "-n", "media", env={"PROCJOB_DATABASE_URL_FILE": str(secret)})
    assert (out.returncode, out.stderr) == (0, "")
    lines = out.stdout.splitlines()
    assert lines[0] == (f"processingjob media/thumbs uid {UID}: Succeeded (Completed), deleted 2026-05-01T11:00:00Z")
    assert lines[2].split() == ["STAGE", "ATTEMPT", "POD", "START", "END", "DURATION", "EXIT", "REASON"]
    assert [" ".join(line.split()) for line in lines[3:]] == [
        "fetch 1 thumbs-5f0c-fetch-1 2026-05-01T10:00:01Z 2026-05-01T10:00:04Z 3s 0 Completed",
        "resize 1 thumbs-5f0c-resize-1 2026-05-01T10:00:05Z 2026-05-01T10:00:19Z 14s 137 OOMKilled",
        "resize 2 thumbs-5f0c-resize-2 2026-05-01T10:00:20Z 2026-05-01T10:02:20Z 2m00s - StartupTimeout",
        "resize 3 thumbs-5f0c-resize-3 2026-05-01T10:02:22Z 2026-05-01T10:02:30Z 8s 0 Completed",
    ]
    header = lines[2]
    for line in lines[3:]:
        assert line[header.index("EXIT") - 1] == " "


async def test_cli_history_json_is_the_history_document(filled: str, store: AuditStore) -> None:
    out = procjob("history", "thumbs", "-n", "media", "-o", "json", "--database-url", filled)
    assert out.returncode == 0
    assert json.loads(out.stdout) == await history_document(store, "media", "thumbs")
    by_uid = procjob("history", "--uid", UID, "-o", "json", "--database-url", filled)
    assert json.loads(by_uid.stdout) == json.loads(out.stdout)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param(
            ("history", "nope", "-n", "media"),
            "procjob: error: no history for processingjob media/nope",
            id="an unknown name",
        ),
        pytest.param(
            ("history", "thumbs", "-n", "other", "--uid", UID),
            "procjob: error: no history for processingjob other/thumbs",
            id="a uid that belongs to another job",
        ),
    ],
)
def test_cli_unknown_job_is_one_line_and_exit_1(filled: str, args: tuple[str, ...], line: str) -> None:
    out = procjob(*args, "--database-url", filled)
    assert (out.returncode, out.stdout, out.stderr) == (1, "", line + "\n")


def test_cli_without_a_database_names_the_variable() -> None:
    out = procjob("history", "thumbs")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "PROCJOB_DATABASE_URL" in out.stderr


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda dsn, pw: dsn.replace(pw, pw[::-1]), id="a wrong password"),
        pytest.param(lambda dsn, pw: dsn.removeprefix("postgresql://"), id="a DSN without scheme"),
    ],
)
def test_cli_bad_dsn_is_one_redacted_line_and_exit_2(
    database: str, postgres: PostgresCluster, bad: Callable[[str, str], str]
) -> None:
    out = procjob("db", "migrate", "--database-url", bad(database, postgres.password))
    assert out.returncode == 2
    assert out.stderr.startswith("procjob: error: ")
    assert out.stderr.count("\n") == 1
    assert postgres.password not in out.stderr
    assert postgres.password[::-1] not in out.stderr


def test_cli_with_the_database_stopped_exits_1_with_a_redacted_line(
    filled: str, restart_after: PostgresCluster
) -> None:
    restart_after.stop()
    for args in (("history", "thumbs", "-n", "media"), ("db", "migrate")):
        out = procjob(*args, env={"PROCJOB_DATABASE_URL": filled})
        assert out.returncode == 1, out.stderr
        assert out.stderr.count("\n") == 1, out.stderr
        assert "Connection refused" in out.stderr
        assert "postgresql://postgres:***@127.0.0.1:" in out.stderr
        assert restart_after.password not in out.stderr


# -------------------------------------------------- hardening: one poisoned job, the relay, ping


def poisoned_job() -> ProcessingJob:
    """A fetch stage with a bearer token and a `with` nested 600 deep (spec.to_api() gives up)."""
    base = make_job(spec_of({"name": "fetch", "uses": "fetch", "with": {"url": "https://e.org"}}), uid=POISONED)
    assert base.spec is not None
    nested: Any = "leaf"
    for _ in range(600):
        nested = {"k": nested}
    params = {"url": "https://e.org", "headers": {"Authorization": "Bearer s3cr3t"}, "deep": nested}
    stage = base.spec.stages[0].model_copy(update={"with_": params})
    return dataclasses.replace(base, spec=base.spec.model_copy(update={"stages": [stage]}))


POISONED = "bad00000-0000-4000-8000-000000000001"
GOOD = "900d0000-0000-4000-8000-000000000002"
POISON = [
    AuditEntry(seq=1, type="AttemptSucceeded", time=T0, detail={"outputs": json.loads('{"k":"\\ud800"}')}),
    AuditEntry(seq=2, type="AttemptFailed", time=T0, message="exit\x00 1", detail={"outputs": {"n": float("nan")}}),
    AuditEntry(seq=3, type="AttemptFailed", time=T0, detail={"log": "y" * 5_000_000}),
]


def relay_for(store: AuditStore) -> tuple[AuditRelay, Metrics]:
    metrics = Metrics()
    return AuditRelay(store, WorkQueue(), metrics, lambda: datetime.now(UTC)), metrics


async def test_a_poisoned_jobs_rows_land_degraded_and_marked_next_to_a_good_jobs(
    store: AuditStore, database: str
) -> None:
    relay, metrics = relay_for(store)
    relay.submit(poisoned_job(), POISON)
    relay.submit(make_job(name="good", uid=GOOD), [AuditEntry(seq=1, type="JobStarted", time=T0)])
    await relay.flush()
    assert (relay.confirmed(POISONED), relay.confirmed(GOOD)) == (3, 1), "every record written, none lost"
    assert metrics.registry.get_sample_value("procjob_audit_up") == 1
    got = dict(rows(database, "SELECT seq, detail FROM audit_events WHERE job_uid = %s", [POISONED]))
    assert got[1]["outputs"] == {"k": "\ufffd"}
    assert got[2]["outputs"] == {"n": "NaN"}
    assert len(json.dumps(got[3])) < 100_000
    assert all(detail[DEGRADED_KEY] for detail in got.values())
    history = await store.history_by_uid(POISONED)
    assert history is not None, "the poisoned job's history still reads back through the models"
    assert history.events[1].message == "exit\ufffd 1"
    assert history.job is not None
    spec = history.job.spec
    assert spec["stages"][0]["with"]["headers"] == {"Authorization": "<redacted>"}
    assert "s3cr3t" not in json.dumps(spec)
    assert await store.history_by_uid(GOOD) is not None


async def test_rows_postgres_refuses_are_quarantined_and_the_good_jobs_rows_land(
    store: AuditStore, database: str
) -> None:
    relay, metrics = relay_for(store)
    beyond_bigint = AuditEntry(seq=2**70, type="JobStarted", time=T0)  # no sanitising can fix a key
    relay.submit(make_job(name="refused", uid=POISONED), [beyond_bigint])
    relay.submit(make_job(name="good", uid=GOOD), [AuditEntry(seq=1, type="JobStarted", time=T0)])
    await relay.flush()
    assert rows(database, "SELECT job_uid, seq FROM audit_events") == [(GOOD, 1)]
    assert relay.confirmed(GOOD) == 1
    problem = relay.problem(POISONED)
    assert problem is not None
    assert "out of range" in problem
    assert relay.backlog == 1, "the refused record stays pending"
    assert metrics.registry.get_sample_value("procjob_audit_quarantined_jobs") == 1
    assert metrics.registry.get_sample_value("procjob_audit_up") == 1


async def test_history_redacts_a_spec_stored_before_redaction_existed(store: AuditStore, database: str) -> None:
    spec = {"stages": [{"name": "r", "image": "i", "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}
    with psycopg.connect(database) as conn:  # a row as an older operator wrote it
        conn.execute(
            "INSERT INTO jobs (uid, namespace, name, spec, state, created_at)"
            " VALUES (%s, 'media', 'old', %s, 'Running', %s)",
            [UID, json.dumps(spec), T0],
        )
    history = await store.history_by_uid(UID)
    assert history is not None
    assert history.job is not None
    assert history.job.spec["stages"][0]["env"] == [{"name": "DB_PASSWORD", "value": "<redacted>"}]


async def test_ping_answers_while_up_and_raises_unavailable_while_down(
    store: AuditStore, restart_after: PostgresCluster
) -> None:
    await store.ping()
    restart_after.stop()
    with pytest.raises(AuditUnavailable):
        await store.ping()
