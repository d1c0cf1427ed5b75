"""The cache remembers, with a deleted pod's tombstone, the DisruptionTarget reason the pod last
showed (on its deletion, or on an earlier sighting), for decide's `disrupted`."""

from __future__ import annotations

import copy
from typing import Any

from procjob.controller.cache import Cache, Tombstones

NS, JOB = "ns", "job-uid"


def pod(name: str, uid: str, rv: int, disruption: str | None = None) -> dict[str, Any]:
    conditions = [{"type": "DisruptionTarget", "status": "True", "reason": disruption}] if disruption else []
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid,
            "resourceVersion": str(rv),
            "labels": {
                "procjob.dev/job-uid": JOB,
                "procjob.dev/job": "j",
                "procjob.dev/stage": "s",
                "procjob.dev/attempt": "1",
            },
            "ownerReferences": [
                {
                    "apiVersion": "procjob.dev/v1alpha1",
                    "kind": "ProcessingJob",
                    "name": "j",
                    "uid": JOB,
                    "controller": True,
                }
            ],
        },
        "status": {"phase": "Running", "conditions": conditions},
    }


def test_an_evicted_pod_deleted_at_once_is_remembered_as_disrupted() -> None:
    cache = Cache()
    cache.observe_pod(pod("a", "ua", 1))
    cache.observe_pod(pod("a", "ua", 2, "EvictionByEvictionAPI"), deleted=True)
    assert cache.gone(NS, JOB) == {"a": "ua"}
    assert cache.disrupted(NS, JOB) == {"a": "EvictionByEvictionAPI"}


def test_a_disruption_seen_before_the_deletion_counts_too() -> None:
    cache = Cache()
    cache.observe_pod(pod("b", "ub", 1, "DeletionByPodGC"))
    final = copy.deepcopy(pod("b", "ub", 2))
    cache.observe_pod(final, deleted=True)
    assert cache.disrupted(NS, JOB) == {"b": "DeletionByPodGC"}


def test_a_plain_deletion_and_a_pod_deleted_before_it_was_seen() -> None:
    cache = Cache()
    cache.observe_pod(pod("c", "uc", 1))
    cache.observe_pod(pod("c", "uc", 2), deleted=True)
    cache.observe_pod(pod("d", "ud", 3, "PreemptionByScheduler"), deleted=True)  # never seen alive
    assert cache.gone(NS, JOB) == {"c": "uc", "d": "ud"}
    assert cache.disrupted(NS, JOB) == {"d": "PreemptionByScheduler"}


def test_disruptions_leave_with_their_tombstones() -> None:
    now = [0.0]
    stones = Tombstones(limit=10, seconds=60, clock=lambda: now[0])
    stones.add((NS, JOB), "e", "ue", "EvictionByEvictionAPI")
    stones.add((NS, JOB), "", "", "ignored")
    assert stones.disrupted((NS, JOB)) == {"e": "EvictionByEvictionAPI"}
    now[0] = 120
    assert stones.disrupted((NS, JOB)) == {}
    assert stones._disruptions == {}
