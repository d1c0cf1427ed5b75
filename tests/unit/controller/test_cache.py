"""The job cache keeps what the reconcile reads and nothing it does not (managedFields)."""

from __future__ import annotations

from typing import Any

from procjob.controller.cache import Cache


def job(rv: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"namespace": "ns", "name": "j", "uid": "u1", "resourceVersion": rv, **meta},
        "spec": {"stages": [{"name": "a", "image": "busybox"}]},
    }


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


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = Cache()
    key = cache.observe_job(job("7"))
    cache.observe_job(job("6", managedFields=[]))
    kept = cache.job(key)
    assert kept is not None
    assert kept["metadata"]["resourceVersion"] == "7"
    cache.observe_job(job("7"), deleted=True)
    assert cache.job(key) is None
