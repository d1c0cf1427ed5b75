"""The caches: jobs keep what the reconcile reads; pods count only for the job that controls them;
deleted pods leave tombstones; a LIST removes ghosts without removing anything newer than itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from procjob.controller.assembly import finished_jobs
from procjob.controller.cache import IGNORED_NOT_OURS, IGNORED_UNLABELLED, Cache, Listing
from procjob.controller.reporting import active_job_counts
from procjob.models.lifecycle import body_state

VICTIM_UID = "uid-victim"


def job(rv: str, *, namespace: str = "ns", name: str = "j", uid: str = "u1", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"namespace": namespace, "name": name, "uid": uid, "resourceVersion": rv, **meta},
        "spec": {"stages": [{"name": "a", "image": "busybox"}]},
    }


def owner(job_uid: str = VICTIM_UID, name: str = "thumbs", **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "name": name,
        "uid": job_uid,
        "controller": True,
        **fields,
    }


def pod(
    name: str = "thumbs-work-a1-victim",
    *,
    uid: str = "pod-1",
    rv: str = "10",
    namespace: str = "media",
    job_uid: str = VICTIM_UID,
    job_name: str = "thumbs",
    owners: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    phase: str = "Running",
) -> dict[str, Any]:
    """A pod as the operator makes it for job media/thumbs, unless told otherwise."""
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": rv,
            "labels": labels
            if labels is not None
            else {"procjob.dev/job": job_name, "procjob.dev/job-uid": job_uid, "procjob.dev/stage": "work"},
            "ownerReferences": owners if owners is not None else [owner(job_uid, job_name)],
        },
        "status": {"phase": phase},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------ jobs
def test_managed_fields_are_not_kept_and_the_original_body_is_untouched() -> None:
    cache = Cache()
    body = job("5", managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}], labels={"a": "b"})
    key = cache.observe_job(body)
    kept = cache.job(key)
    assert kept is not None
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["labels"] == {"a": "b"}
    assert kept["metadata"]["resourceVersion"] == "5"
    assert kept["spec"] == body["spec"]
    assert "managedFields" in body["metadata"], "the caller's body is not modified"


def test_each_read_of_a_job_is_a_fresh_copy_that_cannot_alter_the_cache() -> None:
    cache = Cache()
    key = cache.observe_job(job("5", labels={"a": "b"}))
    first = cache.job(key)
    assert first is not None
    first["metadata"]["labels"]["a"] = "changed"
    first["spec"]["stages"].clear()
    again = cache.job(key)
    assert again is not None
    assert again["metadata"]["labels"] == {"a": "b"}
    assert again["spec"] == {"stages": [{"name": "a", "image": "busybox"}]}
    assert cache.job("ns/other") is None


def test_every_job_reads_back_exactly_as_observed_whatever_job_came_first() -> None:
    """The first job packed is the preset dictionary of all the others (Packer)."""
    cache = Cache()
    first = job("1", name="tiny")
    other = job("2", name="other", uid="u2", labels={"team": "média ✓"})
    other["spec"]["stages"] = [{"name": f"s{i}", "image": "x" * 300, "args": ["ü" * 50] * 5} for i in range(40)]
    other["status"] = {"stages": [{"name": "s0", "attempts": [{"attempt": 1, "exitCode": 0}]}], "queue": None}
    for body in (first, other):
        cache.observe_job(body)
    assert cache.job("ns/tiny") == first
    assert cache.job("ns/other") == other


SUCCEEDED = {"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "m"}
FAILED = {"type": "Succeeded", "status": "False", "reason": "BackoffLimitExceeded", "message": "m"}
T0, T1 = "2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"


@pytest.mark.parametrize(
    ("spec", "status", "meta"),
    [
        pytest.param({}, {}, {}, id="new"),
        pytest.param({"priority": 7, "cancel": False}, {"queue": {"position": 3}}, {}, id="queued, with a priority"),
        pytest.param({"priority": "high"}, {}, {}, id="a priority of the wrong type, left to the admission"),
        pytest.param({}, {"startTime": T0, "conditions": [{**SUCCEEDED, "status": "Unknown"}]}, {}, id="running"),
        pytest.param({}, {"startTime": T0, "completionTime": T1, "conditions": [SUCCEEDED]}, {}, id="succeeded"),
        pytest.param({}, {"startTime": T0, "completionTime": T1, "conditions": [FAILED]}, {}, id="failed"),
        pytest.param(
            {"suspend": True},
            {"conditions": [{**SUCCEEDED, "status": "Unknown", "reason": "Suspended"}]},
            {},
            id="suspended",
        ),
        pytest.param(
            {"cancel": True},
            {"startTime": T0},
            {"deletionTimestamp": T1, "finalizers": ["x"]},
            id="cancelled and being deleted",
        ),
    ],
)
def test_a_jobs_outline_answers_as_the_whole_object_does(
    spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any]
) -> None:
    body = job("5", creationTimestamp=T0, **meta)
    body["spec"].update(spec)
    body["status"] = status
    cache = Cache()
    key = cache.observe_job(body)
    [outline] = cache.outlines()
    assert (outline.key, outline.uid, outline.rv, outline.created) == (key, "u1", 5, T0)
    assert (outline.priority, outline.cancel, outline.suspend) == (
        spec.get("priority"),
        bool(spec.get("cancel")),
        bool(spec.get("suspend")),
    )
    assert (outline.started, outline.completed, outline.deleting) == (
        status.get("startTime"),
        status.get("completionTime"),
        "deletionTimestamp" in meta,
    )
    assert body_state(outline.as_body()) == body_state(body)
    assert active_job_counts([outline.as_body()]) == active_job_counts([body])
    assert finished_jobs([outline.as_body()]) == finished_jobs([body])


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = Cache()
    key = cache.observe_job(job("7"))
    cache.observe_job(job("6", managedFields=[]))
    kept = cache.job(key)
    assert kept is not None
    assert kept["metadata"]["resourceVersion"] == "7"
    cache.observe_job(job("7"), deleted=True)
    assert cache.job(key) is None


def test_a_deleted_job_takes_its_pods_with_it() -> None:
    cache = Cache()
    cache.observe_job(job("3", namespace="media", name="thumbs", uid=VICTIM_UID))
    cache.observe_pod(pod())
    cache.observe_job(job("4", namespace="media", name="thumbs", uid=VICTIM_UID), deleted=True)
    assert cache.pods_of("media", VICTIM_UID) == []
    assert cache.pods == {}


# ------------------------------------------------------------------------------------------ pods
def test_a_pod_the_operator_made_counts_for_its_job() -> None:
    cache = Cache()
    assert cache.observe_pod(pod()) == "media/thumbs"
    assert [p.uid for p in cache.pods_of("media", VICTIM_UID)] == ["pod-1"]
    assert cache.pods_of("media", VICTIM_UID)[0].namespace == "media"
    assert cache.has_pod("media", VICTIM_UID, "thumbs-work-a1-victim", "pod-1")


def test_an_impostor_in_another_namespace_neither_counts_for_the_victim_nor_overwrites_its_pod() -> None:
    cache = Cache()
    cache.observe_pod(pod())
    # Same name, the victim's UID in labels and controller reference: but in the tenant's namespace.
    key = cache.observe_pod(pod(uid="evil-1", rv="11", namespace="evil", phase="Failed"))
    assert key == "evil/thumbs", "it is filed under its own namespace, where no such job exists"
    victims = cache.pods_of("media", VICTIM_UID)
    assert [(p.uid, p.phase) for p in victims] == [("pod-1", "Running")]
    assert [p.uid for p in cache.pods_of("evil", VICTIM_UID)] == ["evil-1"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(pod(owners=[]), id="no owner at all"),
        pytest.param(pod(owners=[owner(controller=False)]), id="an owner that is not the controller"),
        pytest.param(pod(owners=[owner(kind="Job", apiVersion="batch/v1")]), id="a controller of another kind"),
        pytest.param(pod(owners=[owner(apiVersion="evil.dev/v1")]), id="a ProcessingJob of another group"),
        pytest.param(pod(owners=[owner("uid-other")]), id="a controller with another UID than the label"),
        pytest.param(pod(owners=[owner(name="other")]), id="a controller with another name than the label"),
        pytest.param(pod(labels={"procjob.dev/job-uid": VICTIM_UID}), id="only the job-uid label"),
        pytest.param(pod(namespace=""), id="no namespace"),
    ],
)
def test_a_pod_not_controlled_by_the_job_it_names_is_ignored(body: dict[str, Any]) -> None:
    cache = Cache()
    assert cache.observe_pod(body) is None
    assert cache.pods == {}
    assert cache.observe_pod(body, deleted=True) is None
    assert cache.gone("media", VICTIM_UID) == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(pod(labels={}), IGNORED_UNLABELLED, id="a pod without our label"),
        pytest.param(pod(labels={"app": "web"}, owners=[]), IGNORED_UNLABELLED, id="a tenant's own pod"),
        pytest.param(pod(owners=[]), IGNORED_NOT_OURS, id="labelled, no owner"),
        pytest.param(pod(owners=[owner("uid-other")]), IGNORED_NOT_OURS, id="labelled, another controller"),
    ],
)
def test_every_ignored_pod_event_is_counted_by_why(body: dict[str, Any], reason: str) -> None:
    seen: list[str] = []
    cache = Cache(ignored=seen.append)
    cache.observe_pod(body)
    cache.observe_pod(body, deleted=True)
    assert seen == [reason, reason]
    assert cache.pods == {}


def test_a_pod_the_operator_made_is_not_counted_as_ignored() -> None:
    seen: list[str] = []
    cache = Cache(ignored=seen.append)
    cache.observe_pod(pod())
    cache.observe_pod(pod(rv="11"), deleted=True)
    assert seen == []


def test_a_pod_whose_owner_is_edited_away_leaves_the_cache_as_if_deleted() -> None:
    cache = Cache()
    cache.observe_pod(pod())
    assert cache.observe_pod(pod(rv="12", owners=[])) == "media/thumbs", "its job is told"
    assert cache.pods_of("media", VICTIM_UID) == []
    assert cache.gone("media", VICTIM_UID) == {"thumbs-work-a1-victim": "pod-1"}


def test_an_older_pod_version_never_replaces_a_newer_one() -> None:
    cache = Cache()
    cache.observe_pod(pod(rv="12", phase="Succeeded"))
    cache.observe_pod(pod(rv="11", phase="Running"))
    assert [p.phase for p in cache.pods_of("media", VICTIM_UID)] == ["Succeeded"]


def test_a_new_incarnation_of_a_name_replaces_the_old_and_the_old_ones_deletion_keeps_it() -> None:
    cache = Cache()
    cache.observe_pod(pod(uid="old", rv="10"))
    cache.observe_pod(pod(uid="new", rv="20"))
    assert [p.uid for p in cache.pods_of("media", VICTIM_UID)] == ["new"]
    cache.observe_pod(pod(uid="old", rv="15"), deleted=True)
    assert [p.uid for p in cache.pods_of("media", VICTIM_UID)] == ["new"]
    cache.observe_pod(pod(uid="older", rv="5"))
    assert [p.uid for p in cache.pods_of("media", VICTIM_UID)] == ["new"], "an older incarnation loses"


def test_mark_deleting_marks_only_the_pod_of_that_namespace() -> None:
    cache = Cache()
    cache.observe_pod(pod())
    cache.observe_pod(pod(uid="evil-1", namespace="evil"))
    at = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    cache.mark_deleting("media", VICTIM_UID, "thumbs-work-a1-victim", at=at)
    (mine,) = cache.pods_of("media", VICTIM_UID)
    (theirs,) = cache.pods_of("evil", VICTIM_UID)
    assert (mine.deleting, mine.deletion_time, mine.live) == (True, at, False)
    assert not theirs.deleting


# ------------------------------------------------------------------------------------ tombstones
def test_a_deleted_pod_leaves_a_tombstone_for_its_job_only() -> None:
    cache = Cache()
    cache.observe_pod(pod())
    assert cache.observe_pod(pod(rv="13"), deleted=True) == "media/thumbs"
    assert cache.pods_of("media", VICTIM_UID) == []
    assert cache.gone("media", VICTIM_UID) == {"thumbs-work-a1-victim": "pod-1"}
    assert cache.gone("evil", VICTIM_UID) == {}


def test_a_pod_deleted_before_it_was_ever_seen_leaves_a_tombstone() -> None:
    cache = Cache()
    assert cache.observe_pod(pod(uid="brief"), deleted=True) == "media/thumbs"
    assert cache.gone("media", VICTIM_UID) == {"thumbs-work-a1-victim": "brief"}


def test_a_late_copy_of_a_deleted_pod_does_not_bring_it_back() -> None:
    cache = Cache()
    cache.observe_pod(pod(rv="13"), deleted=True)
    cache.observe_pod(pod(rv="10"))  # e.g. our create's answer, handled after the watch's DELETED
    assert cache.pods_of("media", VICTIM_UID) == []


def test_tombstones_are_bounded_in_number() -> None:
    cache = Cache(tombstone_limit=3)
    for i in range(5):
        cache.observe_pod(pod(f"p{i}", uid=f"u{i}"), deleted=True)
    assert cache.gone("media", VICTIM_UID) == {"p2": "u2", "p3": "u3", "p4": "u4"}
    assert len(cache.tombstones) == 3


def test_tombstones_expire() -> None:
    clock = Clock()
    cache = Cache(clock=clock, tombstone_seconds=3600)
    cache.observe_pod(pod("early", uid="u1"), deleted=True)
    clock.now += 1800
    cache.observe_pod(pod("later", uid="u2"), deleted=True)
    clock.now += 1801
    assert cache.gone("media", VICTIM_UID) == {"later": "u2"}
    clock.now += 1800
    assert cache.gone("media", VICTIM_UID) == {}
    assert len(cache.tombstones) == 0


def test_an_expired_tombstone_does_not_remove_a_newer_one_of_the_same_name() -> None:
    clock = Clock()
    cache = Cache(clock=clock, tombstone_seconds=100)
    cache.observe_pod(pod(uid="first"), deleted=True)
    clock.now += 60
    cache.observe_pod(pod(uid="second"), deleted=True)
    clock.now += 60
    assert cache.gone("media", VICTIM_UID) == {"thumbs-work-a1-victim": "second"}


# -------------------------------------------------------------------------------------- converge
def listing(items: list[dict[str, Any]], rv: int | None, namespace: str | None = None) -> Listing:
    return Listing(uids={i["metadata"]["uid"] for i in items}, resource_version=rv, namespace=namespace)


def test_converge_drops_a_job_deleted_unseen_with_its_pods() -> None:
    cache = Cache()
    cache.observe_job(job("5", namespace="media", name="thumbs", uid=VICTIM_UID))
    cache.observe_pod(pod(rv="6"))
    converged = cache.converge(listing([], 100), listing([pod(rv="6")], 100))
    assert converged.jobs == {"media/thumbs": VICTIM_UID}
    assert cache.job("media/thumbs") is None
    assert cache.pods_of("media", VICTIM_UID) == []


def test_converge_keeps_what_is_newer_than_the_listing() -> None:
    cache = Cache()
    cache.observe_job(job("150", name="created-after"))
    cache.observe_pod(pod(rv="150"))
    converged = cache.converge(listing([], 100), listing([], 100))
    assert not converged.jobs
    assert not converged.pods
    assert cache.job("ns/created-after") is not None
    assert len(cache.pods_of("media", VICTIM_UID)) == 1


def test_converge_keeps_what_is_listed() -> None:
    cache = Cache()
    cache.observe_job(job("5"))
    cache.observe_pod(pod(rv="6"))
    converged = cache.converge(listing([job("5")], 100), listing([pod(rv="6")], 100))
    assert (converged.jobs, converged.pods) == ({}, frozenset())
    assert cache.job("ns/j") is not None
    assert len(cache.pods_of("media", VICTIM_UID)) == 1


def test_converge_drops_a_job_replaced_by_another_of_the_same_name() -> None:
    cache = Cache()
    cache.observe_job(job("5", uid="old"))
    converged = cache.converge(listing([job("50", uid="new")], 100), listing([], 100))
    assert converged.jobs == {"ns/j": "old"}, "the listed job is another object"


def test_converge_keeps_objects_whose_versions_cannot_be_compared() -> None:
    cache = Cache()
    cache.observe_job(job("not-a-number"))
    cache.observe_pod(pod(rv="x"))
    cache.observe_job(job("5", name="other"))
    converged = cache.converge(listing([], None), listing([], None))
    assert not converged.jobs
    converged = cache.converge(listing([], 100), listing([], 100))
    assert converged.jobs == {"ns/other": "u1"}
    assert len(cache.pods_of("media", VICTIM_UID)) == 1


def test_converge_drops_a_ghost_pod_and_names_its_job_and_leaves_a_tombstone() -> None:
    cache = Cache()
    cache.observe_pod(pod("ghost", uid="g", rv="5"))
    cache.observe_pod(pod("alive", uid="a", rv="6"))
    converged = cache.converge(listing([], 100), listing([pod("alive", uid="a", rv="6")], 100))
    assert converged.pods == {"media/thumbs"}
    assert [p.name for p in cache.pods_of("media", VICTIM_UID)] == ["alive"]
    assert cache.gone("media", VICTIM_UID) == {"ghost": "g"}


def test_converge_of_one_namespace_leaves_the_others_alone() -> None:
    cache = Cache()
    cache.observe_job(job("5", namespace="a"))
    cache.observe_job(job("5", namespace="b"))
    cache.observe_pod(pod(uid="in-a", rv="5", namespace="a"))
    cache.observe_pod(pod(uid="in-b", rv="5", namespace="b"))
    converged = cache.converge(listing([], 100, "a"), listing([], 100, "a"))
    assert converged.jobs == {"a/j": "u1"}
    assert converged.pods == {"a/thumbs"}
    assert cache.job("b/j") is not None
    assert len(cache.pods_of("b", VICTIM_UID)) == 1


def test_a_pod_moved_to_another_job_of_its_namespace_counts_only_for_that_one() -> None:
    cache = Cache()
    cache.observe_pod(pod())
    assert cache.observe_pod(pod(rv="11", job_uid="uid-other", job_name="other")) == "media/other"
    assert cache.pods_of("media", VICTIM_UID) == []
    assert [p.uid for p in cache.pods_of("media", "uid-other")] == ["pod-1"]
