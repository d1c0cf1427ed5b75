"""Make the watch caches whole before the first reconcile, and keep them whole after a re-list.

`wait_for_sync` (client-go's WaitForCacheSync): reconciling with a partial cache is wrong in two
ways this operator cares about: a job whose pod is not in the cache yet would take a running
attempt's pod for deleted (and charge it), and the queue would admit jobs without counting the
running ones it has not seen yet. The caches are filled only by the watches; here we LIST once and
wait until every listed object has arrived through them (or is gone: a re-list every few seconds
drops what was deleted meanwhile, so a deletion between our list and the watch's cannot hold us
forever). It never gives up: readiness stays false and nothing is reconciled until it returns, and
it logs every `PROGRESS_SECONDS` how much is still missing. Pods are filtered with the cache's own
rule (`owning_job`), so a pod the cache will never hold cannot hold the sync either.

`resync` (the periodic resync of client-go's informers, but pruning): kopf re-lists after a watch
410 Gone (or a broken stream) and delivers the listed objects as events of type None, but it sends
no DELETED event for objects deleted while it was not watching, so those would stay in the caches
as ghosts (a ghost running job holds a queue slot for good). kopf exposes no "re-listed" signal to
handlers (its LISTED bookmark stays inside its queueing), so the mechanism is ours: every
`RESYNC_SECONDS` (and soon after `wake` is set, e.g. by a type-None event after start-up, which only
a re-list produces) we LIST jobs and our labelled pods and let `Cache.converge` drop what the
listing proves deleted. Cost: one LIST of jobs and one of labelled pods per interval (per watched
namespace), in pages of `PAGE`, each asked for as metadata only (`METADATA_ONLY`: no spec, no
status) and reduced to the objects' UIDs before the next is asked for, so the operator never holds
a second copy of every job. The pages are small because even metadata is large: a pod's
managedFields make it ~3.7 KB of JSON, and with pages of 500 each resync of the 20,000-job bench
still raised the RSS by 20-33 MiB (see `PAGE`). The listings are consistent
reads (no resourceVersion), never resourceVersion=0: the API server's watch cache ignores `limit`
for those and answers every object at once. It did: at 20,000 jobs each resync decoded all of them
in one go, every 5 minutes (a tracemalloc probe: 47 MiB of Python objects in use, 198 MiB at the
highest, RSS up from 161 to 307 MiB at the first resync), and the operator's RSS reached 706 MiB.
(Kubernetes 1.31 and later serve consistent reads from the watch cache too, so etcd is asked only
for its current revision.)

The same listings name the orphans (`_pods_listed`): our pods whose job was not listed. Garbage
collection deletes a pod whose owner is gone, but it learns of the owner's deletion from its own
watches, and it can miss one: in the chaos suite, after a 120 s API-server outage, a finished pod of
a job deleted and re-created with the same name stayed for good. `controller.orphans` confirms each
with a live read of its job and deletes the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from procjob.controller.cache import Cache, Listing, job_key
from procjob.core.observe import owning_job
from procjob.models.job import GROUP, LABEL_JOB_UID, PLURAL, VERSION

log = logging.getLogger("procjob.sync")

POLL_SECONDS = 0.2  # how often the caches are checked against the listing
RELIST_SECONDS = 5.0  # how often the listing is refreshed while waiting (drops what was deleted)
PROGRESS_SECONDS = 30.0  # how often a sync that is still waiting says what it waits for
RESYNC_SECONDS = 300.0  # the default interval of the converging resync
SETTLE_SECONDS = 5.0  # after a wake-up, let the re-list's burst of events pass before listing
# Items per LIST answer. A pod's metadata alone is ~3.7 KB of JSON (its managedFields), so a page of
# 500 pods decodes to ~25 MiB of Python objects (tracemalloc, the 20k bench's namespace); 100: 8.8 MiB,
# of which the listing's UID sets are most. A 20,000-job resync is then ~400 small GETs every 5 minutes.
PAGE = 100
# The API server's metadata-only answer (what client-go's metadata informers ask for): each item is a
# PartialObjectMetadata, without spec or status. A server that cannot do it answers the full list.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"

Sleep = Callable[[float], Awaitable[None]]
Loads = Callable[[str], Any]  # decodes one LIST page (page_loads)


class Lister(Protocol):
    """What sync needs of the API client (procjob.adapters.kube.KubeClient has it)."""

    async def get_page(self, path: str, params: dict[str, str], *, accept: str, loads: Loads) -> Any: ...


def _without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """json's object_hook for a page: each item's managedFields (most of a pod's metadata) is dropped as
    soon as that item's metadata is decoded, so a page never holds all of them at once (a page of 100
    pods: ~0.2 instead of ~1.2 MiB held, decoded in 60 % of the time). Nothing here reads
    managedFields; a label or annotation of that name would be dropped too, and nothing reads those."""
    obj.pop("managedFields", None)
    return obj


def page_loads(text: str) -> Any:
    """Decode one LIST page without its items' managedFields."""
    return json.loads(text, object_hook=_without_managed_fields)


async def _pages(
    client: Lister, path: str, *, label_selector: str | None = None, page: int = PAGE
) -> AsyncIterator[tuple[int | None, list[dict[str, Any]]]]:
    """A collection, page by page: the list's resourceVersion and the page's items (metadata only).

    A consistent read in pages of `page` items (never resourceVersion=0: see the module docstring); the
    continue token keeps every page at the first page's resourceVersion. Callers reduce each page to
    what they compare before asking for the next, so no more than one page is ever held decoded.
    """
    params = {"limit": str(page)}
    if label_selector:
        params["labelSelector"] = label_selector
    version: int | None = None
    while True:
        result = await client.get_page(path, dict(params), accept=METADATA_ONLY, loads=page_loads)
        meta = result.get("metadata") or {}
        if version is None:
            with contextlib.suppress(TypeError, ValueError):
                version = int(str(meta.get("resourceVersion")))
        yield version, result.get("items") or []
        del result  # the page's decoded objects go before the next page is asked for
        if not meta.get("continue"):
            return
        params["continue"] = str(meta["continue"])


def _uid(item: dict[str, Any]) -> str:
    return str((item.get("metadata") or {}).get("uid") or "")


def _scopes(namespaces: Sequence[str]) -> list[tuple[str | None, str, str]]:
    """(namespace or None for all, jobs path, pods path) for each LIST scope."""
    if not namespaces:
        return [(None, f"/apis/{GROUP}/{VERSION}/{PLURAL}", "/api/v1/pods")]
    return [
        (ns, f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", f"/api/v1/namespaces/{ns}/pods") for ns in namespaces
    ]


Listed = tuple[set[tuple[str, str]], set[tuple[str, str, str, str]]]  # (key, uid), (namespace, job uid, name, uid)


async def _listed(client: Lister, namespaces: Sequence[str]) -> Listed:
    jobs: set[tuple[str, str]] = set()
    pods: set[tuple[str, str, str, str]] = set()
    for _, jobs_path, pods_path in _scopes(namespaces):
        async for _, items in _pages(client, jobs_path):
            for item in items:
                meta = item.get("metadata") or {}
                jobs.add((job_key(meta.get("namespace", ""), meta.get("name", "")), meta.get("uid", "")))
        async for _, items in _pages(client, pods_path, label_selector=LABEL_JOB_UID):
            for item in items:
                owner = owning_job(item)  # the cache's rule: a pod it will never hold is not waited for
                if owner is not None:
                    pods.add((owner.namespace, owner.uid, item["metadata"].get("name", ""), _uid(item)))
    return jobs, pods


def _missing(cache: Cache, jobs: set[tuple[str, str]], pods: set[tuple[str, str, str, str]]) -> Listed:
    def job_there(key: str, uid: str) -> bool:
        outline = cache.jobs.get(key)  # not cache.job(key): that decodes the whole body
        return outline is not None and outline.uid == uid

    def pod_there(ns: str, job_uid: str, name: str, uid: str) -> bool:
        return cache.has_pod(ns, job_uid, name, uid) or cache.tombstones.holds((ns, job_uid), name, uid)

    return {j for j in jobs if not job_there(*j)}, {p for p in pods if not pod_there(*p)}


async def wait_for_sync(
    client: Lister,
    cache: Cache,
    namespaces: Sequence[str],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Return once the caches hold every job and acceptable pod that existed at the first LIST.

    Never gives up (see the module docstring); a failed LIST raises, for the caller to retry.
    """
    started = clock()
    jobs, pods = await _listed(client, namespaces)
    next_progress, next_relist = started + PROGRESS_SECONDS, started + RELIST_SECONDS
    while True:
        jobs, pods = _missing(cache, jobs, pods)
        if not jobs and not pods:
            log.info("caches synced in %.2fs", clock() - started)
            return
        if clock() >= next_progress:
            examples = sorted(key for key, _ in jobs)[:3] + sorted(f"{p[0]}/{p[2]}" for p in pods)[:3]
            log.warning(
                "caches not synced after %.0fs: %d jobs and %d pods listed are not in the caches yet (e.g. %s); "
                "not ready, still waiting",
                clock() - started,
                len(jobs),
                len(pods),
                ", ".join(examples),
            )
            next_progress = clock() + PROGRESS_SECONDS
        await sleep(POLL_SECONDS)
        if clock() >= next_relist:  # drop what was deleted between our list and the watch's
            now_jobs, now_pods = await _listed(client, namespaces)
            jobs &= now_jobs
            pods &= now_pods
            next_relist = clock() + RELIST_SECONDS


@dataclass(frozen=True)
class Orphan:
    """A listed pod of ours whose job was not in the job listing of its scope: the job is gone, or
    was created between the two listings (`controller.orphans` tells them apart)."""

    namespace: str
    name: str
    uid: str
    job_name: str
    job_uid: str


async def _jobs_listed(client: Lister, path: str, namespace: str | None, page: int) -> Listing:
    uids: set[str] = set()
    version: int | None = None
    async for at, items in _pages(client, path, page=page):
        version = at
        uids.update(_uid(item) for item in items)
    return Listing(uids=uids, resource_version=version, namespace=namespace)


async def _pods_listed(
    client: Lister, path: str, namespace: str | None, jobs: Listing, page: int
) -> tuple[Listing, list[Orphan]]:
    """Our pods' listing (only the pods the cache would hold: `owning_job`) and the orphans in it:
    pods controlled by a job whose UID the job listing does not hold."""
    uids: set[str] = set()
    found: list[Orphan] = []
    version: int | None = None
    async for at, items in _pages(client, path, label_selector=LABEL_JOB_UID, page=page):
        version = at
        for item in items:
            owner = owning_job(item)
            if owner is None:
                continue
            uids.add(_uid(item))
            if owner.uid not in jobs.uids:  # an orphan: its job was not listed
                name = str((item.get("metadata") or {}).get("name") or "")
                found.append(Orphan(owner.namespace, name, _uid(item), owner.name, owner.uid))
    return Listing(uids=uids, resource_version=version, namespace=namespace), found


@dataclass(frozen=True)
class Resynced:
    """What one resync removed from the caches.

    `dropped_jobs`: keys of jobs that no longer exist; forget their queue and admission state.
    `dropped_job_uids`: their UIDs, for the audit relay's `forget`.
    `dropped_pods`: keys of (still existing) jobs whose pods were removed; reconcile them again.
    `orphans`: listed pods whose job was not listed (see `orphans`).
    """

    dropped_jobs: frozenset[str] = frozenset()
    dropped_pods: frozenset[str] = frozenset()
    dropped_job_uids: frozenset[str] = frozenset()
    orphans: tuple[Orphan, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dropped_jobs or self.dropped_pods or self.orphans)


async def resync(client: Lister, cache: Cache, namespaces: Sequence[str], *, page: int = PAGE) -> Resynced:
    """LIST jobs and our labelled pods (`page` items an answer, metadata only, each page reduced to
    UIDs at once), and drop from the caches what the listings prove deleted."""
    jobs: dict[str, str] = {}
    pods: set[str] = set()
    orphaned: list[Orphan] = []
    for ns, jobs_path, pods_path in _scopes(namespaces):
        job_listing = await _jobs_listed(client, jobs_path, ns, page)
        pod_listing, found = await _pods_listed(client, pods_path, ns, job_listing, page)
        converged = cache.converge(job_listing, pod_listing)  # no await: atomic w.r.t. the watches
        jobs.update(converged.jobs)
        pods |= converged.pods
        orphaned += found
    return Resynced(
        dropped_jobs=frozenset(jobs),
        dropped_pods=frozenset(pods - jobs.keys()),
        dropped_job_uids=frozenset(jobs.values()),
        orphans=tuple(orphaned),
    )


async def keep_converging(
    client: Lister,
    cache: Cache,
    namespaces: Sequence[str],
    apply: Callable[[Resynced], None],
    *,
    every: float = RESYNC_SECONDS,
    wake: asyncio.Event | None = None,
    settle: float = SETTLE_SECONDS,
) -> None:
    """Run `resync` every `every` seconds, or `settle` seconds after `wake` is set; hand each
    non-empty result to `apply` (forget dropped jobs, requeue the others). A failure is logged and
    tried again at the next turn: this loop must not die (nothing would prune the caches)."""
    while True:
        woken = False
        if wake is None:
            await asyncio.sleep(every)
        else:
            with contextlib.suppress(TimeoutError):
                woken = await asyncio.wait_for(wake.wait(), timeout=every)
        if woken and wake is not None:
            await asyncio.sleep(settle)
            wake.clear()
        try:
            result = await resync(client, cache, namespaces)
            if result:
                if result.dropped_jobs or result.dropped_pods:
                    log.info(
                        "resync: %d jobs and the pods of %d jobs were deleted unseen; dropped from the caches",
                        len(result.dropped_jobs),
                        len(result.dropped_pods),
                    )
                apply(result)
        except Exception:
            log.exception("resync failed; trying again in %.0fs", every)
