"""PostgreSQL for the procjob run: a throw-away cluster, the audit schema, lag and exactness checks.

The cluster comes from tests.support.postgres (initdb in a temp dir, 127.0.0.1, a free port, fsync
off). The schema is applied with `procjob db migrate`, as an operator deployment would. Audit lag
is `recorded_at - occurred_at` per row (PostgreSQL's clock at insert minus the operator's at the
transition, same machine). Exactness, per job: seq is 1..lastSeq with no gap and no duplicate,
and the row count equals the job's `status.audit.lastSeq`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass

import psycopg
from tests.support.postgres import PostgresCluster, start_cluster

from bench.api import BenchError
from bench.rigctl import ROOT, tool


def start_postgres() -> PostgresCluster:
    try:
        return start_cluster()
    except BaseException as exc:  # pytest.fail() raises an exception outside pytest's hierarchy
        raise BenchError(f"PostgreSQL did not start: {exc}") from None


def stop_postgres(cluster: PostgresCluster) -> None:
    with contextlib.suppress(RuntimeError):
        cluster.stop("immediate")
    shutil.rmtree(cluster.root, ignore_errors=True)


def fresh_database(cluster: PostgresCluster) -> str:
    """A new database with the audit schema (`procjob db migrate`); returns its DSN."""
    dsn = cluster.dsn_for(cluster.create_database())
    env = {"PROCJOB_DATABASE_URL": dsn, "PYTHONPATH": str(ROOT / "operator"), "PATH": os.environ.get("PATH", "")}
    tool([sys.executable, "-m", "procjob.cli.main", "db", "migrate"], what="procjob db migrate", env=env)
    return dsn


@dataclass
class AuditCheck:
    jobs: int
    rows: int
    exact_jobs: int
    problems: list[str]
    lags: list[float]

    @property
    def exact(self) -> bool:
        return self.exact_jobs == self.jobs and not self.problems


def _rows_by_job(dsn: str, uids: list[str]) -> dict[str, list[int]]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        cursor = conn.execute(
            "SELECT job_uid, seq FROM audit_events WHERE job_uid = ANY(%s) ORDER BY job_uid, seq", [uids]
        )
        found: dict[str, list[int]] = {}
        for uid, seq in cursor:
            found.setdefault(str(uid), []).append(int(seq))
        return found


def wait_drained(dsn: str, last_seq: dict[str, int], timeout: float) -> float:
    """Wait until PostgreSQL holds at least lastSeq rows for every job; returns the seconds waited."""
    started = time.monotonic()
    uids = list(last_seq)
    while True:
        rows = _rows_by_job(dsn, uids)
        missing = sum(max(0, last_seq[u] - len(rows.get(u, []))) for u in uids)
        if missing == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise BenchError(f"the audit did not drain within {timeout:.0f}s: {missing} rows still missing")
        time.sleep(0.5)


def check(dsn: str, last_seq: dict[str, int]) -> AuditCheck:
    uids = list(last_seq)
    rows = _rows_by_job(dsn, uids)
    problems: list[str] = []
    exact = 0
    for uid in uids:
        got = rows.get(uid, [])
        expected = list(range(1, last_seq[uid] + 1))
        if got == expected:
            exact += 1
        elif len(problems) < 10:
            dup = len(got) - len(set(got))
            gaps = sorted(set(expected) - set(got))[:5]
            problems.append(f"job {uid}: {len(got)} rows for lastSeq {last_seq[uid]}, gaps {gaps}, duplicates {dup}")
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        lags = [
            float(lag)
            for (lag,) in conn.execute(
                "SELECT extract(epoch FROM recorded_at - occurred_at) FROM audit_events WHERE job_uid = ANY(%s)",
                [uids],
            )
        ]
    return AuditCheck(
        jobs=len(uids), rows=sum(len(r) for r in rows.values()), exact_jobs=exact, problems=problems, lags=lags
    )
