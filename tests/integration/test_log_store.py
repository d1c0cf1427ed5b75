"""Archived pod logs (`job_logs`) against a real PostgreSQL: the migration, bytes kept as they are,
the first archive winning, reading by name or UID, the history's index, and retention following the
`jobs` rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from procjob.adapters.audit import ArchivedLog, AuditStore, JobSummary, load_migrations, migrate
from tests.integration.test_audit_store import record, rows

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
UID = "5f0c1a2e-7d1b-4c1e-9a57-0c8f3b2d9e10"
OLDER_UID = "00000000-7d1b-4c1e-9a57-0c8f3b2d9e10"


def log(
    stage: str = "work", attempt: int = 1, container: str = "main", uid: str = UID, **fields: object
) -> ArchivedLog:
    values: dict[str, object] = {
        "job_uid": uid,
        "namespace": "media",
        "name": "thumbs",
        "stage": stage,
        "attempt": attempt,
        "container": container,
        "pod_name": f"thumbs-{stage}-a{attempt}-5f0c1a2e",
        "pod_uid": f"pod-{stage}-{attempt}",
        "finished_at": T0 + timedelta(seconds=attempt),
        **fields,
    }
    return ArchivedLog.model_validate(values)


@pytest.fixture
async def store(database: str) -> AsyncIterator[AuditStore]:
    async with await AuditStore.open(database, connect_timeout=2) as opened:
        await opened.migrate()
        yield opened


def test_the_migration_adds_job_logs(database: str) -> None:
    assert "0003_job_logs" in [m.name for m in load_migrations()]
    migrate(database)
    columns = [
        r[0]
        for r in rows(
            database,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'job_logs' ORDER BY ordinal_position",
        )
    ]
    assert columns[:9] == [
        "job_uid",
        "stage",
        "attempt",
        "container",
        "namespace",
        "name",
        "pod_name",
        "pod_uid",
        "content",
    ]


async def test_bytes_are_kept_as_they_are_nul_and_invalid_utf8_included(store: AuditStore) -> None:
    content = b"line 1\n\x00binary \xff\xfe tail\n"
    assert await store.save_logs([log(content=content, received_bytes=5000, truncated=True)]) == 1
    found = await store.read_log("media", "thumbs", "work", 1, "main")
    assert found is not None
    assert found.content == content
    assert (found.size, found.received_bytes, found.truncated, found.complete) == (len(content), 5000, True, True)
    assert found.finished_at == T0 + timedelta(seconds=1)
    assert found.archived_at is not None
    assert found.archived_at.tzinfo is not None


async def test_the_first_archive_of_an_attempt_wins(store: AuditStore) -> None:
    assert await store.save_logs([log(content=b"first\n")]) == 1
    assert await store.save_logs([log(content=b"second\n"), log(container="setup", content=b"init\n")]) == 1
    found = await store.read_log("media", "thumbs", "work", 1, "main")
    assert found is not None
    assert found.content == b"first\n"
    assert await store.logs_archived(UID, "work", 1)
    assert not await store.logs_archived(UID, "work", 2)
    assert await store.save_logs([]) == 0


async def test_text_columns_are_cleaned_and_an_error_row_has_no_content(store: AuditStore) -> None:
    error = 'container "main" in pod "p" is waiting to start:\x00 ' + "x" * 5000
    await store.save_logs([log(attempt=2, error=error, received_bytes=0)])
    found = await store.read_log("media", "thumbs", "work", 2, "main")
    assert found is not None
    assert found.content == b""
    assert found.size == 0
    assert found.error is not None
    assert "\x00" not in found.error
    assert len(found.error) <= 1024


async def test_the_index_lists_a_jobs_logs_without_content_oldest_first(store: AuditStore) -> None:
    await store.save_logs([log(attempt=2, content=b"b"), log(attempt=1, content=b"aa"), log("fetch", 1, content=b"")])
    index = await store.log_index("media", "thumbs")
    assert index is not None
    assert index.uid == UID
    assert [(entry.stage, entry.attempt, entry.size) for entry in index.logs] == [
        ("fetch", 1, 0),
        ("work", 1, 2),
        ("work", 2, 1),
    ]
    document = index.to_json_dict()
    assert document["logs"][1]["podName"] == "thumbs-work-a1-5f0c1a2e"
    assert "content" not in document["logs"][1]
    assert await store.log_index("media", "nobody") is None


async def test_a_reused_name_reads_the_latest_job_unless_a_uid_is_given(store: AuditStore) -> None:
    await store.insert([record(1, uid=OLDER_UID, second=-3600), record(1, uid=UID)])
    await store.save_logs([log(uid=OLDER_UID, content=b"old\n"), log(content=b"new\n")])
    latest = await store.read_log("media", "thumbs", "work", 1, "main")
    older = await store.read_log("media", "thumbs", "work", 1, "main", uid=OLDER_UID)
    assert latest is not None
    assert latest.content == b"new\n"
    assert older is not None
    assert older.content == b"old\n"
    # A UID of another job's name shows nothing under this one.
    assert await store.read_log("media", "other", "work", 1, "main", uid=UID) is None
    index = await store.log_index("media", "other", uid=UID)
    assert index is not None
    assert index.logs == ()


async def test_the_history_lists_the_archived_logs(store: AuditStore) -> None:
    await store.insert([record(1)])
    await store.save_logs([log(content=b"hello\n")])
    history = await store.history("media", "thumbs")
    assert history is not None
    assert [(entry.stage, entry.attempt, entry.container, entry.size) for entry in history.logs] == [
        ("work", 1, "main", 6)
    ]
    assert history.to_json_dict()["logs"][0]["container"] == "main"


async def test_the_history_does_not_fail_before_the_logs_migration(store: AuditStore, database: str) -> None:
    await store.insert([record(1)])
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP TABLE job_logs")
    history = await store.history("media", "thumbs")
    assert history is not None
    assert history.logs == ()
    assert len(history.events) == 1


async def test_deleting_a_jobs_row_deletes_its_logs(store: AuditStore, database: str) -> None:
    summary = JobSummary(uid=UID, namespace="media", name="thumbs", state="Succeeded", created_at=T0)
    await store.upsert_job(summary)
    await store.save_logs([log(content=b"a"), log(uid=OLDER_UID, content=b"b")])
    with psycopg.connect(database) as conn:
        conn.execute("DELETE FROM jobs WHERE uid = %s", [UID])
    assert rows(database, "SELECT job_uid FROM job_logs") == [(OLDER_UID,)]
