"""kopf wiring, kept thin: watch events fill the caches and queue keys; nothing else happens here.

Only low-level `on.event` handlers are used, so kopf writes nothing to our objects (no
diffbase annotation, no progress annotations, no finalizer of its own), and its diff and progress
bookkeeping is switched off: it would deep-copy every object on every watch event to compute an
"essence" that only on.create/update/field handlers read (9 % of the operator's CPU in `make
bench`). Pods are watched with a server-side label selector (procjob.dev/job-uid, see `configure`), so
the operator never receives other pods: the API server filters them out of the LIST and the watch.
The pod handlers have no `labels=` filter of kopf's own on top (it would filter the same label
again, client-side, after the pod had crossed the wire): what the watch delivers is what the cache
sees, and the cache counts the pods it ignores by why (`procjob_pod_events_ignored_total`), so an
"unlabelled" count above zero would show the selector not in effect.

No `@kopf.index` handlers: kopf holds a resource's other handlers until its initial listing is
indexed by giving every listed object a toggle in one set, and every toggle made or dropped wakes
every object's worker waiting on that set to re-test all toggles: quadratic in the listing. With
10,000 jobs created while no operator ran, the caches filled at ~10 jobs/s and the operator was not
ready after 15 minutes. What the index wait was for (no reconcile before the caches hold every job
and pod that existed at start) is `controller.sync.wait_for_sync`'s own job; until it returns no
reconcile worker runs, so the event handlers only file objects and queue keys.

Everything else is built, started and stopped by `controller.assembly.Operator` (the composition
root), kept in kopf's memo as `memo.operator`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from procjob.adapters.kube import Credentials
from procjob.controller.assembly import Operator
from procjob.models.job import GROUP, LABEL_JOB_UID, PLURAL, VERSION

log = logging.getLogger("procjob")

IDLE_WORKER_SECONDS = 0.5  # see `configure`
LIST_CHUNK = 500  # objects per page of kopf's initial LIST (see `configure`)
API_BACKOFFS = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0)  # kopf's first retries of a failed API request ...
API_BACKOFF_CAP = 10.0  # ... then this, for as long as it takes (see `RetryForever`)


class RetryForever:
    """kopf's `error_backoffs`: API_BACKOFFS, then API_BACKOFF_CAP without end. kopf's own default
    gives up after 9 attempts (~54 s), and a request that gives up in its resource observer ends
    the operator: a replica started while the API server was down for 120 s (the chaos suite)
    exited 1, was restarted, and exited again, a crash loop for as long as the outage. Like
    client-go's informers, the watches now wait out the outage and go on when it ends. Re-iterable:
    kopf starts from the beginning for each request (not Sized: kopf then logs attempts unnumbered)."""

    def __iter__(self) -> Iterator[float]:
        yield from API_BACKOFFS
        yield from itertools.repeat(API_BACKOFF_CAP)


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


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """The API server's URL from the kubelet's KUBERNETES_SERVICE_HOST/PORT, as client-go's InClusterConfig
    reads it: no DNS lookup (kopf's own service-account login dials `kubernetes.default.svc`, which needs
    cluster DNS). None outside a pod."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    if not host:
        return None
    port = environ.get("KUBERNETES_SERVICE_PORT", "").strip() or "443"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def connection_info(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """In a pod: the service account with the API server's address from the environment; else a kubeconfig."""
    info = kopf.login_with_service_account(settings=settings)
    if info is not None:
        server = in_cluster_server(os.environ)
        return dataclasses.replace(info, server=server) if server is not None else info
    return kopf.login_with_kubeconfig(settings=settings)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """kopf's own connection: the same as the operator's clients use."""
    return connection_info(settings)


def credentials(settings: kopf.OperatorSettings) -> Credentials:
    info = connection_info(settings)
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


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf for level-triggered, write-free watching; pods selected by our label on the server."""
    settings.watching.label_selectors["v1", "pods"] = LABEL_JOB_UID
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.networking.error_backoffs = RetryForever()
    settings.watching.server_timeout = 300
    # kopf's LIST before each watch is one response by default: 10,000 jobs (several KiB each with
    # managedFields) decoded at once, on every start and after every 410 Gone. In pages, at most one
    # page is held (kopf's fetch_objs drops each before asking for the next).
    settings.watching.chunk_size = LIST_CHUNK
    settings.posting.level = logging.ERROR  # our own Events mirror transitions; kopf's logs are not Events
    settings.scanning.disabled = True
    # kopf keeps a worker per object for this long after its last event, holding that event's
    # decoded object (~12 KiB for a job with managedFields): 5 s by default, i.e. thousands of
    # them in a burst. Our handlers only file the object, so a short life costs one task per event.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.progress_storage = NoProgress()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf (see `configure`); build and start the operator."""
    configure(settings)
    memo.operator = await Operator.build(memo.settings, credentials(settings))
    await memo.operator.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    operator: Operator | None = getattr(memo, "operator", None)
    if operator is not None:
        await operator.stop()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Fill the job cache and queue the job; a deletion drops it. Listed objects (type None) after
    startup are a relist (a 410 Gone): the operator converges then."""
    operator: Operator = memo.operator
    body = dict(event["object"])
    if event["type"] == "DELETED":
        operator.job_deleted(body)
        return
    operator.job_seen(body, urgent=_user_change(body), new=_not_started(body))
    if event["type"] is None:
        operator.relisted()


def _not_started(body: Mapping[str, Any]) -> bool:
    """A job waiting for its start that the operator has not acted on in its present spec (new,
    resumed, reprioritised): admission work, served in the work queue's `new` lane, beside the pod
    changes of running jobs (controller.queue). Not the echo of our own write to a queued job (its
    position; `observedGeneration` says we saw this spec): that is normal-lane work, or 10,000
    queued jobs' echoes would stand in the lane before every new job."""
    status = body.get("status") or {}
    if status.get("startTime"):
        return False
    return (body.get("metadata") or {}).get("generation") != status.get("observedGeneration")


def _user_change(body: Mapping[str, Any]) -> bool:
    """A started job whose spec changed (cancel, suspend, priority) or that is being deleted: as
    urgent as a pod's change. Our own status writes and brand-new jobs are not."""
    status = body.get("status") or {}
    if not status.get("startTime"):
        return False
    meta = body.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) or meta.get("generation") != status.get("observedGeneration")


@kopf.on.event("v1", "pods")
async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Fill the pod cache and wake the pod's job, as urgently as a timer; a relist as for jobs."""
    operator: Operator = memo.operator
    operator.pod_seen(dict(event["object"]), deleted=event["type"] == "DELETED")
    if event["type"] is None:
        operator.relisted()
