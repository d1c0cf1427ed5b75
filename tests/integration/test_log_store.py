"""Archived pod logs (`job_logs`) against a real PostgreSQL: the migrations, bytes kept as they are,
the first archive winning, each item of a fanned-out stage its own attempt, reading by name or UID,
the history's index, and retention following the `jobs` rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from procjob.adapters.audit import ArchivedLog, AuditStore, JobSummary, load_migrations, migrate
from procjob.adapters.audit import migrations as migrations_module
from tests.integration.test_audit_store import record, rows

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
UID = "5f0c1a2e-7d1b-4c1e-9a57-0c8f3b2d9e10"
OLDER_UID = "00000000-7d1b-4c1e-9a57-0c8f3b2d9e10"


def log(
    stage: str = "work",
    attempt: int = 1,
    container: str = "main",
    uid: str = UID,
    item: int | None = None,
    **fields: object,
) -> ArchivedLog:
    where = stage if item is None else f"{stage}-i{item}"
    values: dict[str, object] = {
        "job_uid": uid,
        "namespace": "media",
        "name": "thumbs",
        "stage": stage,
        "item": item,
        "attempt": attempt,
        "container": container,
        "pod_name": f"thumbs-{where}-a{attempt}-5f0c1a2e",
        "pod_uid": f"pod-{where}-{attempt}",
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
    assert {"0003_job_logs", "0004_job_logs_item"} <= {m.name for m in load_migrations()}
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
    assert "item" in columns


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


async def test_each_item_of_a_fanned_out_stage_keeps_its_own_attempts(store: AuditStore) -> None:
    """Item 0's attempt 1 and item 5's attempt 1 are two attempts (they once collided on the key, and
    only the first item's logs were kept)."""
    assert await store.save_logs([log("thumbs", item=0, content=b"item 0\n")]) == 1
    assert not await store.logs_archived(UID, "thumbs", 1, 5)  # item 0's row says nothing of item 5
    assert await store.save_logs([log("thumbs", item=5, content=b"item 5\n")]) == 1
    assert await store.logs_archived(UID, "thumbs", 1, 0)
    assert await store.logs_archived(UID, "thumbs", 1, 5)
    assert not await store.logs_archived(UID, "thumbs", 1, 1)
    assert not await store.logs_archived(UID, "thumbs", 1)  # the stage without an item: no such attempt
    assert not await store.logs_archived(UID, "thumbs", 2, 0)
    for item in (0, 5):
        found = await store.read_log("media", "thumbs", "thumbs", 1, "main", item=item)
        assert found is not None
        assert (found.content, found.item, found.pod_name) == (
            f"item {item}\n".encode(),
            item,
            f"thumbs-thumbs-i{item}-a1-5f0c1a2e",
        )
    assert await store.read_log("media", "thumbs", "thumbs", 1, "main") is None
    # The first archive of an item's attempt still wins.
    assert await store.save_logs([log("thumbs", item=5, content=b"again\n")]) == 0
    again = await store.read_log("media", "thumbs", "thumbs", 1, "main", item=5)
    assert again is not None
    assert again.content == b"item 5\n"


async def test_a_stage_without_items_still_has_one_row_per_attempt(store: AuditStore, database: str) -> None:
    """NULL items count as one value: a repeat of a stage's attempt without items changes nothing."""
    assert await store.save_logs([log(content=b"first\n")]) == 1
    assert await store.save_logs([log(content=b"second\n")]) == 0
    assert await store.save_logs([log(item=0, content=b"an item\n")]) == 1
    assert rows(database, "SELECT item, content FROM job_logs ORDER BY item NULLS FIRST") == [
        (None, b"first\n"),
        (0, b"an item\n"),
    ]


def test_an_item_below_zero_is_refused_by_the_table(database: str) -> None:
    migrate(database)
    with psycopg.connect(database) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO job_logs (job_uid, stage, item, attempt, container, namespace, name, pod_name, pod_uid)"
            " VALUES ('u', 's', -1, 1, 'main', 'media', 'thumbs', 'p', 'pu')"
        )


async def test_the_item_migration_keeps_the_rows_of_a_database_at_0003(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_0003 = tuple(m for m in load_migrations() if m.version <= 3)
    with monkeypatch.context() as patched:
        patched.setattr(migrations_module, "load_migrations", lambda: at_0003)
        assert migrate(database) == ["0001_audit_events", "0002_jobs", "0003_job_logs"]
    with psycopg.connect(database) as conn:
        for attempt, content in ((1, b"one\n"), (2, b"two\n")):
            conn.execute(
                "INSERT INTO job_logs (job_uid, stage, attempt, container, namespace, name, pod_name, pod_uid,"
                " content, finished_at) VALUES (%s, 'work', %s, 'main', 'media', 'thumbs', %s, 'pu', %s, %s)",
                [UID, attempt, f"thumbs-work-a{attempt}-5f0c1a2e", content, T0 + timedelta(seconds=attempt)],
            )
    assert migrate(database) == ["0004_job_logs_item"]
    assert rows(database, "SELECT attempt, item, content FROM job_logs ORDER BY attempt") == [
        (1, None, b"one\n"),
        (2, None, b"two\n"),
    ]
    async with await AuditStore.open(database, connect_timeout=2) as store:
        assert await store.logs_archived(UID, "work", 1)
        assert await store.logs_archived(UID, "work", 2)
        assert not await store.logs_archived(UID, "work", 1, 0)
        assert await store.save_logs([log(content=b"a repeat\n")]) == 0  # the old row still wins
        assert await store.save_logs([log(item=0, content=b"an item\n")]) == 1
        found = await store.read_log("media", "thumbs", "work", 1, "main")
        assert found is not None
        assert (found.content, found.item) == (b"one\n", None)
        index = await store.log_index("media", "thumbs")
    assert index is not None
    assert [(e.stage, e.item, e.attempt) for e in index.logs] == [("work", None, 1), ("work", 0, 1), ("work", None, 2)]


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
