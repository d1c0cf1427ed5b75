"""Garbage collection's backstop: delete our pods whose job no longer exists.

A pod is owned by its job (a controller ownerReference), and the garbage collector deletes it
when the job goes. The collector learns of that from its own watches, and it can miss it: in the
chaos suite, after a 120 s API-server outage, the finished pod of a job that was deleted (and
re-created with the same name) stayed for as long as anyone looked. No reconcile would ever delete
it: the job it belongs to is gone, so nothing is queued for it.

The periodic resync's listings name the candidates (`sync.orphans`: our pods whose job was not
listed). A candidate is deleted only after a live read of its job by name finds no job or a job
with another UID — a UID is never reused, so that job is gone for good; this is the garbage
collector's own check for an absent owner. A job created between the two listings is found and
its pod kept. Deletes carry the pod's UID as a precondition, so a pod of the same name made since
is untouched, and only the leader's collector runs (the writes are fenced like every other). At
most `BATCH` candidates are checked per resync: a mass of orphans (the collector down for long)
is worked off over several resyncs without a burst of requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import aiohttp

from procjob.adapters.kube import ApiError
from procjob.controller.sync import Orphan

log = logging.getLogger(__name__)

BATCH = 100  # candidates checked per resync


class OrphanClient(Protocol):
    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def delete_pod(
        self, namespace: str, name: str, uid: str | None = None, *, grace_seconds: int | None = None
    ) -> bool: ...


class OrphanCollector:
    """`offer` the candidates of each resync (every replica may); `run` (the leader only) checks
    and deletes them."""

    def __init__(self, client: OrphanClient, on_deleted: Callable[[], None] | None = None) -> None:
        self.client = client
        self.on_deleted = on_deleted  # e.g. a metrics counter's inc
        self._pending: list[Orphan] = []
        self._wake = asyncio.Event()

    def offer(self, candidates: Iterable[Orphan]) -> None:
        """The candidates of the latest resync replace any not yet checked (they are older)."""
        self._pending = list(candidates)[:BATCH]
        if self._pending:
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, []
            for orphan in pending:
                await self.collect(orphan)

    async def collect(self, orphan: Orphan) -> bool:
        """Delete the pod if its job is gone; True when this call deleted it."""
        where = f"{orphan.namespace}/{orphan.name}"
        try:
            job = await self.client.get_job(orphan.namespace, orphan.job_name)
            if job is not None and (job.get("metadata") or {}).get("uid") == orphan.job_uid:
                return False  # its job exists: created after the job listing
            deleted = await self.client.delete_pod(orphan.namespace, orphan.name, orphan.uid)
        except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("orphaned pod %s: not collected (%s); the next resync offers it again", where, exc)
            return False
        if deleted:
            log.info(
                "orphaned pod %s deleted: its job %s (UID %s) no longer exists", where, orphan.job_name, orphan.job_uid
            )
            if self.on_deleted is not None:
                self.on_deleted()
        return deleted
