"""An evicted attempt is a disruption, retried without charge, also when the pod is gone before
the operator sees it failed (on the rig, kwok removes an evicted pod at once; a quick kubelet or
the pod garbage collector does the same). Regression test for a bug the chaos suite found (seed
42, quick profile): the eviction was charged as PodDeleted, so a job with `limit: 0` failed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.jobs import job, stage, stage_status
from tests.support.kube import Kube, condition, wait_for

pytestmark = pytest.mark.rig


def test_an_evicted_pod_is_a_disruption_not_a_charged_deletion(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    kube.create_job(
        namespace, job("evicted", stage("work", rig={"run_seconds": 30}), retry={"limit": 0, "delaysSeconds": [1]})
    )

    def running() -> dict[str, Any] | None:
        pods = [p for p in kube.pods(namespace) if (p.get("status") or {}).get("phase") == "Running"]
        return pods[0] if pods else None

    pod = wait_for("the attempt's pod to run", running, timeout=60)
    name = pod["metadata"]["name"]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
    kube.request("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", json_body=eviction)

    def second_attempt() -> dict[str, Any] | None:
        body = kube.job(namespace, "evicted")
        if body is None or condition(body).get("status") == "False":
            return body  # failed: the eviction was charged
        return body if stage_status(body, "work")["attemptCount"] >= 2 else None

    body = wait_for("a second attempt (or the job failed)", second_attempt, timeout=60)
    assert condition(body).get("status") != "False", f"the eviction was charged: {condition(body)}"
    first = stage_status(body, "work")["attempts"][0]
    assert (first["state"], first["reason"], first["charged"]) == ("Failed", "Disruption", False)
    assert "EvictionByEvictionAPI" in first["message"]
    kube.patch_job(namespace, "evicted", {"spec": {"cancel": True}})
