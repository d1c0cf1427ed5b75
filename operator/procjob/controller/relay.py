"""The audit relay: status outbox -> PostgreSQL, exactly once.

Reconciles `submit` the pending entries of a job's status (already durable in the API server).
One background task batches submissions from all jobs into a single transaction
(`INSERT … ON CONFLICT (job_uid, seq) DO NOTHING`), then remembers per job the highest sequence
number PostgreSQL confirmed. The next status write of that job trims its outbox up to there. A
crash after the insert and before the trim only repeats inserts, which the key absorbs. While
PostgreSQL is down, submissions are kept (they are in status anyway) and retried with backoff;
jobs keep running until their outbox reaches its bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import datetime

from procjob.adapters.audit import AuditError, AuditStore, JobSummary
from procjob.adapters.metrics import Metrics
from procjob.controller.queue import WorkQueue
from procjob.models.audit import AuditEntry, AuditRecord
from procjob.models.job import ProcessingJob
from procjob.models.status import ConditionStatus

log = logging.getLogger("procjob.audit")

BATCH_ROWS = 2000
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)


def summary_of(job: ProcessingJob, entries: list[AuditEntry]) -> JobSummary:
    status = job.status
    cond = next((c for c in status.conditions if c.type == "Succeeded"), None)
    deleted = next((e.time for e in entries if e.type == "JobDeleted"), None)
    return JobSummary(
        uid=job.meta.uid,
        namespace=job.meta.namespace,
        name=job.meta.name,
        spec=job.spec.to_api() if job.spec is not None else {},
        state=status.phase.value if status.phase else "Pending",
        reason=cond.reason if cond is not None else "",
        created_at=job.meta.creation_time,
        started_at=status.start_time,
        finished_at=status.completion_time if cond is not None and cond.status != ConditionStatus.UNKNOWN else None,
        attempts=status.attempts,
        deleted_at=deleted,
        last_seq=max(e.seq for e in entries),
    )


class AuditRelay:
    def __init__(
        self,
        store: AuditStore,
        queue: WorkQueue,
        metrics: Metrics,
        clock: Callable[[], datetime],
        *,
        crash_after_insert: bool = False,
    ) -> None:
        self.store = store
        self.crash_after_insert = crash_after_insert  # a failpoint for the crash tests
        self.queue = queue
        self.metrics = metrics
        self.clock = clock
        self._confirmed: dict[str, int] = {}
        self._waiting: dict[str, tuple[ProcessingJob, list[AuditEntry]]] = {}
        self._wake = asyncio.Event()
        self.metrics.audit_up.set(1)

    def confirmed(self, uid: str) -> int:
        return self._confirmed.get(uid, 0)

    def forget(self, uid: str) -> None:
        self._confirmed.pop(uid, None)
        self._waiting.pop(uid, None)

    def submit(self, job: ProcessingJob, pending: list[AuditEntry]) -> None:
        done = self.confirmed(job.meta.uid)
        entries = [e for e in pending if e.seq > done]
        if not entries:
            return
        self._waiting[job.meta.uid] = (job, entries)  # the latest status holds every earlier entry
        self.metrics.audit_backlog.set(sum(len(e) for _, e in self._waiting.values()))
        self._wake.set()

    @property
    def backlog(self) -> int:
        return sum(len(e) for _, e in self._waiting.values())

    async def run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = self._take()
            if not batch:
                continue
            try:
                await self._flush(batch)
            except AuditError as exc:
                for uid, item in batch.items():
                    self._waiting.setdefault(uid, item)  # a newer submission, if any, supersedes
                self.metrics.audit_errors.inc()
                self.metrics.audit_up.set(0)
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning("audit: PostgreSQL unavailable (%s); %d records kept; retrying", exc, self.backlog)
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            if failures:
                log.info("audit: PostgreSQL is back; backlog drained")
            failures = 0
            self.metrics.audit_up.set(1)
            if self._waiting:
                self._wake.set()

    def _take(self) -> dict[str, tuple[ProcessingJob, list[AuditEntry]]]:
        batch: dict[str, tuple[ProcessingJob, list[AuditEntry]]] = {}
        rows = 0
        for uid in list(self._waiting):
            if rows >= BATCH_ROWS:
                break
            item = self._waiting.pop(uid)
            batch[uid] = item
            rows += len(item[1])
        return batch

    async def _flush(self, batch: dict[str, tuple[ProcessingJob, list[AuditEntry]]]) -> None:
        records = [
            AuditRecord(job_uid=uid, namespace=job.meta.namespace, name=job.meta.name, entry=entry)
            for uid, (job, entries) in batch.items()
            for entry in entries
        ]
        inserted = await self.store.insert(records)
        if self.crash_after_insert:
            log.error("failpoint audit-after-insert: exiting after inserting %d records", len(records))
            os._exit(137)
        await self.store.upsert_jobs([summary_of(job, entries) for job, entries in batch.values()])
        now = self.clock()
        for record in records:
            self.metrics.audit_lag.observe(max(0.0, (now - record.entry.time).total_seconds()))
        self.metrics.audit_inserted.inc(inserted)
        for uid, (job, entries) in batch.items():
            self._confirmed[uid] = max(self.confirmed(uid), *(e.seq for e in entries))
            self.queue.add(job.meta.key)
        self.metrics.audit_backlog.set(self.backlog)
