"""One reconcile of one job: read the caches, call `decide`, apply the Decision.

Applying follows the order documented in procjob.core.decision (status first: it records intent).
The status is replaced with a PUT carrying the resourceVersion we read, so a write based on a stale
copy fails with 409 instead of overwriting newer state; we then fetch the job and reconcile again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from pydantic import ValidationError

from procjob.adapters.kube import ApiError, Conflict, KubeClient, NotFound
from procjob.adapters.metrics import Metrics
from procjob.controller.admission import Admission, AdmitAll, Ticket
from procjob.controller.cache import Cache
from procjob.controller.failpoints import Failpoints
from procjob.controller.podcaps import PodCaps
from procjob.controller.queue import WorkQueue
from procjob.controller.reporting import EventPoster, active_job_counts, count_pass
from procjob.core.config import CoreConfig
from procjob.core.decide import decide, needs_admission
from procjob.core.decision import Decision, FinalizerAction
from procjob.core.failsafe import fail_unprocessable
from procjob.core.observe import PodObservation
from procjob.core.outbox import plan_write, trimmed
from procjob.models.audit import AuditEntry
from procjob.models.job import FINALIZER, JobMeta, ProcessingJob
from procjob.models.lifecycle import finished, succeeded_condition
from procjob.models.status import ProcessingJobStatus

log = logging.getLogger("procjob.reconcile")

CRASHES_TO_FAIL = 3  # reconciles in a row that raise a bug before the job is failed (ReconcileError)


def utcnow() -> datetime:
    return datetime.now(UTC)


class AuditOutlet(Protocol):
    """Where the reconcile hands pending audit entries (the relay)."""

    def confirmed(self, uid: str) -> int: ...

    def submit(self, job: ProcessingJob, pending: list[AuditEntry]) -> None: ...

    def problem(self, uid: str) -> str | None: ...


class LogArchive(Protocol):
    """What the reconcile asks of the log archive (controller.logarchive.LogArchiver)."""

    def observe(self, job: ProcessingJob, pods: list[PodObservation]) -> list[PodObservation]: ...


def refused(exc: ApiError) -> bool:
    """A create the API server will refuse again as it is: a 4xx other than 409 (exists) and 429
    (throttled). Not the job's: 401 and an RBAC 403 (the operator's own credentials), a quota 403
    (it frees up), 404 (the namespace is going). A 403 from admission (PodSecurity, LimitRange) is."""
    if not 400 <= exc.status < 500 or exc.status in (401, 404, 409, 429):
        return False
    if exc.status == 403:
        message = exc.message.lower()
        return "cannot create resource" not in message and "exceeded quota" not in message
    return True


def owner_of(pod: dict[str, Any]) -> str | None:
    """The UID of a pod's controller ownerReference."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


class Reconciler:
    def __init__(
        self,
        client: KubeClient,
        cache: Cache,
        queue: WorkQueue,
        config: CoreConfig,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = utcnow,
        admission: Admission | None = None,
        audit: AuditOutlet | None = None,
        logs: LogArchive | None = None,
        instance: str = "",
        failpoints: Failpoints | None = None,
        pod_caps: PodCaps | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.queue = queue
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.admission = admission or AdmitAll()
        self.audit = audit
        self.logs = logs
        self.instance = instance
        self.failpoints = failpoints or Failpoints()
        self.pod_caps = pod_caps
        self.events = EventPoster(client, metrics, instance)
        self._trim_due: dict[str, float] = {}
        self._rejected: dict[str, dict[str, str]] = {}  # job UID -> pod name -> the API server's refusal
        self._crashes: dict[str, int] = {}  # key -> reconciles in a row that raised a bug
        self._audit_reported: dict[str, str] = {}  # job UID -> the audit problem already posted

    # ------------------------------------------------------------------------------ the loop
    async def worker(self) -> None:
        while True:
            key = await self.queue.get()
            started = asyncio.get_running_loop().time()
            try:
                await self.reconcile(key)
                self.queue.forget(key)
                self._crashes.pop(key, None)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ApiError, OSError, aiohttp.ClientError) as exc:
                kind = f"api_{exc.status}" if isinstance(exc, ApiError) else type(exc).__name__
                self.metrics.reconcile_errors.labels(kind=kind).inc()
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile %s failed (%s); retrying in %.2fs", key, exc, delay)
            except Exception as exc:
                self.metrics.reconcile_errors.labels(kind="bug").inc()
                delay = self.queue.add_rate_limited(key, base=1.0, cap=300.0)
                log.exception("reconcile %s crashed; retrying in %.1fs", key, delay)
                await self._crashed(key, exc)
            finally:
                self.queue.done(key)
                self.metrics.reconcile_duration.observe(asyncio.get_running_loop().time() - started)
                self.metrics.workqueue_depth.set(len(self.queue))

    # ---------------------------------------------------------------------------- reconcile
    async def reconcile(self, key: str) -> None:
        body = self.cache.job(key)
        if body is None:
            self.queue.drop(key)
            if self.pod_caps is not None:
                self.pod_caps.forget(key)
            return
        try:
            job = ProcessingJob.from_api(body)
        except (ValidationError, ValueError, KeyError, RecursionError) as exc:
            log.error("job %s has an unreadable status or metadata, leaving it alone: %s", key, exc)
            self._post_unreadable(body, f"the operator cannot read this object: {exc}")
            return
        stored = job.status
        if self.audit is not None:
            job = self._trimmed(job)
        now = self.clock()
        ticket = self.admission.ticket(job) if needs_admission(job) else Ticket(True)
        try:
            meta = job.meta
            pods = self.cache.pods_of(meta.namespace, meta.uid)
            if self.logs is not None:
                pods = self.logs.observe(job, pods)  # archived attempts marked; finished ones taken in
            caps = self.pod_caps
            decision = decide(
                job,
                pods,
                now,
                self.config,
                admitted=ticket.admitted,
                gone=self.cache.gone(meta.namespace, meta.uid),
                rejected=self._rejected.get(meta.uid),
                vanished=self.cache.vanished(meta.namespace, meta.uid),
                pods_left=caps.allowance(job, pods) if caps is not None else None,
            )
            if caps is not None:
                caps.granted(job, decision.create)  # before any await: no other reconcile hands out this room
            if not ticket.admitted and ticket.queue is not None and decision.status.start_time is None:
                queued = decision.status.model_copy(update={"queue": ticket.queue})
                decision = dataclasses.replace(decision, status=queued)
            written = await self.apply(key, body, job, stored, decision, now)
        except BaseException:
            if ticket.admitted and job.status.start_time is None:
                self.admission.release(key)  # the slot was not taken: give it to the next job
            raise
        if not written and ticket.admitted and decision.status.start_time is not None and stored.start_time is None:
            self.admission.release(key)  # a 409 or a vanished object: nothing started
        if written and not pods and finished(succeeded_condition(decision.status.conditions)[0]):
            self.cache.forget_gone(meta.namespace, meta.uid)  # its pods' tombstones are read no more
        if caps is not None:  # creates not made give their room back; jobs waiting for room there is now
            for waiting in caps.after(job, pods, decision.create, starved=decision.starved, written=written):
                self.queue.add(waiting, urgent=True)

    def _trimmed(self, job: ProcessingJob) -> ProcessingJob:
        """Drop outbox entries PostgreSQL has confirmed (known to this process)."""
        assert self.audit is not None
        status = trimmed(job.status, self.audit.confirmed(job.meta.uid))
        return job if status is job.status else ProcessingJob(job.meta, job.spec, status, job.spec_error)

    def _must_write(self, key: str, stored: ProcessingJobStatus, decision: Decision) -> bool:
        """See core.outbox.plan_write; a trim-only write not yet due is requeued for its time."""
        loop_now = asyncio.get_running_loop().time()
        plan = plan_write(stored, decision, now=loop_now, due=self._trim_due.get(key))
        if plan.due is not None:
            self._trim_due[key] = plan.due
            self.queue.add_after(key, plan.due - loop_now)
        else:
            self._trim_due.pop(key, None)
        return plan.write

    async def apply(
        self,
        key: str,
        body: dict[str, Any],
        job: ProcessingJob,
        stored: ProcessingJobStatus,
        decision: Decision,
        now: datetime,
    ) -> bool:
        """Carry out a Decision. False when its status could not be written (the job changed or
        went meanwhile; it is requeued): then nothing else of the decision was done."""
        meta = job.meta
        if decision.finalizer == FinalizerAction.ADD:
            patched = await self._patch_finalizers(key, body, [*meta.finalizers, FINALIZER])
            if patched is None:
                return False
            body = patched
        if self._must_write(key, stored, decision):
            self._trim_due.pop(key, None)
            update = {**body, "status": decision.status.to_api()}
            written = await self._guarded(key, meta.namespace, meta.name, self.client.replace_status(update))
            if written is None:
                return False
            body = written
        self._forget_rejections(meta.uid, decision)
        for create in decision.create:
            self.failpoints.reach("pod-before-create")  # the attempt is recorded, its pod not created
            await self._create_pod(key, meta, create.manifest)
        for delete in decision.delete:
            grace = 0 if delete.force else None
            await self.client.delete_pod(meta.namespace, delete.name, delete.uid, grace_seconds=grace)
            self.cache.mark_deleting(meta.namespace, meta.uid, delete.name)
        if decision.collect:
            await self.client.delete_finished_pods(meta.namespace, meta.uid)
            for delete in decision.collect:
                self.cache.mark_deleting(meta.namespace, meta.uid, delete.name)
        if self.audit is not None and decision.status.audit.pending:
            # the job as decided: the relay's job summary must be the newest state, not the one read
            decided = ProcessingJob(meta, job.spec, decision.status, job.spec_error)
            self.audit.submit(decided, list(decision.status.audit.pending))
            self._report_audit_problem(meta, now)
        self.events.post_decision(meta, decision, now)
        if count_pass(self.metrics, decision, stored):
            for queued in self.admission.admissible():  # a slot is free: let the next jobs start now
                self.queue.add(queued, urgent=True)
        if decision.finalizer == FinalizerAction.REMOVE:
            remaining = [f for f in (body.get("metadata") or {}).get("finalizers") or [] if f != FINALIZER]
            await self._patch_finalizers(key, body, remaining)
        if decision.delete_job:
            await self.client.delete_job(meta.namespace, meta.name, meta.uid)  # past its TTL
        if decision.requeue_at is not None:
            # a backoff or deadline of a started job: as urgent as a pod's change
            self.queue.add_after(key, (decision.requeue_at - self.clock()).total_seconds(), urgent=True)
        return True

    async def _patch_finalizers(self, key: str, body: dict[str, Any], finalizers: list[str]) -> dict[str, Any] | None:
        meta = body.get("metadata") or {}
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}
        ns, name = meta["namespace"], meta["name"]
        return await self._guarded(key, ns, name, self.client.patch_job(ns, name, patch))

    async def _guarded(
        self, key: str, namespace: str, name: str, write: Awaitable[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """A write with a resourceVersion precondition. Written: the cache gets the answer. A 409:
        the job changed meanwhile — re-read it and reconcile again. None when nothing was written."""
        try:
            written = await write
        except Conflict:
            fresh = await self.client.get_job(namespace, name)
            if fresh is not None:
                self.cache.observe_job(fresh)
                self.queue.add(key)
            return None
        except NotFound:
            return None
        self.cache.observe_job(written)
        return written

    async def _create_pod(self, key: str, meta: JobMeta, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        try:
            created = await self.client.create_pod(meta.namespace, manifest)
        except ApiError as exc:
            if not isinstance(exc, Conflict) and refused(exc):
                # The API server will refuse this very pod again: the next pass fails the stage with
                # its words (decide's `rejected`), instead of retrying until startupTimeoutSeconds.
                log.warning("pod %s/%s refused (%s); failing its attempt", meta.namespace, name, exc)
                self._rejected.setdefault(meta.uid, {})[name] = f"{exc.status} {exc.reason}: {exc.message}"[:900]
                self.queue.add(key, urgent=True)
                return
            if not isinstance(exc, Conflict):
                raise
            existing = await self._adopt(meta, name)
            if existing is None:
                self._rejected.setdefault(meta.uid, {})[name] = "the pod's name is taken by a pod this job does not own"
                self.queue.add(key, urgent=True)
                return
            created = existing
        self.cache.observe_pod(created)
        self.failpoints.reach("pod-after-create")  # the pod exists, its UID is not in the status yet

    def _forget_rejections(self, uid: str, decision: Decision) -> None:
        """A refusal is remembered until a status that records it has been written."""
        names = self._rejected.get(uid)
        if names is None:
            return
        for stage in decision.status.stages:
            for attempt in stage.attempts:
                if attempt.pod_name in names and attempt.reason == "PodRejected":
                    del names[attempt.pod_name]
        if not names:
            del self._rejected[uid]

    async def _adopt(self, meta: JobMeta, name: str) -> dict[str, Any] | None:
        """A 409 on create: the pod exists. Ours (a create repeated after a crash or with a stale
        cache) is adopted; anyone else's never is (None: the name is squatted, which fails the
        attempt like a refused pod — a tenant can only squat names in its own namespace)."""
        existing = await self.client.get_pod(meta.namespace, name)
        if existing is None:
            raise Conflict(409, "AlreadyExists", f"pod {name} existed and is gone; trying again")
        if owner_of(existing) != meta.uid:
            log.warning("pod %s/%s exists and is not owned by job %s; not adopting it", meta.namespace, name, meta.key)
            return None
        return existing

    # ------------------------------------------------------------------- a job we cannot process
    async def _crashed(self, key: str, exc: Exception) -> None:
        """A reconcile of this job raised a bug. It is this job's problem: after CRASHES_TO_FAIL in a
        row the job is ended Failed (reason ReconcileError, with the cause) so that it neither holds
        a queue slot nor is retried forever in silence; every crash posts a Warning Event."""
        streak = self._crashes.get(key, 0) + 1
        self._crashes[key] = streak
        body = self.cache.job(key)
        if body is None:
            return
        cause = f"{type(exc).__name__}: {exc}"[:512]
        self._post_unreadable(body, f"the operator failed to process this job ({streak} in a row): {cause}")
        if streak < CRASHES_TO_FAIL:
            return
        try:
            job = ProcessingJob.from_api(body)
            status = fail_unprocessable(job, cause, self.clock(), audit=self.config.audit_enabled)
            await self.client.replace_status({**body, "status": status.to_api()})
        except Exception as err:
            log.error("job %s could not be marked failed either: %s", key, err)
            return
        log.error("job %s failed: the operator cannot process it (%s)", key, cause)
        self.admission.release(key)
        self.queue.add(key)

    def _report_audit_problem(self, meta: JobMeta, now: datetime) -> None:
        """The relay cannot write this job's records (they stay in its outbox): say so on the job,
        once per process and problem, as a Warning Event."""
        assert self.audit is not None
        problem = self.audit.problem(meta.uid)
        if problem is None or self._audit_reported.get(meta.uid) == problem:
            return
        self._audit_reported[meta.uid] = problem
        self.events.post(meta, "Warning", "AuditBlocked", problem, now)

    def _post_unreadable(self, body: dict[str, Any], message: str) -> None:
        self.events.post_on_body(body, "ReconcileError", message, self.clock())

    def refresh_gauges(self) -> None:
        """Jobs by state, from the cache (called periodically, not per reconcile)."""
        for state, count in active_job_counts(o.as_body() for o in self.cache.outlines()).items():
            self.metrics.jobs_active.labels(state=state).set(count)
        self.metrics.workqueue_depth.set(len(self.queue))
        self.metrics.workqueue_delayed.set(self.queue.delayed)
