"""kopf wiring, kept thin: watch events fill the caches and queue keys; nothing else happens here.

Only low-level `on.event` and index handlers are used, so kopf writes nothing to our objects (no
diffbase annotation, no progress annotations, no finalizer of its own), and its diff and progress
bookkeeping is switched off: it would deep-copy every object on every watch event to compute an
"essence" that only on.create/update/field handlers read (9 % of the operator's CPU in `make
bench`). Pods are watched with a server-side label selector (procjob.dev/job-uid), so the operator
never streams other pods. The reconcile workers, the audit relay and the HTTP port start in
`startup` and stop in `cleanup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf

from procjob.adapters.audit import AuditStore, AuditUnavailable, history_document
from procjob.adapters.authn import ReviewAuthorizer
from procjob.adapters.kube import ApiError, Credentials, KubeClient
from procjob.adapters.metrics import Metrics
from procjob.adapters.web import build_app, serve
from procjob.controller.admission import QueueAdmission
from procjob.controller.cache import Cache
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import Reconciler, utcnow
from procjob.controller.relay import AuditRelay
from procjob.controller.settings import OperatorSettings
from procjob.controller.supervise import Loops, supervise
from procjob.controller.sync import Resynced, keep_converging, wait_for_sync
from procjob.models.job import GROUP, LABEL_JOB_UID, PLURAL, VERSION

log = logging.getLogger("procjob")

GAUGE_INTERVAL = 5.0
QUEUE_INTERVAL = 1.0
# A LIST of jobs and labelled pods (from the API server's watch cache) this often, to drop objects
# deleted while no watch looked (kopf's relist after a 410 Gone sends no DELETED events); a relist
# seen by the handlers (events of type None after startup) wakes it early.
RESYNC_SECONDS = 300.0


class NoDiffBase(kopf.DiffBaseStorage):
    """No essence and no last-handled state: nothing here compares an object with an earlier one."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return kopf.BodyEssence()

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


class NoProgress(kopf.ProgressStorage):
    """No handler progress: low-level handlers (on.event, index) keep none."""

    def fetch(self, *, key: Any, body: Any) -> Any:
        return None

    def store(self, *, key: Any, record: Any, body: Any, patch: Any) -> None:
        return None

    def purge(self, *, key: Any, body: Any, patch: Any) -> None:
        return None

    def touch(self, *, body: Any, patch: Any, value: Any) -> None:
        return None

    def clear(self, *, essence: Any) -> Any:
        return essence


@dataclass
class Runtime:
    """What the handlers share (kept in kopf's memo as `memo.runtime`)."""

    settings: OperatorSettings
    cache: Cache = field(default_factory=Cache)
    queue: WorkQueue | None = None
    metrics: Metrics = field(default_factory=Metrics)
    client: KubeClient | None = None
    reconciler: Reconciler | None = None
    relay: AuditRelay | None = None
    store: AuditStore | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    web: Any = None
    ready: bool = False
    resync_wake: asyncio.Event = field(default_factory=asyncio.Event)
    loops: Loops = field(default_factory=Loops)

    def start(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]], *, must_run: bool = True) -> None:
        """Run a long-lived loop under supervision: restarted when it raises, counted, and part
        of /healthz (see controller.supervise)."""
        loop = supervise(name, factory, loops=self.loops, metrics=self.metrics, must_run=must_run)
        self.tasks.append(asyncio.create_task(loop, name=name))


def credentials(settings: kopf.OperatorSettings) -> Credentials:
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials: neither a service account nor a kubeconfig")

    def text(value: object) -> str | None:
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    return Credentials(
        server=str(info.server),
        ca_path=text(info.ca_path),
        ca_data=text(info.ca_data),
        insecure=bool(info.insecure),
        token=text(info.token),
        certificate_path=text(info.certificate_path),
        certificate_data=text(info.certificate_data),
        private_key_path=text(info.private_key_path),
        private_key_data=text(info.private_key_data),
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    rt: Runtime = memo.runtime
    settings.watching.label_selectors["v1", "pods"] = LABEL_JOB_UID
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.watching.server_timeout = 300
    settings.posting.level = logging.ERROR  # our own Events mirror transitions; kopf's logs are not Events
    settings.scanning.disabled = True
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.progress_storage = NoProgress()

    rt.queue = WorkQueue()
    requests = rt.metrics.api_requests
    rt.client = KubeClient(credentials(settings), on_request=lambda verb: requests.labels(verb=verb).inc())
    if rt.settings.database_url:
        # wait=False: start even while PostgreSQL is down; the relay keeps the backlog until it is back.
        rt.store = await AuditStore.open(rt.settings.database_url, connect_timeout=5.0, wait=False)
        if rt.settings.migrate:
            store = rt.store
            rt.start("audit-migrate", lambda: _migrate(store), must_run=False)
        rt.relay = AuditRelay(
            rt.store, rt.queue, rt.metrics, utcnow, crash_after_insert="audit-after-insert" in rt.settings.failpoints
        )
        rt.start("audit-relay", rt.relay.run)
        log.info("audit: recording transitions in PostgreSQL")
    else:
        log.warning("audit: PROCJOB_DATABASE_URL is not set; transitions go to Kubernetes Events only")

    admission = QueueAdmission(rt.cache, rt.settings, rt.metrics, utcnow)
    rt.reconciler = Reconciler(
        rt.client,
        rt.cache,
        rt.queue,
        rt.settings.core(),
        rt.metrics,
        admission=admission,
        audit=rt.relay,
        instance=rt.settings.instance,
    )
    rt.start("start-workers", lambda: _start_workers(rt), must_run=False)

    async def history(ns: str, name: str) -> dict[str, Any] | None:
        return None if rt.store is None else await history_document(rt.store, ns, name)

    app = build_app(
        rt.metrics.registry,
        live=rt.loops.live,
        ready=lambda: (rt.ready, "ready" if rt.ready else "starting"),
        history=history if rt.store is not None else None,
        authorize=ReviewAuthorizer(rt.client),
    )
    rt.web = await serve(app, rt.settings.metrics_host, rt.settings.metrics_port)
    log.info(
        "procjob started: %s, %d reconcile workers, metrics on %s:%d",
        "namespaces " + ",".join(rt.settings.namespaces) if rt.settings.namespaces else "all namespaces",
        rt.settings.workers,
        rt.settings.metrics_host,
        rt.settings.metrics_port,
    )


async def _start_workers(rt: Runtime) -> None:
    """Reconcile only once the watch caches hold what existed at start (see controller.sync)."""
    assert rt.client is not None
    assert rt.reconciler is not None
    while True:
        try:
            await wait_for_sync(rt.client, rt.cache, rt.settings.namespaces)
            break
        except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("cache sync: listing failed (%s); retrying", exc)
            await asyncio.sleep(2)
    for i in range(rt.settings.workers):
        rt.start(f"reconcile-{i}", rt.reconciler.worker)
    rt.start("gauges", lambda: _gauges(rt))
    client = rt.client
    rt.start(
        "resync",
        lambda: keep_converging(
            client,
            rt.cache,
            rt.settings.namespaces,
            lambda result: _resynced(rt, result),
            every=RESYNC_SECONDS,
            wake=rt.resync_wake,
        ),
    )
    rt.ready = True


def _resynced(rt: Runtime, result: Resynced) -> None:
    """Jobs deleted while no watch looked: drop their queue, admission and audit state; requeue
    the jobs that lost pods (they are then recorded as deleted, with the right reason)."""
    if rt.queue is None:
        return
    for key in result.dropped_jobs:
        rt.queue.drop(key)
        if rt.reconciler is not None:
            rt.reconciler.admission.forget(key)
    if rt.relay is not None:
        for uid in result.dropped_job_uids:
            rt.relay.forget(uid)
    for key in result.dropped_pods:
        rt.queue.add(key, urgent=True)


async def _migrate(store: AuditStore) -> None:
    """Apply migrations at start; while PostgreSQL is unreachable, try again every few seconds."""
    while True:
        try:
            applied = await store.migrate()
        except AuditUnavailable as exc:
            log.warning("audit: migrations not applied yet (%s); retrying", exc)
            await asyncio.sleep(5)
            continue
        log.info("audit: migrations applied: %s", ", ".join(applied) or "none (up to date)")
        return


async def _gauges(rt: Runtime) -> None:
    """Every second: queued jobs whose slot or shown position changed; every few: the gauges."""
    ticks = 0
    while True:
        await asyncio.sleep(QUEUE_INTERVAL)
        ticks += 1
        if rt.reconciler is None or rt.queue is None:
            continue
        for key in rt.reconciler.admission.due_for_refresh():
            rt.queue.add(key)
        if ticks % int(GAUGE_INTERVAL / QUEUE_INTERVAL) == 0:
            rt.reconciler.refresh_gauges()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    rt: Runtime = memo.runtime
    rt.ready = False
    for task in rt.tasks:
        task.cancel()
    for task in rt.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if rt.web is not None:
        await rt.web.cleanup()
    if rt.client is not None:
        await rt.client.close()
    if rt.store is not None:
        await rt.store.close()


@kopf.index(GROUP, VERSION, PLURAL)
async def job_seen(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Fill the job cache. As an index, it holds every other handler until the initial listing of
    jobs is complete: the queue must count every running job before it admits another."""
    rt: Runtime = memo.runtime
    key = rt.cache.observe_job(dict(body))
    if rt.queue is not None:
        rt.queue.add(key, urgent=_user_change(body))


def _user_change(body: kopf.Body) -> bool:
    """A started job whose spec changed (cancel, suspend, priority) or that is being deleted: as
    urgent as a pod's change. Our own status writes and brand-new jobs are not."""
    status = body.get("status") or {}
    if not status.get("startTime"):
        return False
    meta = body.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) or meta.get("generation") != status.get("observedGeneration")


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Deletions (index handlers do not see them)."""
    rt: Runtime = memo.runtime
    if event["type"] is None and rt.ready:
        rt.resync_wake.set()  # kopf re-listed (after a 410 Gone): converge the caches now
    if event["type"] != "DELETED":
        return
    body: dict[str, Any] = dict(event["object"])
    key = rt.cache.observe_job(body, deleted=True)
    if rt.queue is not None:
        rt.queue.drop(key)
        if rt.relay is not None:
            rt.relay.forget((body.get("metadata") or {}).get("uid", ""))
        if rt.reconciler is not None:
            rt.reconciler.admission.forget(key)


@kopf.index("v1", "pods", labels={LABEL_JOB_UID: kopf.PRESENT})
async def pod_seen(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Fill the pod cache. As an index handler this runs before any other handler, and kopf holds
    every other handler until the initial pod listing is indexed: so no job is reconciled before
    its pods are known (otherwise a restart would take a running attempt's pod for deleted)."""
    rt: Runtime = memo.runtime
    key = rt.cache.observe_pod(dict(body))
    if key is not None and rt.queue is not None:
        rt.queue.add(key, urgent=True)  # a running job moves on before new jobs are admitted


@kopf.on.event("v1", "pods", labels={LABEL_JOB_UID: kopf.PRESENT})
async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Deletions (index handlers do not see them) and a wake-up for the pod's job."""
    rt: Runtime = memo.runtime
    if event["type"] is None and rt.ready:
        rt.resync_wake.set()  # kopf re-listed (after a 410 Gone): converge the caches now
    body: dict[str, Any] = dict(event["object"])
    key = rt.cache.observe_pod(body, deleted=True) if event["type"] == "DELETED" else rt.cache.key_of_pod(body)
    if key is not None and rt.queue is not None:
        rt.queue.add(key, urgent=True)  # a running job moves on before new jobs are admitted
