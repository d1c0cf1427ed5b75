"""Wait until the watch caches hold everything that existed at start (client-go's WaitForCacheSync).

Reconciling before that is wrong in two ways this operator cares about: a job whose pod is not in
the cache yet would take a running attempt's pod for deleted, and the queue would admit jobs
without counting the running ones it has not seen yet. The caches are filled only by the watches;
here we LIST once and wait until every listed object has arrived through them (or is gone: a
re-list drops what was deleted meanwhile, so a deletion between our list and the watch's cannot
hold us forever).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from procjob.adapters.kube import KubeClient
from procjob.controller.cache import Cache, job_key
from procjob.models.job import GROUP, LABEL_JOB_UID, PLURAL, VERSION

log = logging.getLogger("procjob.sync")


def _paths(namespaces: Sequence[str]) -> list[tuple[str, str]]:
    if not namespaces:
        return [(f"/apis/{GROUP}/{VERSION}/{PLURAL}", "/api/v1/pods")]
    return [(f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", f"/api/v1/namespaces/{ns}/pods") for ns in namespaces]


async def _listed(
    client: KubeClient, namespaces: Sequence[str]
) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    jobs: set[tuple[str, str]] = set()
    pods: set[tuple[str, str, str]] = set()
    for jobs_path, pods_path in _paths(namespaces):
        for body in await client.list_all(jobs_path):
            meta = body["metadata"]
            jobs.add((job_key(meta["namespace"], meta["name"]), meta["uid"]))
        for body in await client.list_all(pods_path, label_selector=LABEL_JOB_UID):
            meta = body["metadata"]
            pods.add((meta["labels"][LABEL_JOB_UID], meta["name"], meta["uid"]))
    return jobs, pods


def _missing(
    cache: Cache, jobs: set[tuple[str, str]], pods: set[tuple[str, str, str]]
) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    missing_jobs = {(key, uid) for key, uid in jobs if ((cache.job(key) or {}).get("metadata") or {}).get("uid") != uid}
    missing_pods = {(job_uid, name, uid) for job_uid, name, uid in pods if not cache.has_pod(job_uid, name, uid)}
    return missing_jobs, missing_pods


async def wait_for_sync(client: KubeClient, cache: Cache, namespaces: Sequence[str], patience: float = 120.0) -> bool:
    """True once synced; False (logged) when `patience` seconds pass first — the operator then goes on."""
    started = time.monotonic()
    jobs, pods = await _listed(client, namespaces)
    while True:
        jobs, pods = _missing(cache, jobs, pods)
        if not jobs and not pods:
            log.info("caches synced in %.2fs", time.monotonic() - started)
            return True
        if time.monotonic() - started > patience:
            log.warning(
                "caches not synced after %.0fs (%d jobs, %d pods missing); going on", patience, len(jobs), len(pods)
            )
            return False
        await asyncio.sleep(0.2)
        if time.monotonic() - started > 2:  # drop what was deleted between our list and the watch's
            now_jobs, now_pods = await _listed(client, namespaces)
            jobs &= now_jobs
            pods &= now_pods
