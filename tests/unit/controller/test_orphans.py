"""The orphaned pods' collector with a fake client: a candidate's pod is deleted only when a live
read finds no job, or a job with another UID, by that name; failures wait for the next resync."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from procjob.adapters.kube import ApiError, NotLeading
from procjob.controller import orphans
from procjob.controller.orphans import OrphanCollector
from procjob.controller.sync import Orphan

ORPHAN = Orphan("media", "thumbs-work-a1-old", "pod-1", "thumbs", "uid-old")


class FakeClient:
    def __init__(self, jobs: dict[tuple[str, str], str] | None = None) -> None:
        self.jobs = jobs or {}  # (namespace, name) -> the UID of the job of that name now
        self.deleted: list[tuple[str, str, str | None]] = []
        self.reads: list[tuple[str, str]] = []
        self.fail: Exception | None = None

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((namespace, name))
        if self.fail is not None:
            raise self.fail
        uid = self.jobs.get((namespace, name))
        return None if uid is None else {"metadata": {"namespace": namespace, "name": name, "uid": uid}}

    async def delete_pod(
        self, namespace: str, name: str, uid: str | None = None, *, grace_seconds: int | None = None
    ) -> bool:
        self.deleted.append((namespace, name, uid))
        return True


async def test_a_pod_whose_job_is_gone_is_deleted_with_its_uid_as_precondition() -> None:
    counted: list[int] = []
    client = FakeClient()
    assert await OrphanCollector(client, lambda: counted.append(1)).collect(ORPHAN)
    assert client.deleted == [("media", "thumbs-work-a1-old", "pod-1")]
    assert counted == [1]


async def test_a_pod_whose_job_was_recreated_with_the_same_name_is_deleted() -> None:
    client = FakeClient({("media", "thumbs"): "uid-new"})
    assert await OrphanCollector(client).collect(ORPHAN)
    assert client.deleted == [("media", "thumbs-work-a1-old", "pod-1")]


async def test_a_pod_whose_job_exists_is_kept() -> None:
    """The job was created between the resync's job listing and its pod listing."""
    client = FakeClient({("media", "thumbs"): "uid-old"})
    assert not await OrphanCollector(client).collect(ORPHAN)
    assert client.deleted == []


@pytest.mark.parametrize("failure", [ApiError(500, "InternalError", "etcd"), NotLeading("standby"), TimeoutError()])
async def test_a_failed_read_deletes_nothing_and_waits_for_the_next_resync(failure: Exception) -> None:
    client = FakeClient()
    client.fail = failure
    assert not await OrphanCollector(client).collect(ORPHAN)
    assert client.deleted == []


async def test_the_loop_checks_the_latest_offer_at_most_a_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orphans, "BATCH", 2)
    client = FakeClient()
    collector = OrphanCollector(client)
    task = asyncio.create_task(collector.run())
    many = [Orphan("media", f"p{i}", f"u{i}", "thumbs", "uid-old") for i in range(5)]
    collector.offer(many[:1])
    collector.offer(many[1:])  # a newer resync's candidates replace the unchecked ones
    for _ in range(20):
        await asyncio.sleep(0)
    collector.offer([])  # nothing found: nothing to do, the loop keeps waiting
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    assert [name for _, name, _ in client.deleted] == ["p1", "p2"]
    assert not task.done() or task.cancelled()
