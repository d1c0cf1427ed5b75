"""The log archive: the tail of each finished attempt's container logs, into the audit database,
before podGC deletes the pod.

Reconciles hand every job's pods to `observe()`: a finished pod whose attempt is archived comes
back marked `log_archived` (the core's podGC then may delete it); a finished pod not yet archived
is taken in and archived in the background, off the reconcile path, by at most `workers` reads at
a time, so that a tenant's giant or slow log slows nobody else's job. Each read is bounded in
memory (`max_bytes` per container, procjob.adapters.podlogs), transfer and time. When the attempt
is stored, its job is queued so that podGC goes ahead at once.

What is archived is known from the database itself, which survives a restart: before reading a
log, the archive asks whether the attempt is stored already (a restarted operator reads no log
twice). In memory there is only what is pending and a bounded record of what is done.

Failures never block a job: the core deletes the pod anyway `wait_seconds` after the attempt
ended. Until then a failed read or write is counted (`procjob_log_archive_failures_total
{reason="error"}`), logged and retried with backoff; past it the attempt is given up
(`reason="abandoned"`). A log the API server says cannot be read (the container never ran, the
pod is gone) is stored as such (`error`, no content; `reason="unavailable"`): retrying would not
help. Attempts whose pods are deleted while still running (timeout, suspend, cancel) are not
archived: their pods are deleted at once to stop them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from procjob.adapters.audit import ArchivedLog, AuditSchemaMissing
from procjob.adapters.metrics import Metrics
from procjob.adapters.podlogs import LogSource, LogUnavailable, read_tail
from procjob.controller.queue import WorkQueue
from procjob.core.observe import PodObservation
from procjob.core.sanitize import clean_text
from procjob.models.contract import WORKER_CONTAINER
from procjob.models.job import ProcessingJob

log = logging.getLogger("procjob.logs")

LOOP = "log-archive"
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
READ_SECONDS = 60.0  # one container's read, at most
DONE_LIMIT = 100_000  # attempts remembered as archived (beyond: asked of the database again)
LOOP_ERROR_DELAY = 1.0

AttemptKey = tuple[str, str, int | None, int]  # (job UID, stage, item or None, attempt)


class LogStore(Protocol):
    """What the archive needs of the audit store (AuditStore; a fake in unit tests)."""

    async def logs_archived(self, job_uid: str, stage: str, attempt: int, item: int | None = None) -> bool: ...

    async def save_logs(self, logs: Sequence[ArchivedLog]) -> int: ...


@dataclass(frozen=True)
class Target:
    """One finished attempt (of one item, in a fanned-out stage) whose logs are to be archived."""

    key: AttemptKey
    job_key: str
    namespace: str
    job_name: str
    pod_name: str
    pod_uid: str
    containers: tuple[str, ...]
    finished_at: datetime | None
    give_up_at: datetime

    @property
    def where(self) -> str:
        """How the log messages name the attempt."""
        _, stage, item, attempt = self.key
        of_item = "" if item is None else f" item {item}"
        return f"{self.job_key} stage {stage}{of_item} attempt {attempt}"

    def log(self, container: str, **fields: object) -> ArchivedLog:
        job_uid, stage, item, attempt = self.key
        values = {
            "job_uid": job_uid,
            "namespace": self.namespace,
            "name": self.job_name,
            "stage": stage,
            "item": item,
            "attempt": attempt,
            "container": container,
            "pod_name": self.pod_name,
            "pod_uid": self.pod_uid,
            "finished_at": self.finished_at,
            **fields,
        }
        return ArchivedLog.model_validate(values)


class LogArchiver:
    def __init__(
        self,
        store: LogStore,
        source: LogSource,
        queue: WorkQueue,
        metrics: Metrics,
        clock: Callable[[], datetime],
        *,
        max_bytes: int,
        wait_seconds: int,
        workers: int = 4,
        read_seconds: float = READ_SECONDS,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        done_limit: int = DONE_LIMIT,
    ) -> None:
        self.store = store
        self.source = source
        self.queue = queue
        self.metrics = metrics
        self.clock = clock
        self.max_bytes = max_bytes
        self.wait = timedelta(seconds=wait_seconds)
        self.workers = workers
        self.read_seconds = read_seconds
        self.retry_delays = tuple(retry_delays)
        self.done_limit = done_limit
        self._done: OrderedDict[AttemptKey, None] = OrderedDict()  # archived (LRU, bounded)
        self._abandoned: OrderedDict[AttemptKey, None] = OrderedDict()  # given up (bounded the same way)
        self._pending: dict[AttemptKey, Target] = {}  # waiting or in flight
        self._failures: dict[AttemptKey, int] = {}
        self._due: list[tuple[datetime, int, AttemptKey]] = []  # a heap; stale entries are skipped
        self._inflight: set[AttemptKey] = set()
        self._order = itertools.count()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------------ the reconciler's side
    def observe(self, job: ProcessingJob, pods: list[PodObservation]) -> list[PodObservation]:
        """The pods as the core should see them: `log_archived` set for archived attempts. Finished
        pods not archived yet are taken in (once)."""
        seen = []
        for pod in pods:
            key = self._key(job, pod)
            if key is not None and key in self._done:
                self._done.move_to_end(key)
                seen.append(replace(pod, log_archived=True))
                continue
            if key is not None and pod.terminal and key not in self._pending and key not in self._abandoned:
                self._take(job, pod, key)
            seen.append(pod)
        return seen

    def forget_job(self, job_uid: str) -> None:
        """The job is gone: drop what is remembered of its attempts (pending reads finish)."""
        for known in (self._done, self._abandoned):
            for key in [k for k in known if k[0] == job_uid]:
                del known[key]

    def forget_pod(self, pod: PodObservation) -> None:
        """The pod is deleted: whether its attempt was archived is asked no more (`observe` reads it
        only for pods still there), so its entry goes; a read in flight still finishes."""
        if pod.job_uid is None or pod.job_uid != pod.owner_uid or pod.stage is None or pod.attempt is None:
            return
        key = (pod.job_uid, pod.stage, pod.item, pod.attempt)
        self._done.pop(key, None)
        self._abandoned.pop(key, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @staticmethod
    def _key(job: ProcessingJob, pod: PodObservation) -> AttemptKey | None:
        """The attempt a pod is of, when it is this job's (the core's ownership rule); a fanned-out
        stage's item is part of it, since each item numbers its own attempts."""
        uid = job.meta.uid
        if pod.job_uid != uid or pod.owner_uid != uid or pod.namespace not in ("", job.meta.namespace):
            return None
        if pod.stage is None or pod.attempt is None:
            return None
        return (uid, pod.stage, pod.item, pod.attempt)

    def _take(self, job: ProcessingJob, pod: PodObservation, key: AttemptKey) -> None:
        now = self.clock()
        target = Target(
            key=key,
            job_key=job.meta.key,
            namespace=job.meta.namespace,
            job_name=job.meta.name,
            pod_name=pod.name,
            pod_uid=pod.uid,
            containers=pod.containers or (WORKER_CONTAINER,),
            finished_at=pod.finished,
            give_up_at=(pod.finished or now) + self.wait,
        )
        self._pending[key] = target
        self._schedule(key, now)

    def _schedule(self, key: AttemptKey, when: datetime) -> None:
        heapq.heappush(self._due, (when, next(self._order), key))
        self.metrics.log_archive_pending.set(len(self._pending))
        self._wake.set()

    # --------------------------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Forever (until cancelled): archive what is due, at most `workers` at a time."""
        slots = asyncio.Semaphore(self.workers)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                try:
                    target = await self._next_due()
                except BaseException:
                    slots.release()
                    raise
                task = asyncio.create_task(self._archive_in_slot(target, slots), name=f"{LOOP}-read")
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _archive_in_slot(self, target: Target, slots: asyncio.Semaphore) -> None:
        try:
            await self.archive(target)
        except Exception:  # archive() handles its failures; this is a bug of ours: counted, retried
            log.exception("log archive: archiving %s failed unexpectedly", target.job_key)
            self.metrics.loop_errors.labels(loop=LOOP).inc()
            self._failed(target, "an unexpected error (see the operator log)")
        finally:
            slots.release()

    async def archive_due(self) -> int:
        """Archive, one after another, everything due now (tests; the loop runs them concurrently)."""
        done = 0
        while (target := self._pop_due()) is not None:
            await self.archive(target)
            done += 1
        return done

    async def _next_due(self) -> Target:
        while True:
            target = self._pop_due()
            if target is not None:
                return target
            self._wake.clear()
            timeout = None
            if self._due:
                timeout = max(0.0, (self._due[0][0] - self.clock()).total_seconds())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _pop_due(self) -> Target | None:
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            _, _, key = heapq.heappop(self._due)
            target = self._pending.get(key)
            if target is not None and key not in self._inflight:
                self._inflight.add(key)
                return target
        return None

    # ------------------------------------------------------------------------------- one attempt
    async def archive(self, target: Target) -> None:
        """Archive one attempt's logs (unless the database has them); on failure retry later or give up."""
        job_uid, stage, item, attempt = target.key
        try:
            if await self.store.logs_archived(job_uid, stage, attempt, item):
                self._archived(target, [])
                return
            logs = [await self._read(target, container) for container in target.containers]
            await self.store.save_logs(logs)
        except asyncio.CancelledError:
            self._inflight.discard(target.key)
            self._schedule(target.key, self.clock())  # a restarted loop picks it up again
            raise
        except AuditSchemaMissing as exc:
            self._failed(target, str(exc), retry=False)  # retrying cannot help until someone migrates
            return
        except Exception as exc:
            self._failed(target, " ".join(f"{type(exc).__name__}: {exc}".split()))
            return
        self._archived(target, logs)

    async def _read(self, target: Target, container: str) -> ArchivedLog:
        try:
            tail = await read_tail(
                self.source,
                target.namespace,
                target.pod_name,
                container,
                max_bytes=self.max_bytes,
                seconds=self.read_seconds,
            )
        except LogUnavailable as exc:
            self.metrics.log_archive_failures.labels(reason="unavailable").inc()
            log.info("log archive: %s %s: no log to archive (%s)", target.job_key, target.pod_name, exc)
            return target.log(container, error=str(exc), complete=False)
        return target.log(
            container,
            content=tail.content,
            received_bytes=tail.received,
            truncated=tail.truncated,
            complete=tail.complete,
        )

    def _archived(self, target: Target, logs: list[ArchivedLog]) -> None:
        self._finish(target)
        self._remember(self._done, target.key)
        stored = [entry for entry in logs if entry.error is None]
        if stored:
            self.metrics.log_archived.inc(len(stored))
            self.metrics.log_archive_bytes.inc(sum(len(entry.content) for entry in stored))
        self.queue.add(target.job_key, urgent=True)  # its podGC may go ahead now

    def _failed(self, target: Target, error: str, *, retry: bool = True) -> None:
        """Count and log a failure; retry with backoff while the bound allows, else give up."""
        self.metrics.log_archive_failures.labels(reason="error").inc()
        failures = self._failures.get(target.key, 0) + 1
        self._failures[target.key] = failures
        error = clean_text(error, 300)
        retry_at = self.clock() + timedelta(seconds=self.retry_delays[min(failures, len(self.retry_delays)) - 1])
        where = target.where
        self._inflight.discard(target.key)
        if retry and retry_at < target.give_up_at:
            if failures == 1:
                log.warning("log archive: %s: %s; retrying", where, error)
            self._schedule(target.key, retry_at)
            return
        self._finish(target)
        self._remember(self._abandoned, target.key)
        self.metrics.log_archive_failures.labels(reason="abandoned").inc()
        log.warning(
            "log archive: %s not archived (%s); given up after %d tries, podGC goes ahead", where, error, failures
        )
        self.queue.add(target.job_key, urgent=True)

    def _finish(self, target: Target) -> None:
        self._pending.pop(target.key, None)
        self._failures.pop(target.key, None)
        self._inflight.discard(target.key)
        self.metrics.log_archive_pending.set(len(self._pending))

    def _remember(self, known: OrderedDict[AttemptKey, None], key: AttemptKey) -> None:
        known[key] = None
        known.move_to_end(key)
        while len(known) > self.done_limit:
            known.popitem(last=False)
