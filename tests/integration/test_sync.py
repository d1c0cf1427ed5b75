"""The operator's caches and cache sync against the rig's API server (no operator running).

A ProcessingJob and the pod it controls live in the victim's namespace; a second namespace holds
impostor pods that carry the victim's job UID in their labels (one with the very same name, one with
a controller reference to the victim's job), and the victim's namespace holds a pod with only the
job-uid label. The cache is fed with what the API server lists (what the watches' initial listing
delivers); only the real pod may count for the job, and the sync must finish in spite of the
impostors. Then the job and its pod are deleted behind the cache's back (no DELETED event, as after
a watch 410 Gone) and a resync must drop both.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from procjob.adapters.kube import KubeClient
from procjob.controller import sync
from procjob.controller.cache import Cache
from procjob.controller.sync import Resynced, resync, wait_for_sync
from tests.support.rig import Rig

pytestmark = pytest.mark.rig

IMAGE = "registry.invalid/procjob/sync-test:1"  # never pulled: kwok runs nothing
POD_NAME = "thumbs-work-a1-0a1b2c3d"


def pod(name: str, labels: dict[str, str], owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owners is not None:
        meta["ownerReferences"] = owners
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE}]},
    }


async def fill(client: KubeClient, cache: Cache, namespaces: list[str]) -> dict[str, str | None]:
    """What the watches' initial listing does: every job and labelled pod into the cache.
    Returns pod name@namespace -> the job key observe_pod answered (None: not ours)."""
    answers: dict[str, str | None] = {}
    for ns in namespaces:
        for body in await client.list_all(f"/apis/procjob.dev/v1alpha1/namespaces/{ns}/processingjobs"):
            cache.observe_job(body)
        for body in await client.list_all(f"/api/v1/namespaces/{ns}/pods", label_selector="procjob.dev/job-uid"):
            answers[f"{body['metadata']['name']}@{ns}"] = cache.observe_pod(body)
    return answers


async def resync_until(client: KubeClient, cache: Cache, namespaces: list[str], done: Any) -> Resynced:
    """resync lists at resourceVersion=0 (the watch cache), which may lag by a moment: try again."""
    seen = Resynced()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = await resync(client, cache, namespaces)
        seen = Resynced(
            seen.dropped_jobs | result.dropped_jobs,
            seen.dropped_pods | result.dropped_pods,
            seen.dropped_job_uids | result.dropped_job_uids,
        )
        if done(seen):
            return seen
        await asyncio.sleep(0.5)
    pytest.fail(f"resync did not drop what was deleted within 30 s: {seen}")


async def test_only_the_pod_the_job_controls_counts_and_sync_is_not_held(
    rig: Rig, crd: Path, namespace: str, tenant: str, client: KubeClient
) -> None:
    rig.apply(
        {
            "apiVersion": "procjob.dev/v1alpha1",
            "kind": "ProcessingJob",
            "metadata": {"name": "thumbs", "namespace": namespace},
            "spec": {"stages": [{"name": "work", "image": IMAGE}]},
        }
    )
    job_uid = rig.kubectl_json("get", "processingjob", "thumbs", "-n", namespace)["metadata"]["uid"]
    labels = {"procjob.dev/job": "thumbs", "procjob.dev/job-uid": job_uid}
    controller = {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "name": "thumbs",
        "uid": job_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    rig.apply(pod(POD_NAME, labels, [controller]), namespace)
    rig.apply(pod(POD_NAME, labels), tenant)  # same name and labels, no owner
    rig.apply(pod("impostor-owned", labels, [controller]), tenant)  # names the victim's job as controller
    rig.apply(pod("uid-label-only", {"procjob.dev/job-uid": job_uid}), namespace)
    real_uid = rig.kubectl_json("get", "pod", POD_NAME, "-n", namespace)["metadata"]["uid"]

    cache = Cache()
    answers = await fill(client, cache, [namespace, tenant])
    await asyncio.wait_for(wait_for_sync(client, cache, [namespace, tenant]), 30)

    assert answers[f"{POD_NAME}@{namespace}"] == f"{namespace}/thumbs"
    assert answers[f"{POD_NAME}@{tenant}"] is None, "a pod with no owner is nobody's"
    assert answers[f"uid-label-only@{namespace}"] is None
    assert [p.uid for p in cache.pods_of(namespace, job_uid)] == [real_uid], "only the pod the job controls"
    # The owned impostor may already be garbage-collected (its owner is not in its namespace); if
    # listed, it is filed under its own namespace, where no job has that UID.
    assert answers.get(f"impostor-owned@{tenant}", f"{tenant}/thumbs") == f"{tenant}/thumbs"
    assert all(p.namespace == tenant for p in cache.pods_of(tenant, job_uid))
    assert cache.job(f"{tenant}/thumbs") is None

    # Deleted behind the cache's back (no DELETED event reaches it, as after a watch's 410 Gone).
    rig.kubectl("delete", "pod", POD_NAME, "-n", namespace, "--grace-period=0", "--force", "--wait=true")
    pods_gone = await resync_until(client, cache, [namespace, tenant], lambda r: r.dropped_pods)
    assert pods_gone.dropped_pods == {f"{namespace}/thumbs"}
    assert cache.pods_of(namespace, job_uid) == []
    assert cache.gone(namespace, job_uid) == {POD_NAME: real_uid}

    rig.kubectl("delete", "processingjob", "thumbs", "-n", namespace, "--wait=true")
    jobs_gone = await resync_until(client, cache, [namespace, tenant], lambda r: r.dropped_jobs)
    assert jobs_gone.dropped_jobs == {f"{namespace}/thumbs"}
    assert jobs_gone.dropped_job_uids == {job_uid}
    assert cache.job(f"{namespace}/thumbs") is None


async def test_resync_reads_the_api_server_in_pages(rig: Rig, crd: Path, namespace: str, client: KubeClient) -> None:
    """Against the real API server: a resync asks in pages. Five jobs at two an answer take three
    requests; at resourceVersion=0 the watch cache would ignore `limit` and answer them in one (the
    20k bench's resyncs were answered with all 20,000 jobs at once)."""
    for i in range(5):
        rig.apply(
            {
                "apiVersion": "procjob.dev/v1alpha1",
                "kind": "ProcessingJob",
                "metadata": {"name": f"paged-{i}", "namespace": namespace},
                "spec": {"stages": [{"name": "work", "image": IMAGE}]},
            }
        )
    cache = Cache()
    await fill(client, cache, [namespace])
    before = client.requests.get("GET", 0)
    result = await resync(client, cache, [namespace], page=2)
    assert not result.dropped_jobs, "every job is listed, over three pages"
    assert sorted(cache.jobs) == [f"{namespace}/paged-{i}" for i in range(5)]
    assert client.requests.get("GET", 0) - before == 3 + 1, "the jobs in three answers, the (no) pods in one"


async def test_the_api_server_answers_the_resyncs_lists_with_metadata_only(
    rig: Rig, crd: Path, namespace: str, client: KubeClient
) -> None:
    """The resync's Accept header (sync.METADATA_ONLY) is honoured for our CRD and for pods: each item
    comes without spec or status, so a page of jobs is decoded at a fraction of its full size."""
    rig.apply(
        {
            "apiVersion": "procjob.dev/v1alpha1",
            "kind": "ProcessingJob",
            "metadata": {"name": "slim", "namespace": namespace},
            "spec": {"stages": [{"name": "work", "image": IMAGE}]},
        }
    )
    rig.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "slim-pod", "namespace": namespace},
            "spec": {"containers": [{"name": "main", "image": IMAGE}]},
        }
    )
    jobs_path = f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs"
    for path in (jobs_path, f"/api/v1/namespaces/{namespace}/pods"):
        answer = await client.request("GET", path, accept=sync.METADATA_ONLY, limit="5")
        assert answer["kind"] == "PartialObjectMetadataList", path
        assert answer["items"], path
        for item in answer["items"]:
            assert item["kind"] == "PartialObjectMetadata"
            assert "spec" not in item
            assert "status" not in item
            assert item["metadata"]["uid"]
            assert item["metadata"]["managedFields"], "the server sends them (what page_loads drops)"
        page = await client.get_page(path, {"limit": "5"}, accept=sync.METADATA_ONLY, loads=sync.page_loads)
        assert [i["metadata"]["uid"] for i in page["items"]] == [i["metadata"]["uid"] for i in answer["items"]]
        assert all("managedFields" not in i["metadata"] for i in page["items"]), path
    full = await client.request("GET", jobs_path)
    assert "spec" in full["items"][0], "without the header the same list carries the whole job"
