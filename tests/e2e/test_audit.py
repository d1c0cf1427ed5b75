"""The audit of record under faults: PostgreSQL rows equal the transitions, exactly once.

An independent watcher collects every audit entry that ever appears in the jobs' status outbox
(each transition is written to status before anything else happens); at the end, PostgreSQL must
hold exactly those (job UID, seq, type) rows: per job 1..N without gap or duplicate.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.jobs import job, stage
from tests.integration.test_history_auth import reader
from tests.support.kube import Kube, Watcher, condition, wait_for
from tests.support.postgres import PostgresCluster
from tests.support.rig import Rig

pytestmark = [pytest.mark.rig, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]


def migrate(dsn: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "procjob.cli.main", "db", "migrate"],
        env={"PROCJOB_DATABASE_URL": dsn, "PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"},
        check=True,
        cwd=ROOT,
        capture_output=True,
    )


def flaky_jobs(kube: Kube, namespace: str, count: int, prefix: str = "audited") -> list[str]:
    names = []
    for i in range(count):
        name = f"{prefix}-{i}"
        kube.create_job(
            namespace,
            job(
                name,
                stage("flaky", rig={"fail_attempts": 1, "exit_code": 1, "run_seconds": 0.5}),
                stage("steady", rig={"run_seconds": 1}),
                retry={"limit": 2, "delaysSeconds": [1]},
            ),
        )
        names.append(name)
    return names


def outbox_entries(watcher: Watcher) -> dict[str, set[tuple[int, str]]]:
    seen: dict[str, set[tuple[int, str]]] = {}
    for event in watcher.events:
        meta = event.object["metadata"]
        audit = (event.object.get("status") or {}).get("audit") or {}
        for entry in audit.get("pending") or []:
            seen.setdefault(meta["uid"], set()).add((entry["seq"], entry["type"]))
    return seen


def rows(dsn: str) -> dict[str, list[tuple[int, str]]]:
    with psycopg.connect(dsn) as conn:
        result: dict[str, list[tuple[int, str]]] = {}
        for uid, seq, type_ in conn.execute("SELECT job_uid, seq, event_type FROM audit_events ORDER BY job_uid, seq"):
            result.setdefault(uid, []).append((seq, type_))
        return result


def all_finished(kube: Kube, namespace: str, count: int) -> Any:
    def check() -> list[dict[str, Any]] | None:
        bodies = kube.jobs(namespace)
        done = [b for b in bodies if condition(b).get("status") in ("True", "False")]
        return bodies if len(done) == count else None

    return check


def drained(kube: Kube, namespace: str) -> Any:
    def check() -> bool:
        return all(not ((b.get("status") or {}).get("audit") or {}).get("pending") for b in kube.jobs(namespace))

    return check


def assert_exact(dsn: str, watcher: Watcher, jobs: list[dict[str, Any]]) -> None:
    seen = outbox_entries(watcher)
    stored = rows(dsn)
    for body in jobs:
        uid = body["metadata"]["uid"]
        last = body["status"]["audit"]["lastSeq"]
        got = stored.get(uid, [])
        assert [seq for seq, _ in got] == list(range(1, last + 1)), f"{body['metadata']['name']}: gap or duplicate"
        assert set(got) == seen.get(uid, set()), f"{body['metadata']['name']}: rows differ from the transitions seen"
        assert body["status"]["audit"]["flushedSeq"] == last


def test_rows_equal_the_transitions_after_a_run_with_retries(
    kube: Kube, namespace: str, operator: Any, database: str, rig: Rig
) -> None:
    migrate(database)
    watcher = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs").start()
    op = operator(namespace, env={"PROCJOB_DATABASE_URL": database})
    flaky_jobs(kube, namespace, 5)
    jobs = wait_for("every job to finish", all_finished(kube, namespace, 5), timeout=90)
    wait_for("the outboxes to drain", drained(kube, namespace), timeout=30)
    watcher.stop()
    jobs = kube.jobs(namespace)
    assert all(condition(b)["reason"] == "Succeeded" for b in jobs)
    assert_exact(database, watcher, jobs)
    with psycopg.connect(database) as conn:
        states = dict(conn.execute("SELECT name, state FROM jobs").fetchall())
    assert states == {b["metadata"]["name"]: "Succeeded" for b in jobs}
    assert "procjob_audit_records_total" in op.metrics()

    history = subprocess.run(
        [sys.executable, "-m", "procjob.cli.main", "history", "audited-0", "-n", namespace],
        env={"PROCJOB_DATABASE_URL": database, "PYTHONPATH": str(ROOT / "operator")},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    lines = history.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STAGE"))
    assert lines[header].split()[:3] == ["STAGE", "ATTEMPT", "POD"]
    assert len([line for line in lines[header + 1 :] if line.startswith("flaky")]) == 2
    path = f"/api/v1/namespaces/{namespace}/processingjobs/audited-0/history"
    assert op.get(path).status_code == 401  # the history is for those who may read the job
    served = op.get(path, token=reader(rig, namespace, "history-reader"))
    assert served.status_code == 200
    assert len(served.json()["attempts"]) == 3


def test_postgres_down_mid_run_then_back_loses_nothing(
    kube: Kube, namespace: str, operator: Any, postgres: PostgresCluster
) -> None:
    dsn = postgres.dsn_for(postgres.create_database())
    migrate(dsn)
    watcher = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs").start()
    operator(namespace, env={"PROCJOB_DATABASE_URL": dsn})
    flaky_jobs(kube, namespace, 4)
    wait_for("some transitions", lambda: rows(dsn))
    postgres.stop()
    try:
        # jobs keep progressing while the audit database is down
        jobs = wait_for("every job to finish", all_finished(kube, namespace, 4), timeout=90)
        assert any(b["status"]["audit"].get("pending") for b in jobs), "expected a backlog while down"
    finally:
        postgres.start()
    wait_for("the backlog to drain", drained(kube, namespace), timeout=60)
    watcher.stop()
    assert_exact(dsn, watcher, kube.jobs(namespace))


def test_operator_killed_while_postgres_is_down_loses_nothing(
    kube: Kube, namespace: str, operator: Any, postgres: PostgresCluster
) -> None:
    dsn = postgres.dsn_for(postgres.create_database())
    migrate(dsn)
    watcher = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs").start()
    op = operator(namespace, env={"PROCJOB_DATABASE_URL": dsn})
    flaky_jobs(kube, namespace, 4)
    wait_for("some transitions", lambda: rows(dsn))
    postgres.stop()
    try:
        wait_for("a backlog in status", lambda: not drained(kube, namespace)(), timeout=30)
        op.kill()
        op.start()  # starts although PostgreSQL is down
        wait_for("every job to finish", all_finished(kube, namespace, 4), timeout=90)
    finally:
        postgres.start()
    wait_for("the backlog to drain", drained(kube, namespace), timeout=60)
    watcher.stop()
    assert_exact(dsn, watcher, kube.jobs(namespace))


def test_a_crash_between_insert_and_status_update_is_absorbed(
    kube: Kube, namespace: str, operator: Any, database: str
) -> None:
    migrate(database)
    watcher = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs").start()
    op = operator(namespace, env={"PROCJOB_DATABASE_URL": database, "PROCJOB_FAILPOINTS": "audit-after-insert"})
    flaky_jobs(kube, namespace, 2)
    wait_for("the failpoint to kill the operator", lambda: op.proc is not None and op.proc.poll() is not None)
    assert rows(database), "the insert before the crash was committed"
    op.env.pop("PROCJOB_FAILPOINTS")
    op.start()
    wait_for("every job to finish", all_finished(kube, namespace, 2), timeout=90)
    wait_for("the outboxes to drain", drained(kube, namespace), timeout=30)
    watcher.stop()
    assert_exact(database, watcher, kube.jobs(namespace))


def test_history_outlives_the_deleted_job(kube: Kube, namespace: str, operator: Any, database: str) -> None:
    migrate(database)
    operator(namespace, env={"PROCJOB_DATABASE_URL": database})
    kube.create_job(namespace, job("ephemeral", stage("only")))
    wait_for("the job to finish", lambda: condition(kube.job(namespace, "ephemeral")).get("status") == "True")
    kube.delete_job(namespace, "ephemeral")
    wait_for("the job to be gone (finalizer released)", lambda: kube.job(namespace, "ephemeral") is None, timeout=30)
    with psycopg.connect(database) as conn:
        types = [t for (t,) in conn.execute("SELECT event_type FROM audit_events ORDER BY seq")]
        deleted_at = conn.execute("SELECT deleted_at FROM jobs WHERE name = 'ephemeral'").fetchone()
    assert types[0] == "JobCreated"
    assert types[-1] == "JobDeleted"
    assert deleted_at is not None
    assert deleted_at[0] is not None
    out = subprocess.run(
        [sys.executable, "-m", "procjob.cli.main", "history", "ephemeral", "-n", namespace, "-o", "json"],
        env={"PROCJOB_DATABASE_URL": database, "PYTHONPATH": str(ROOT / "operator")},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert '"only"' in out.stdout
