"""Two replicas with leader election: one leads and writes, the other keeps its caches warm; when
the leader dies the standby takes over within lease + retry and the job finishes, with one pod per
(stage, attempt) and nothing lost."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.jobs import job, stage
from tests.support.kube import Kube, condition, finished, wait_for

pytestmark = pytest.mark.rig

FAST = (
    "--leader-elect",
    "--leader-election-lease-seconds",
    "3",
    "--leader-election-renew-deadline-seconds",
    "2",
    "--leader-election-retry-seconds",
    "0.3",
)


def holder(kube: Kube, namespace: str) -> str | None:
    lease = kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/procjob-operator", ok404=True
    )
    return None if lease is None else (lease.get("spec") or {}).get("holderIdentity")


def test_the_standby_takes_over_when_the_leader_dies(kube: Kube, namespace: str, operator: Any) -> None:
    args = (*FAST, "--leader-election-namespace", namespace)
    first = operator(namespace, *args, env={"POD_NAME": "replica-a"})
    second = operator(namespace, *args, env={"POD_NAME": "replica-b"})
    leader_id = wait_for("a leader", lambda: holder(kube, namespace))
    leader, standby = (first, second) if leader_id.startswith("replica-a") else (second, first)
    assert "leading" in leader.get("/readyz").text
    assert "standby" in standby.get("/readyz").text

    kube.create_job(namespace, job("failover", stage("a", rig={"run_seconds": 2}), stage("b", rig={"run_seconds": 2})))
    wait_for("the first pod", lambda: kube.pods(namespace) or None)
    leader.kill()
    killed_at = time.monotonic()
    new_leader = wait_for("the standby to lead", lambda: (h := holder(kube, namespace)) != leader_id and h, timeout=30)
    took = time.monotonic() - killed_at
    assert new_leader.startswith("replica-b" if leader is first else "replica-a")
    assert took < 3 + 0.3 + 5  # lease + retry, plus the API server's and this poll's slack
    done = wait_for("the job to finish under the new leader", finished(kube, namespace, "failover"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"
    attempts = [
        (p["metadata"]["labels"]["procjob.dev/stage"], p["metadata"]["labels"]["procjob.dev/attempt"])
        for p in kube.pods(namespace)
    ]
    assert len(attempts) == len(set(attempts))  # at most one pod per (stage, attempt)
    assert "leading" in standby.get("/readyz").text
