"""The audit relay: status outbox -> PostgreSQL, exactly once, one job's trouble kept to that job.

Reconciles `submit` the pending entries of a job's status (already durable in the API server).
One background task batches submissions from all jobs into one insert
(`INSERT … ON CONFLICT (job_uid, seq) DO NOTHING`) and one upsert of the jobs' summaries, then
remembers per job the highest sequence number PostgreSQL confirmed. The next status write of that
job trims its outbox up to there. A crash after the insert and before the trim only repeats
inserts, which the key absorbs.

Failures, by whose they are:

- PostgreSQL unreachable, slow, out of resources (`AuditUnavailable`, or an `AuditError` whose
  SQLSTATE is not a data error): everyone's. The batch is kept (it is in status anyway) and
  retried with backoff; jobs keep running until their outbox reaches its bound.
- Anything else (PostgreSQL refusing the data, SQLSTATE classes 22/23/54, or an exception of our
  own code): possibly one job's. The batch is retried job by job; the jobs that still fail are
  quarantined: their entries stay pending and are retried alone with a long backoff, the job's
  `problem()` says why (the reconciler shows it on the job), `procjob_audit_quarantined_jobs`
  counts them, the log names each job once. Everyone else's audit flows.
- An unexpected exception in the loop itself is logged, counted in
  `procjob_loop_errors_total{loop="audit-relay"}`, and the loop goes on: `run()` only ends when
  cancelled.

`procjob_audit_up` is measured, never assumed: 1 after a write or a probe (`SELECT 1` when idle for
`probe_interval`) succeeded, 0 after one failed; unset (0) until the first measure.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from procjob.adapters.audit import AuditError, AuditUnavailable, JobSummary
from procjob.adapters.metrics import Metrics
from procjob.controller.queue import WorkQueue
from procjob.controller.summaries import summary_of
from procjob.core.sanitize import clean_text
from procjob.core.timefmt import utc
from procjob.models.audit import AuditEntry, AuditRecord
from procjob.models.job import ProcessingJob

log = logging.getLogger("procjob.audit")

LOOP = "audit-relay"
BATCH_ROWS = 2000
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # PostgreSQL unavailable: everyone waits
QUARANTINE_DELAYS = (30.0, 60.0, 120.0, 300.0, 600.0)  # one job's rows refused: that job waits
QUARANTINED_PER_TURN = 10  # quarantined jobs retried (alone) per turn, so they cannot crowd others
PROBE_INTERVAL = 20.0
LOOP_ERROR_DELAY = 1.0
PROBLEM_CHARS = 512
DATA_SQLSTATE_CLASSES = ("22", "23", "54")  # data exception, integrity violation, program limit

Item = tuple[ProcessingJob, list[AuditEntry]]


class AuditSink(Protocol):
    """What the relay needs of the store (AuditStore; a fake in unit tests)."""

    async def insert(self, records: Sequence[AuditRecord]) -> int: ...
    async def upsert_jobs(self, jobs: Sequence[JobSummary]) -> int: ...
    async def ping(self) -> None: ...


@dataclass(frozen=True)
class Quarantine:
    """A job whose rows PostgreSQL (or our row building) refused: retried alone from `until` on."""

    key: str
    error: str
    failures: int
    until: datetime


def is_job_specific(exc: BaseException) -> bool:
    """Could this failure be one job's? Data refused by PostgreSQL, or our own code failing.

    Connection-level trouble (unavailable, closed store, missing schema, auth) is everyone's.
    """
    if isinstance(exc, AuditUnavailable):
        return False
    if isinstance(exc, AuditError):
        return (exc.sqlstate or "")[:2] in DATA_SQLSTATE_CLASSES
    return True


class AuditRelay:
    def __init__(
        self,
        store: AuditSink,
        queue: WorkQueue,
        metrics: Metrics,
        clock: Callable[[], datetime],
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        quarantine_delays: Sequence[float] = QUARANTINE_DELAYS,
        probe_interval: float = PROBE_INTERVAL,
        crash_after_insert: bool = False,
    ) -> None:
        self.store = store
        self.crash_after_insert = crash_after_insert  # a failpoint for the crash tests
        self.queue = queue
        self.metrics = metrics
        self.clock = clock
        self.retry_delays = tuple(retry_delays)
        self.quarantine_delays = tuple(quarantine_delays)
        self.probe_interval = probe_interval
        self._confirmed: dict[str, int] = {}
        self._waiting: dict[str, Item] = {}
        self._quarantine: dict[str, Quarantine] = {}
        self._failures = 0  # consecutive everyone's failures
        self._retry_at: datetime | None = None  # no batch before this (PostgreSQL unavailable)
        self._measured_at: datetime | None = None  # the last write or probe, whatever its outcome
        self._up: bool | None = None  # its outcome (None: nothing measured yet)
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------------ the reconciler's side

    def confirmed(self, uid: str) -> int:
        return self._confirmed.get(uid, 0)

    def forget(self, uid: str) -> None:
        self._confirmed.pop(uid, None)
        self._waiting.pop(uid, None)
        if self._quarantine.pop(uid, None) is not None:
            self.metrics.audit_quarantined.set(len(self._quarantine))
        self.metrics.audit_backlog.set(self.backlog)

    def submit(self, job: ProcessingJob, pending: list[AuditEntry]) -> None:
        done = self.confirmed(job.meta.uid)
        entries = [e for e in pending if e.seq > done]
        if not entries:
            return
        self._waiting[job.meta.uid] = (job, entries)  # the latest status holds every earlier entry
        self.metrics.audit_backlog.set(self.backlog)
        self._wake.set()

    def problem(self, uid: str) -> str | None:
        """Why this job's audit records are not being written (None: no problem of its own).

        For the job's status/Event; the entries stay pending in its outbox meanwhile."""
        found = self._quarantine.get(uid)
        if found is None:
            return None
        return (
            f"its audit records could not be written to PostgreSQL ({found.error}); they stay pending in "
            "status.audit and are retried every few minutes; other jobs are not affected"
        )

    @property
    def backlog(self) -> int:
        return sum(len(e) for _, e in self._waiting.values())

    # --------------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        """Forever (until cancelled): wait for work or a timer, write, probe when idle."""
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("audit relay: unexpected error; the relay goes on")
                self.metrics.loop_errors.labels(loop=LOOP).inc()
                await asyncio.sleep(LOOP_ERROR_DELAY)

    async def run_once(self) -> None:
        """One turn: sleep until there is something to do, do it."""
        timeout = self._seconds_to_next()
        if timeout > 0:
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._wake.clear()
        if not await self.flush() and self._probe_due():
            await self.probe()

    async def flush(self) -> bool:
        """Write what is due now: one batch of the waiting jobs, then quarantined jobs whose time
        has come, each alone. True when anything was attempted."""
        attempted = False
        if self._batch_due():
            batch = self._take()
            if batch:
                attempted = True
                await self._deliver(batch)
        now = self.clock()
        due = [uid for uid, q in self._quarantine.items() if q.until <= now and uid in self._waiting]
        for uid in due[:QUARANTINED_PER_TURN]:
            if self._backing_off() or uid not in self._waiting:
                break  # PostgreSQL went away meanwhile
            attempted = True
            await self._deliver({uid: self._waiting.pop(uid)})
        return attempted

    def _restore(self, batch: dict[str, Item]) -> None:
        """Put back what a write did not confirm, whatever interrupted it (a newer submission of
        the same job wins: the latest status holds every earlier entry)."""
        for uid, item in batch.items():
            if max(e.seq for e in item[1]) > self.confirmed(uid):
                self._waiting.setdefault(uid, item)
        self.metrics.audit_backlog.set(self.backlog)

    async def probe(self) -> None:
        """Measure `procjob_audit_up` while there is nothing to write."""
        try:
            await self.store.ping()
        except Exception as exc:
            if self._up is not False:
                log.warning("audit: PostgreSQL does not answer (%s)", exc)
            self._measured(up=False)
            return
        self._measured(up=True)

    # ------------------------------------------------------------------------------- internals

    def _seconds_to_next(self) -> float:
        """Until the next batch, quarantine retry or probe is due (0: now), at most probe_interval."""
        if self._measured_at is None or self._batch_due():
            return 0.0
        now = self.clock()
        times = [self._measured_at + timedelta(seconds=self.probe_interval)]
        resume = self._retry_at if self._backing_off() else None
        if resume is not None:
            times.append(resume)
        times += [max(q.until, resume or q.until) for uid, q in self._quarantine.items() if uid in self._waiting]
        return max(0.0, min(self.probe_interval, (min(times) - now).total_seconds()))

    def _backing_off(self) -> bool:
        """PostgreSQL was unavailable at the last write and its retry delay is not over."""
        return self._retry_at is not None and self.clock() < self._retry_at

    def _batch_due(self) -> bool:
        return not self._backing_off() and any(uid not in self._quarantine for uid in self._waiting)

    def _probe_due(self) -> bool:
        if self._measured_at is None:
            return True
        return self.clock() >= self._measured_at + timedelta(seconds=self.probe_interval)

    def _measured(self, *, up: bool) -> None:
        self._measured_at = self.clock()
        self._up = up
        self.metrics.audit_up.set(1 if up else 0)

    def _take(self) -> dict[str, Item]:
        batch: dict[str, Item] = {}
        rows = 0
        for uid in list(self._waiting):
            if rows >= BATCH_ROWS:
                break
            if uid in self._quarantine:
                continue
            item = self._waiting.pop(uid)
            batch[uid] = item
            rows += len(item[1])
        return batch

    async def _deliver(self, batch: dict[str, Item]) -> None:
        """Write a batch; on a failure that may be one job's, write it job by job. Whatever happens,
        what was not confirmed is put back."""
        try:
            try:
                await self._write(batch)
            except Exception as exc:
                if not is_job_specific(exc):
                    self._restore(batch)
                    self._unavailable(exc)
                elif len(batch) == 1:
                    ((uid, (job, _)),) = batch.items()
                    self._quarantined(uid, job.meta.key, exc)
                else:
                    log.warning("audit: a batch of %d jobs was refused (%s); writing job by job", len(batch), exc)
                    await self._isolate(batch)
                return
            self._available()
        finally:
            self._restore(batch)

    async def _isolate(self, batch: dict[str, Item]) -> None:
        for uid, item in batch.items():
            try:
                await self._write({uid: item})
            except Exception as exc:
                if not is_job_specific(exc):
                    self._restore(batch)
                    self._unavailable(exc)
                    return
                self._quarantined(uid, item[0].meta.key, exc)
                continue
            self._available()

    async def _write(self, batch: dict[str, Item]) -> None:
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
            self.metrics.audit_lag.observe(max(0.0, (now - utc(record.entry.time)).total_seconds()))
        self.metrics.audit_inserted.inc(inserted)
        for uid, (job, entries) in batch.items():
            self._confirmed[uid] = max(self.confirmed(uid), *(e.seq for e in entries))
            self.queue.add(job.meta.key)
            if self._quarantine.pop(uid, None) is not None:
                log.info("audit: the records of %s were written; it is out of quarantine", job.meta.key)
                self.metrics.audit_quarantined.set(len(self._quarantine))
        self.metrics.audit_backlog.set(self.backlog)

    def _available(self) -> None:
        if self._failures:
            log.info("audit: PostgreSQL is back; backlog drained")
        self._failures = 0
        self._retry_at = None
        self._measured(up=True)

    def _unavailable(self, exc: Exception) -> None:
        """Everyone's failure: back off (the caller has put the batch back, so the log counts it)."""
        self.metrics.audit_errors.inc()
        self._measured(up=False)
        delay = self.retry_delays[min(self._failures, len(self.retry_delays) - 1)]
        self._failures += 1
        self._retry_at = self.clock() + timedelta(seconds=delay)
        if self._failures == 1 or self._failures % 20 == 0:
            log.warning("audit: PostgreSQL unavailable (%s); %d records kept; retrying", exc, self.backlog)

    def _quarantined(self, uid: str, key: str, exc: Exception) -> None:
        previous = self._quarantine.get(uid)
        failures = 1 if previous is None else previous.failures + 1
        delay = self.quarantine_delays[min(failures - 1, len(self.quarantine_delays) - 1)]
        error = clean_text(" ".join(f"{type(exc).__name__}: {exc}".split()), 300)
        self._quarantine[uid] = Quarantine(key, error, failures, self.clock() + timedelta(seconds=delay))
        self.metrics.audit_errors.inc()
        self.metrics.audit_quarantined.set(len(self._quarantine))
        if previous is None:
            self.queue.add(key)  # its next reconcile shows `problem()` on the job
            self.metrics.audit_quarantines.inc()
            log.warning("audit: %s: records refused (%s); quarantined, retried alone every few minutes", key, error)
