"""Cache sync against a fake API: it never gives up, unacceptable pods cannot hold it, and a
resync drops ghosts (objects deleted while no watch was looking) but nothing newer than its LIST."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from procjob.controller import sync
from procjob.controller.cache import Cache
from procjob.controller.sync import Resynced, keep_converging, resync, wait_for_sync
from tests.unit.controller.test_cache import VICTIM_UID, job, pod

JOBS = "/apis/procjob.dev/v1alpha1/processingjobs"
PODS = "/api/v1/pods"


class FakeApi:
    """Collections of jobs and pods at a resourceVersion, answered in pages like the API server."""

    def __init__(self, jobs: list[dict[str, Any]], pods: list[dict[str, Any]], rv: int = 100) -> None:
        self.jobs, self.pods, self.rv = jobs, pods, rv
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.answered: list[int] = []  # items per answer
        self.failures: list[Exception] = []  # raised by the next calls, one each
        self.accepts: list[str | None] = []  # the Accept header of each call
        self.loads: list[sync.Loads] = []  # the decoder each call asked for

    async def get_page(self, path: str, params: dict[str, str], *, accept: str, loads: sync.Loads) -> Any:
        self.calls.append((path, params))
        self.accepts.append(accept)
        self.loads.append(loads)
        if self.failures:
            raise self.failures.pop(0)
        namespace = path.split("/namespaces/")[1].split("/", maxsplit=1)[0] if "/namespaces/" in path else None
        items = self.pods if path.endswith("/pods") else self.jobs
        if path.endswith("/pods"):
            assert params.get("labelSelector") == "procjob.dev/job-uid"
            items = [p for p in items if "procjob.dev/job-uid" in p["metadata"].get("labels", {})]
        items = [i for i in items if namespace is None or i["metadata"]["namespace"] == namespace]
        start, limit = int(params.get("continue", "0")), int(params["limit"])
        if params.get("resourceVersion") == "0":
            limit = len(items)  # the watch cache ignores `limit` at resourceVersion=0, as the API server does
        page = items[start : start + limit]
        more = start + limit < len(items)
        self.answered.append(len(page))
        answer = {
            "metadata": {"resourceVersion": str(self.rv), **({"continue": str(start + limit)} if more else {})},
            "items": page,
        }
        return loads(json.dumps(answer))  # decoded as the client decodes the wire


class World:
    """A fake clock and sleep; `at[t]` runs when the clock passes t (the watch delivering)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.at: dict[float, Any] = {}

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        for when in sorted(t for t in self.at if t <= self.now):
            self.at.pop(when)()
        if self.now > 10_000:
            raise AssertionError("wait_for_sync is still waiting after 10,000 s of fake time")


# ------------------------------------------------------------------------------------ wait_for_sync
async def test_sync_finishes_once_the_watches_delivered_what_was_listed() -> None:
    api = FakeApi([job("5", namespace="media", name="thumbs", uid=VICTIM_UID)], [pod()])
    cache, world = Cache(), World()
    world.at[3.0] = lambda: (cache.observe_job(api.jobs[0]), cache.observe_pod(api.pods[0]))
    await wait_for_sync(api, cache, [], clock=world.clock, sleep=world.sleep)
    assert 3.0 <= world.now < 3.5


async def test_sync_never_gives_up_and_says_every_30s_what_it_waits_for(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi([job("5", namespace="media", name="thumbs", uid=VICTIM_UID)], [pod()])
    cache, world = Cache(), World()
    world.at[200.0] = lambda: cache.observe_job(api.jobs[0])
    world.at[300.0] = lambda: cache.observe_pod(api.pods[0])
    with caplog.at_level(logging.WARNING, logger="procjob.sync"):
        await wait_for_sync(api, cache, [], clock=world.clock, sleep=world.sleep)
    assert world.now >= 300.0, "no giving up after 120 s"
    progress = [r.getMessage() for r in caplog.records]
    assert len(progress) == 9, progress  # at 30, 60, ... 270 s
    assert "1 jobs and 1 pods listed are not in the caches yet (e.g. media/thumbs, media/thumbs-work" in progress[0]
    assert "0 jobs and 1 pods" in progress[-1]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(pod(labels={"procjob.dev/job-uid": VICTIM_UID}), id="a pod with only the job-uid label"),
        pytest.param(pod(owners=[]), id="a labelled pod with no owner"),
        pytest.param(pod(namespace="evil", owners=[{"kind": "Job", "apiVersion": "batch/v1"}]), id="another kind"),
    ],
)
async def test_a_pod_the_cache_will_never_hold_does_not_hold_the_sync(body: dict[str, Any]) -> None:
    api = FakeApi([], [body])
    cache, world = Cache(), World()
    cache.observe_pod(body)  # what the watch does with it
    await wait_for_sync(api, cache, [], clock=world.clock, sleep=world.sleep)
    assert world.now == 0.0
    assert cache.pods == {}


async def test_objects_deleted_between_our_list_and_the_watches_do_not_hold_the_sync() -> None:
    api = FakeApi([job("5", name="gone")], [pod()])
    cache, world = Cache(), World()

    def deleted() -> None:
        api.jobs.clear()
        api.pods.clear()

    world.at[1.0] = deleted
    await wait_for_sync(api, cache, [], clock=world.clock, sleep=world.sleep)
    assert world.now <= sync.RELIST_SECONDS + 1


async def test_a_pod_seen_deleted_by_the_watch_counts_as_synced() -> None:
    api = FakeApi([], [pod()])
    cache, world = Cache(), World()
    cache.observe_pod(pod(rv="20"), deleted=True)
    await wait_for_sync(api, cache, [], clock=world.clock, sleep=world.sleep)
    assert world.now == 0.0


async def test_sync_lists_each_namespace_in_pages() -> None:
    pods = [pod(f"p{i}", uid=f"u{i}", namespace="a") for i in range(sync.PAGE + 1)] + [pod(uid="x", namespace="b")]
    api = FakeApi([], pods)
    cache, world = Cache(), World()
    for body in pods:
        cache.observe_pod(body)
    await wait_for_sync(api, cache, ["a", "b"], clock=world.clock, sleep=world.sleep)
    paths = [path for path, _ in api.calls]
    assert paths == [
        "/apis/procjob.dev/v1alpha1/namespaces/a/processingjobs",
        "/api/v1/namespaces/a/pods",
        "/api/v1/namespaces/a/pods",
        "/apis/procjob.dev/v1alpha1/namespaces/b/processingjobs",
        "/api/v1/namespaces/b/pods",
    ]
    assert all("resourceVersion" not in params for _, params in api.calls), "a consistent read at start"


async def test_a_failed_list_is_raised_for_the_caller_to_retry() -> None:
    api = FakeApi([], [])
    api.failures.append(OSError("connection refused"))
    with pytest.raises(OSError, match="connection refused"):
        await wait_for_sync(api, Cache(), [])


# ------------------------------------------------------------------------------------------ resync
async def test_resync_drops_ghosts_and_names_the_jobs_to_forget_and_to_requeue() -> None:
    cache = Cache()
    cache.observe_job(job("5", name="ghost"))
    cache.observe_job(job("6", namespace="media", name="thumbs", uid=VICTIM_UID))
    cache.observe_job(job("150", name="new"))
    cache.observe_pod(pod("ghost-pod", uid="g", rv="7"))
    cache.observe_pod(pod("alive", uid="a", rv="8"))
    cache.observe_pod(pod("new-pod", uid="n", rv="150"))
    api = FakeApi([job("6", namespace="media", name="thumbs", uid=VICTIM_UID)], [pod("alive", uid="a", rv="8")])
    result = await resync(api, cache, [])
    assert result == Resynced(
        dropped_jobs=frozenset({"ns/ghost"}),
        dropped_pods=frozenset({"media/thumbs"}),
        dropped_job_uids=frozenset({"u1"}),
    )
    assert sorted(cache.jobs) == ["media/thumbs", "ns/new"]
    assert sorted(p.name for p in cache.pods_of("media", VICTIM_UID)) == ["alive", "new-pod"]
    assert cache.gone("media", VICTIM_UID) == {"ghost-pod": "g"}
    assert [params.get("resourceVersion") for _, params in api.calls] == [None, None], "consistent reads"


async def test_resync_of_a_dropped_job_does_not_also_requeue_it_for_its_pods() -> None:
    cache = Cache()
    cache.observe_job(job("5", namespace="media", name="thumbs", uid=VICTIM_UID))
    cache.observe_pod(pod(rv="6", uid="p"))
    cache.observe_pod(pod("other", uid="o", rv="6", namespace="media", job_uid="uid-x", job_name="x"))
    result = await resync(FakeApi([], []), cache, [])
    assert result.dropped_jobs == {"media/thumbs"}
    assert result.dropped_pods == {"media/x"}


async def test_resync_with_nothing_to_drop_is_empty() -> None:
    cache = Cache()
    cache.observe_job(job("5"))
    result = await resync(FakeApi([job("5")], []), cache, [])
    assert not result
    assert cache.job("ns/j") is not None


async def test_resync_lists_in_pages_of_metadata_and_keeps_only_uids() -> None:
    """Never resourceVersion=0 (the watch cache would answer every job at once: 20,000 decoded in
    one go at the 20k bench); metadata only; each page reduced to the UIDs `converge` compares."""
    jobs = [job("5", name=f"j{i}", uid=f"u{i}") for i in range(sync.PAGE + 1)]
    for body in jobs:
        body["metadata"]["labels"] = {"team": "x" * 60}
    api = FakeApi(jobs, [pod(rv="6", uid="p")])
    listing = await sync._jobs_listed(api, JOBS, None, sync.PAGE)
    pods, found = await sync._pods_listed(api, PODS, None, listing, sync.PAGE)
    assert api.answered == [sync.PAGE, 1, 1]
    assert all("resourceVersion" not in params for _, params in api.calls)
    assert api.accepts == [sync.METADATA_ONLY] * 3, "every page is asked for as metadata only"
    assert api.loads == [sync.page_loads] * 3, "and decoded without managedFields"
    assert [params.get("continue") for _, params in api.calls] == [None, str(sync.PAGE), None]
    assert listing.uids == {f"u{i}" for i in range(sync.PAGE + 1)}
    assert listing.resource_version == 100
    assert pods.uids == {"p"}
    assert [o.uid for o in found] == ["p"], "its job (thumbs) is not among the listed ones"


async def test_a_listed_pod_the_cache_would_not_hold_counts_as_absent() -> None:
    cache = Cache()
    cache.observe_job(job("5", namespace="media", name="thumbs", uid=VICTIM_UID))
    cache.observe_pod(pod(rv="5"))
    api = FakeApi([job("5", namespace="media", name="thumbs", uid=VICTIM_UID)], [pod(rv="5", owners=[])])
    result = await resync(api, cache, [])
    assert result.dropped_pods == {"media/thumbs"}
    assert cache.pods_of("media", VICTIM_UID) == []
    assert not result.orphans, "a pod no job controls is nobody's orphan"


async def test_resync_takes_its_page_size() -> None:
    api = FakeApi([job("5", name=f"j{i}", uid=f"u{i}") for i in range(5)], [])
    await resync(api, Cache(), [], page=2)
    assert api.answered == [2, 2, 1, 0]


# ------------------------------------------------------------------------------------ the loop
async def test_the_loop_applies_each_non_empty_resync_and_survives_failures(caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache()
    cache.observe_job(job("5", name="ghost"))
    api = FakeApi([], [])
    api.failures.append(RuntimeError("boom"))
    applied: list[Resynced] = []
    done = asyncio.Event()

    def apply(result: Resynced) -> None:
        applied.append(result)
        done.set()

    task = asyncio.create_task(keep_converging(api, cache, [], apply, every=0.01))
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
    assert [r.dropped_jobs for r in applied] == [{"ns/ghost"}], "applied once, after the failed turn"
    assert "resync failed" in caplog.text
    assert "boom" in caplog.text


async def test_the_loop_resyncs_soon_after_a_wake_up() -> None:
    cache = Cache()
    cache.observe_job(job("5", name="ghost"))
    wake = asyncio.Event()
    applied: list[Resynced] = []
    done = asyncio.Event()

    def apply(result: Resynced) -> None:
        applied.append(result)
        done.set()

    api = FakeApi([], [])
    task = asyncio.create_task(keep_converging(api, cache, [], apply, every=3600, wake=wake, settle=0))
    try:
        await asyncio.sleep(0.05)
        assert not api.calls, "nothing before the interval or a wake-up"
        wake.set()
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
    assert applied[0].dropped_jobs == {"ns/ghost"}
    assert not wake.is_set(), "the wake-up is consumed"


# ----------------------------------------------------------------------------------------- orphans
async def test_resync_names_our_pods_whose_job_was_not_listed_as_orphans() -> None:
    cache = Cache()
    pods = [
        pod("kept", uid="k"),  # its job (media/thumbs, VICTIM_UID) is listed
        pod("left", uid="l", job_uid="uid-gone", job_name="thumbs"),  # same name, an older incarnation
        pod("other", uid="o", job_uid="uid-x", job_name="x"),  # a job that is not listed at all
        pod("foreign", uid="f", job_uid="uid-y", job_name="y", owners=[]),  # labelled, not controlled: not ours
    ]
    api = FakeApi([job("6", namespace="media", name="thumbs", uid=VICTIM_UID)], pods)
    result = await resync(api, cache, [])
    assert result.orphans == (
        sync.Orphan("media", "left", "l", "thumbs", "uid-gone"),
        sync.Orphan("media", "other", "o", "x", "uid-x"),
    )
    assert result, "a resync that found orphans is handed on"


async def test_orphans_are_judged_per_listed_scope() -> None:
    """With watched namespaces, each namespace's pods are compared with that namespace's jobs."""
    pods = [pod("a", uid="a"), pod("b", uid="b", namespace="other", job_uid=VICTIM_UID)]
    api = FakeApi([job("6", namespace="media", name="thumbs", uid=VICTIM_UID)], pods)
    result = await resync(api, Cache(), ["media", "other"])
    assert [o.name for o in result.orphans] == ["b"], "a job in media does not own a pod in other"


def test_a_page_is_decoded_without_managed_fields_and_with_everything_the_resync_reads() -> None:
    fields = {"f:metadata": {"f:labels": {"f:procjob.dev/job-uid": {}}, "f:ownerReferences": {'k:{"uid":"j"}': {}}}}
    owner = {"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", "name": "a", "uid": "j", "controller": True}
    item = {
        "metadata": {
            "name": "a-s0-1",
            "namespace": "ns",
            "uid": "p",
            "labels": {"procjob.dev/job-uid": "j"},
            "ownerReferences": [owner],
            "managedFields": [{"manager": "procjob-operator", "fieldsType": "FieldsV1", "fieldsV1": fields}],
        }
    }
    text = json.dumps({"metadata": {"resourceVersion": "7", "continue": "c"}, "items": [item]})
    page = sync.page_loads(text)
    expected = json.loads(text)
    del expected["items"][0]["metadata"]["managedFields"]
    assert page == expected
