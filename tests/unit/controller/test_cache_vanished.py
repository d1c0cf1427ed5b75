"""The cache keeps, with a deleted pod's tombstone, its last observation when the pod had ended or
carried a DisruptionTarget condition (from the DELETED event's object, or from an earlier sighting),
for decide's `vanished`; a pod deleted while running leaves none."""

from __future__ import annotations

from typing import Any

from procjob.controller.cache import Cache, Tombstones
from procjob.core.observe import PodObservation

NS, JOB = "ns", "job-uid"


def pod(name: str, uid: str, rv: int, *, phase: str = "Running", disruption: str | None = None) -> dict[str, Any]:
    conditions = [{"type": "DisruptionTarget", "status": "True", "reason": disruption}] if disruption else []
    owner = {"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", "name": "j", "uid": JOB, "controller": True}
    labels = {"procjob.dev/job-uid": JOB, "procjob.dev/job": "j", "procjob.dev/stage": "s", "procjob.dev/attempt": "1"}
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid,
            "resourceVersion": str(rv),
            "labels": labels,
            "ownerReferences": [owner],
        },
        "status": {"phase": phase, "conditions": conditions},
    }


def test_an_evicted_pod_deleted_at_once_is_remembered_with_its_disruption() -> None:
    cache = Cache()
    cache.observe_pod(pod("a", "ua", 1))
    cache.observe_pod(pod("a", "ua", 2, disruption="EvictionByEvictionAPI"), deleted=True)
    assert cache.gone(NS, JOB) == {"a": "ua"}
    assert cache.vanished(NS, JOB)["a"].disruption == "EvictionByEvictionAPI"


def test_an_end_seen_before_the_deletion_counts_when_the_deleted_object_says_less() -> None:
    cache = Cache()
    cache.observe_pod(pod("b", "ub", 1, phase="Succeeded"))
    cache.observe_pod(pod("b", "ub", 2), deleted=True)
    assert cache.vanished(NS, JOB)["b"].phase == "Succeeded"


def test_a_pod_deleted_while_running_leaves_no_last_sight_and_one_never_seen_alive_does() -> None:
    cache = Cache()
    cache.observe_pod(pod("c", "uc", 1))
    cache.observe_pod(pod("c", "uc", 2), deleted=True)
    cache.observe_pod(pod("d", "ud", 3, phase="Failed"), deleted=True)  # deleted before we saw it
    assert cache.gone(NS, JOB) == {"c": "uc", "d": "ud"}
    assert set(cache.vanished(NS, JOB)) == {"d"}


def test_last_sights_leave_with_their_tombstones() -> None:
    now = [0.0]
    stones = Tombstones(limit=10, seconds=60, clock=lambda: now[0])
    ended = PodObservation.from_api(pod("e", "ue", 1, phase="Succeeded"))
    stones.add((NS, JOB), "e", "ue", ended)
    stones.add((NS, JOB), "", "", ended)
    assert stones.ended((NS, JOB)) == {"e": ended}
    now[0] = 120
    assert stones.ended((NS, JOB)) == {}
    assert stones._last == {}


def test_a_finished_jobs_tombstones_are_forgotten_and_other_jobs_kept() -> None:
    """forget_gone (a finished job with no pod left, see Reconciler.reconcile): its pods' tombstones
    and last sights go; another job's stay."""
    cache = Cache()
    cache.observe_pod(pod("f", "uf", 1, phase="Succeeded"))
    cache.observe_pod(pod("f", "uf", 2), deleted=True)
    other = pod("g", "ug", 3, phase="Failed")
    other["metadata"]["labels"]["procjob.dev/job-uid"] = "other-uid"
    other["metadata"]["ownerReferences"][0]["uid"] = "other-uid"
    cache.observe_pod(other, deleted=True)
    cache.forget_gone(NS, JOB)
    assert cache.gone(NS, JOB) == {}
    assert cache.vanished(NS, JOB) == {}
    assert cache.gone(NS, "other-uid") == {"g": "ug"}
    assert set(cache.vanished(NS, "other-uid")) == {"g"}
    cache.forget_gone(NS, JOB)  # twice: nothing left, no error
