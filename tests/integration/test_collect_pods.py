"""podGC's one request for a finished job's pods (`KubeClient.delete_finished_pods`) against the rig's
API server: a DeleteCollection by the job's UID label and a phase field selector deletes the job's
ended pods in its namespace, and nothing else: not its pods still Pending or Running, not another
job's, not a pod of another namespace that carries the same label."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from procjob.adapters.kube import KubeClient
from tests.support.rig import Rig

pytestmark = pytest.mark.rig

IMAGE = "registry.invalid/procjob/collect-test:1"  # never pulled: kwok runs nothing


def pod(name: str, job_uid: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"procjob.dev/job-uid": job_uid},
            "annotations": {f"rig.procjob.dev/{k.replace('_', '-')}": v for k, v in annotations.items()},
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE}]},
    }


def phases(rig: Rig, namespace: str) -> dict[str, str]:
    items = rig.kubectl_json("get", "pods", "-n", namespace)["items"]
    return {p["metadata"]["name"]: p.get("status", {}).get("phase", "") for p in items}


def wait_for(rig: Rig, namespace: str, want: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while (seen := phases(rig, namespace)) != want:
        if time.monotonic() > deadline:
            pytest.fail(f"pods in {namespace}: {seen}, waited for {want}")
        time.sleep(0.3)


async def test_only_the_jobs_ended_pods_in_its_namespace_go(
    rig: Rig, namespace: str, tenant: str, client: KubeClient
) -> None:
    job, other = str(uuid.uuid4()), str(uuid.uuid4())
    for body in (
        pod("ok", job),
        pod("failed", job, exit_code="1"),
        pod("running", job, run_seconds="600"),
        pod("pending", job, waiting_reason="ImagePullBackOff"),
        pod("other-job", other),
    ):
        rig.apply(body, namespace)
    rig.apply(pod("elsewhere", job), tenant)
    wait_for(
        rig,
        namespace,
        {"ok": "Succeeded", "failed": "Failed", "running": "Running", "pending": "Pending", "other-job": "Succeeded"},
    )
    wait_for(rig, tenant, {"elsewhere": "Succeeded"})

    await client.delete_finished_pods(namespace, job)

    wait_for(rig, namespace, {"running": "Running", "pending": "Pending", "other-job": "Succeeded"})
    assert phases(rig, tenant) == {"elsewhere": "Succeeded"}
    await client.delete_finished_pods(namespace, job)  # nothing left to delete: no error
