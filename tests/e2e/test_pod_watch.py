"""The pod watch is filtered on the server: a tenant's own pods never reach the operator.

The operator watches pods with the label selector `procjob.dev/job-uid` (procjob.handlers.configure)
and has no client-side label filter of its own, so every pod the watch delivers reaches the cache,
which counts the ones that count for no job by why (`procjob_pod_events_ignored_total{reason}`).
A tenant's unlabelled pod, created in the watched namespace before a job runs there, is never
counted (the API server never sent it); a labelled look-alike is, as `not-ours` (it passes the
selector and is refused by the cache's ownership rule), which shows the counter works.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.jobs import job, stage
from tests.support.kube import Kube, condition, finished, wait_for
from tests.support.rig import Rig

pytestmark = [pytest.mark.rig]


def foreign_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.example/tenant:1"}]},
    }


def ignored(metrics: str, reason: str) -> float:
    found = re.search(rf'^procjob_pod_events_ignored_total{{reason="{reason}"}} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_tenants_own_pod_in_a_watched_namespace_never_reaches_the_cache(
    kube: Kube, rig: Rig, namespace: str, operator: Any
) -> None:
    op = operator(namespace)
    rig.apply(foreign_pod("tenant-web", {"app": "web"}), namespace=namespace)
    rig.apply(foreign_pod("tenant-look-alike", {"procjob.dev/job-uid": "nobody"}), namespace=namespace)
    kube.create_job(namespace, job("mine", stage("a")))
    done = wait_for("the job to finish", finished(kube, namespace, "mine"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"
    # The look-alike was created after the tenant's pod, in the same namespace's watch stream: once
    # it has been seen, the tenant's pod would have been seen too, had the API server sent it.
    wait_for("the look-alike counted as not ours", lambda: ignored(op.metrics(), "not-ours") >= 1)
    assert ignored(op.metrics(), "unlabelled") == 0
