"""The composition root: every part of a running operator, built in one place with no optional
parts, started and stopped as one.

kopf's startup and cleanup handlers only call `Operator.build`, `start` and `stop`; the watch
handlers call the few methods below that say what an event means for the operator (a job seen, a
job deleted, a pod seen, a relist). Background loops run under supervision (controller.supervise)
and are named after what they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from procjob.adapters.audit import AuditStore, AuditUnavailable, history_document
from procjob.adapters.authn import ReviewAuthorizer
from procjob.adapters.kube import ApiError, Credentials, KubeClient
from procjob.adapters.metrics import Metrics
from procjob.adapters.web import build_app, serve
from procjob.controller.admission import QueueAdmission
from procjob.controller.cache import Cache
from procjob.controller.failpoints import Failpoints
from procjob.controller.leadership import FencedStore, LeaderElector, Timings
from procjob.controller.logarchive import LogArchiver
from procjob.controller.orphans import OrphanCollector
from procjob.controller.podcaps import PodCaps
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import Reconciler, utcnow
from procjob.controller.relay import AuditRelay
from procjob.controller.settings import OperatorSettings
from procjob.controller.supervise import Loops, supervise
from procjob.controller.sync import RESYNC_SECONDS, Resynced, keep_converging, wait_for_sync
from procjob.core.observe import PodObservation
from procjob.core.retention import Finished, over_cap
from procjob.models.lifecycle import body_finished, finished
from procjob.models.timestamps import parse_time

log = logging.getLogger("procjob")

GAUGE_INTERVAL = 5.0
QUEUE_INTERVAL = 1.0
MIGRATE_RETRY_SECONDS = 5.0
CAP_INTERVAL = 5.0  # seconds between rounds of the per-namespace cap on finished jobs (a cache scan)
SYNC_RETRY_SECONDS = 2.0
RELEASE_SECONDS = 5.0  # at most this long on shutdown to give the Lease up (else the standby waits it out)


@dataclass
class Operator:
    settings: OperatorSettings
    client: KubeClient
    metrics: Metrics
    cache: Cache
    queue: WorkQueue
    admission: QueueAdmission
    reconciler: Reconciler
    store: AuditStore | None  # None: no audit database configured (Events only)
    relay: AuditRelay | None  # present exactly when `store` is
    elector: LeaderElector | None = None  # None: no leader election (one replica)
    logs: LogArchiver | None = None  # None: pod logs are not archived (no database, or turned off)
    orphans: OrphanCollector | None = None  # None: pods whose job is gone are left to garbage collection
    loops: Loops = field(default_factory=Loops)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    resync_wake: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    web: Any = None

    @classmethod
    async def build(cls, settings: OperatorSettings, credentials: Credentials) -> Operator:
        metrics, queue = Metrics(), WorkQueue()
        cache = Cache(ignored=lambda reason: metrics.pod_events_ignored.labels(reason=reason).inc())
        requests = metrics.api_requests
        client = KubeClient(credentials, on_request=lambda verb: requests.labels(verb=verb).inc())
        elector = None
        if settings.leader_elect:

            async def start_writing() -> None:
                await operator._start_writing()

            elector = LeaderElector(
                client,
                settings.leader_election_namespace,
                f"{settings.instance}_{uuid.uuid4().hex[:8]}",
                on_started=start_writing,
                on_lost=_stop_now,
                metrics=metrics,
                timings=Timings(*settings.leader_election_timings),
                clock=utcnow,
                name=settings.leader_election_lease_name,
            )
            client.fence = elector.may_write  # every write asks first (the Lease's own do not)
        store: AuditStore | None = None
        sink: AuditStore | FencedStore | None = None
        relay: AuditRelay | None = None
        if settings.database_url:
            # wait=False: start even while PostgreSQL is down; the relay keeps the backlog until it is back.
            store = await AuditStore.open(settings.database_url, connect_timeout=5.0, wait=False)
            sink = store if elector is None else FencedStore(store, store, elector.may_write)
            failpoint = "audit-after-insert" in settings.failpoints
            relay = AuditRelay(sink, queue, metrics, utcnow, crash_after_insert=failpoint)
        logs = None
        if sink is not None and settings.log_archive:
            logs = LogArchiver(
                sink,
                client,
                queue,
                metrics,
                utcnow,
                max_bytes=settings.log_archive_max_bytes,
                wait_seconds=settings.log_archive_wait_seconds,
                workers=settings.log_archive_workers,
            )
        admission = QueueAdmission(cache, settings, metrics, utcnow)
        reconciler = Reconciler(
            client,
            cache,
            queue,
            settings.core(),
            metrics,
            admission=admission,
            audit=relay,
            logs=logs,
            instance=settings.instance,
            failpoints=Failpoints(settings.failpoints),
            pod_caps=PodCaps(cache, settings.max_running_pods, settings.max_running_pods_per_job),
        )
        orphans = OrphanCollector(client, metrics.orphan_pods_deleted.inc)
        operator = cls(
            settings, client, metrics, cache, queue, admission, reconciler, store, relay, elector, logs, orphans
        )
        return operator

    # ------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._run("start-reconciling", self._start_reconciling, must_run=False)
        self.web = await serve(self._http_app(), self.settings.metrics_host, self.settings.metrics_port)
        s = self.settings
        watched = "namespaces " + ",".join(s.namespaces) if s.namespaces else "all namespaces"
        log.info(
            "procjob started: %s, %d reconcile workers, metrics on %s:%d",
            watched,
            s.workers,
            s.metrics_host,
            s.metrics_port,
        )

    async def stop(self) -> None:
        self.ready = False
        writers = [*self.tasks, *self.reconciler.events.tasks]
        for task in writers:
            task.cancel()
        for task in writers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.elector is not None:
            # Nothing writes any more: give the Lease up, so that a standby leads at its next try.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELEASE_SECONDS):
                    await self.elector.release()
        if self.web is not None:
            await self.web.cleanup()
        await self.client.close()
        if self.store is not None:
            await self.store.close()

    def _run(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]], *, must_run: bool = True) -> None:
        """A long-lived loop under supervision: restarted when it raises, counted, part of /healthz."""
        loop = supervise(name, factory, loops=self.loops, metrics=self.metrics, must_run=must_run)
        self.tasks.append(asyncio.create_task(loop, name=name))

    def _http_app(self) -> Any:
        store = self.store

        async def history(ns: str, name: str) -> dict[str, Any] | None:
            return None if store is None else await history_document(store, ns, name)

        authorizer = ReviewAuthorizer(self.client)
        return build_app(
            self.metrics.registry,
            live=self.loops.live,
            ready=lambda: (self.ready, self._role()),
            history=history if store is not None else None,
            authorize=authorizer,
            # Archived logs stay readable with the archive turned off, as long as the database is there.
            logs=store,
            authorize_logs=authorizer.logs,
        )

    def _role(self) -> str:
        if not self.ready:
            return "starting"
        if self.elector is None:
            return "ready"
        if self.elector.leading:
            return f"ready, leading as {self.elector.identity}"
        holder = self.elector.holder
        return f"ready, standby ({holder} leads)" if holder else "ready, standby (no leader yet)"

    # ------------------------------------------------------------------------ the loops
    async def _start_reconciling(self) -> None:
        """Reconcile only once the watch caches hold what existed at start (see controller.sync)."""
        while True:
            try:
                await wait_for_sync(self.client, self.cache, self.settings.namespaces)
                break
            except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("cache sync: listing failed (%s); retrying", exc)
                await asyncio.sleep(SYNC_RETRY_SECONDS)
        self._run("queue-and-gauges", self._refresh_queue_and_gauges)
        self._run("resync", self._converge_caches)
        self.ready = True  # a standby is ready too: its caches are warm, it takes over at once
        if self.elector is None:
            self.metrics.leader.set(1)  # the only replica: it writes
            await self._start_writing()
        else:
            self._run("leader-election", self.elector.run)

    async def _start_writing(self) -> None:
        """What only the leader runs: the reconcile workers, the audit relay and its migrations,
        the finished-jobs cap, the orphaned pods' collector. (Every replica watches; only one writes.)"""
        if self.store is not None and self.relay is not None:
            if self.settings.migrate:
                self._run("audit-migrate", self._apply_migrations, must_run=False)
            self._run("audit-relay", self.relay.run)
            log.info("audit: recording transitions in PostgreSQL")
        else:
            log.warning("audit: PROCJOB_DATABASE_URL is not set; transitions go to Kubernetes Events only")
        if self.logs is not None:
            self._run("log-archive", self.logs.run)
            log.info("logs: archiving the last %d bytes of finished attempts' logs", self.logs.max_bytes)
        else:
            log.warning("logs: pod logs are not archived (no database, or --log-archive-max-bytes 0)")
        woken = self.wake_started_jobs()
        log.info("writing: %d started jobs queued first (their timers and pending creates)", woken)
        for i in range(self.settings.workers):
            self._run(f"reconcile-{i}", self.reconciler.worker)
        if self.settings.max_finished_jobs_per_namespace is not None:
            self._run("finished-jobs-cap", self._cap_finished_jobs)
        if self.orphans is not None:
            self._run("orphan-pods", self.orphans.run)

    def wake_started_jobs(self) -> int:
        """A new writer's first work: every started, unfinished job, in the urgent lane. Their timers
        (backoff, deadlines, startup timeouts) lived in the last writer's process, and an attempt it
        recorded without creating its pod (it stopped between the two) waits for a reconcile to
        issue the create; the watch's listing puts started jobs in the normal lane, where behind a
        backlog that took minutes (the chaos suite's flood: 6.5 minutes, then a StartupTimeout
        charged to the job). Returns how many."""
        woken = 0
        for outline in self.cache.outlines():
            if outline.started is not None and not finished(outline.state):
                self.queue.add(outline.key, urgent=True)
                woken += 1
        return woken

    async def _converge_caches(self) -> None:
        namespaces = self.settings.namespaces
        await keep_converging(
            self.client, self.cache, namespaces, self.resynced, every=RESYNC_SECONDS, wake=self.resync_wake
        )

    async def _apply_migrations(self) -> None:
        """Apply migrations at start; while PostgreSQL is unreachable, try again every few seconds."""
        assert self.store is not None
        while True:
            try:
                applied = await self.store.migrate()
            except AuditUnavailable as exc:
                log.warning("audit: migrations not applied yet (%s); retrying", exc)
                await asyncio.sleep(MIGRATE_RETRY_SECONDS)
                continue
            log.info("audit: migrations applied: %s", ", ".join(applied) or "none (up to date)")
            return

    async def _refresh_queue_and_gauges(self) -> None:
        """Every second: queued jobs whose slot or shown position changed; every few: the gauges."""
        ticks = 0
        while True:
            await asyncio.sleep(QUEUE_INTERVAL)
            ticks += 1
            for key in self.admission.admissible():
                self.queue.add(key, urgent=True)  # a free slot: as urgent as a running job's pod
            for key in self.admission.stale_positions():
                self.queue.add(key)
            if ticks % int(GAUGE_INTERVAL / QUEUE_INTERVAL) == 0:
                self.reconciler.refresh_gauges()

    async def _cap_finished_jobs(self) -> None:
        """Every CAP_INTERVAL: delete the oldest finished jobs beyond the per-namespace cap (the
        audit database keeps their records; the finalizer waits for JobDeleted as for any deletion)."""
        cap = self.settings.max_finished_jobs_per_namespace
        assert cap is not None
        while True:
            await asyncio.sleep(CAP_INTERVAL)
            for job in over_cap(finished_jobs(o.as_body() for o in self.cache.outlines()), cap):
                namespace, name = job.key.split("/", 1)
                try:
                    await self.client.delete_job(namespace, name, job.uid)
                except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("finished-jobs cap: %s not deleted (%s); next round", job.key, exc)

    # --------------------------------------------------------------- what watch events mean
    def job_seen(self, body: dict[str, Any], *, urgent: bool, new: bool = False) -> None:
        """A job's change: urgent for a user's change of a started job, `new` for a job not started."""
        self.queue.add(self.cache.observe_job(body), urgent=urgent, new=new)

    def job_deleted(self, body: dict[str, Any]) -> None:
        key = self.cache.observe_job(body, deleted=True)
        self.queue.drop(key)
        uid = (body.get("metadata") or {}).get("uid", "")
        if self.relay is not None:
            self.relay.forget(uid)
        if self.logs is not None:
            self.logs.forget_job(uid)
        self.admission.forget(key)

    def pod_seen(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        """A pod's change wakes its job, as urgently as a timer: a running job moves on before new
        jobs are admitted."""
        key = self.cache.observe_pod(body, deleted=deleted)
        if key is not None:
            self.queue.add(key, urgent=True)
        if deleted and self.logs is not None:
            self.logs.forget_pod(PodObservation.from_api(body))

    def relisted(self) -> None:
        """kopf re-listed after a 410 Gone (events of type None after startup): converge now."""
        if self.ready:
            self.resync_wake.set()

    def resynced(self, result: Resynced) -> None:
        """Jobs deleted while no watch looked: drop their queue, admission and audit state; requeue
        the jobs that lost pods (they are then recorded as deleted, with the right reason); hand the
        pods whose job was not listed to the orphans' collector."""
        if self.orphans is not None:
            self.orphans.offer(result.orphans)
        for key in result.dropped_jobs:
            self.queue.drop(key)
            self.admission.forget(key)
        for uid in result.dropped_job_uids:
            if self.relay is not None:
                self.relay.forget(uid)
            if self.logs is not None:
                self.logs.forget_job(uid)
        for key in result.dropped_pods:
            self.queue.add(key, urgent=True)


def finished_jobs(bodies: Iterable[dict[str, Any]]) -> list[Finished]:
    """The finished, not yet deleted jobs among cached objects, with their completion times."""
    found = []
    for body in bodies:
        meta = body.get("metadata") or {}
        completed = parse_time((body.get("status") or {}).get("completionTime"))
        if body_finished(body) and completed is not None and not meta.get("deletionTimestamp"):
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            found.append(Finished(key, meta.get("uid", ""), meta.get("namespace", ""), completed))
    return found


def _stop_now() -> None:
    """Leadership lost: stop writing at once, as client-go does (the process exits; Kubernetes
    restarts it as a standby)."""
    logging.shutdown()
    os._exit(70)
