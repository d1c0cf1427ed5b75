"""Finished jobs do not pile up in etcd: ttlSecondsAfterFinished and the per-namespace cap delete
them, the audit finalizer still records JobDeleted, and the jobs table keeps their record."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.e2e.jobs import job, stage
from tests.e2e.test_audit import migrate
from tests.support.kube import Kube, wait_for

pytestmark = [pytest.mark.rig, pytest.mark.postgres]


def test_a_job_past_its_ttl_is_deleted_and_its_audit_record_kept(
    kube: Kube, namespace: str, operator: Any, database: str
) -> None:
    migrate(database)
    operator(namespace, env={"PROCJOB_DATABASE_URL": database})
    kube.create_job(namespace, job("short-lived", stage("a"), ttlSecondsAfterFinished=1))
    kube.create_job(namespace, job("kept", stage("a")))
    wait_for("the job past its TTL to be deleted", lambda: kube.job(namespace, "short-lived") is None, timeout=60)
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT state, deleted_at FROM jobs WHERE name = 'short-lived'").fetchone()
        types = [
            t
            for (t,) in conn.execute(
                "SELECT event_type FROM audit_events e JOIN jobs j ON j.uid = e.job_uid "
                "WHERE j.name = 'short-lived' ORDER BY seq"
            )
        ]
    assert row is not None
    assert row[0] == "Succeeded"
    assert row[1] is not None
    assert types[-1] == "JobDeleted"
    assert "JobSucceeded" in types
    kept = kube.job(namespace, "kept")
    assert kept is not None  # no TTL, no operator default: it stays


def test_the_oldest_finished_jobs_beyond_the_namespace_cap_are_deleted(
    kube: Kube, namespace: str, operator: Any
) -> None:
    operator(namespace, "--max-finished-jobs-per-namespace", "2")
    names = [f"done-{i}" for i in range(4)]
    for name in names:
        kube.create_job(namespace, job(name, stage("a")))

    def two_left() -> list[str] | None:
        left = sorted(b["metadata"]["name"] for b in kube.jobs(namespace))
        return left if len(left) == 2 else None

    left = wait_for("the cap to leave two finished jobs", two_left, timeout=90)
    assert all(name in names for name in left)
