"""In-memory indexes fed by the watches: jobs by key, pods by job UID.

The reconcile reads only from here (no GET per reconcile). Our own writes are put in as soon as
the API server answers, so the next reconcile does not act on an older copy; a watch event older
than what we hold (a smaller resourceVersion) is ignored for the same reason. resourceVersions are
opaque by contract but are etcd revisions in practice; when one does not parse as an integer the
newer arrival simply wins, and the optimistic-concurrency check on every status write remains the
guarantee against acting on stale state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from procjob.core.observe import PodObservation
from procjob.models.job import LABEL_JOB, LABEL_JOB_UID


def _rv(body: dict[str, Any]) -> int | None:
    raw = (body.get("metadata") or {}).get("resourceVersion")
    if raw is None:
        return None
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


def _older(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None:
        return False
    new_rv, old_rv = _rv(new), _rv(old)
    return new_rv is not None and old_rv is not None and new_rv < old_rv


def job_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class Cache:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, PodObservation]] = {}  # job UID -> pod name -> observation
        self._pod_rv: dict[str, int] = {}  # pod UID -> newest resourceVersion seen

    # ---------------------------------------------------------------------------------- jobs
    def observe_job(self, body: dict[str, Any], *, deleted: bool = False) -> str:
        meta = body.get("metadata") or {}
        key = job_key(meta.get("namespace", ""), meta.get("name", ""))
        current = self.jobs.get(key)
        if deleted:
            if current is not None and (current.get("metadata") or {}).get("uid") == meta.get("uid"):
                del self.jobs[key]
                self.pods.pop(meta.get("uid", ""), None)
            return key
        same_object = current is not None and (current.get("metadata") or {}).get("uid") == meta.get("uid")
        if same_object and _older(body, current):
            return key
        if "managedFields" in meta:
            # A third of a job's JSON that nothing here reads; a status PUT without it leaves the
            # server's copy as it is. Dropping it keeps 5,000 cached jobs under 200 MiB of RSS.
            body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        self.jobs[key] = body
        return key

    def job(self, key: str) -> dict[str, Any] | None:
        return self.jobs.get(key)

    def iter_jobs(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.jobs.values()))

    # ---------------------------------------------------------------------------------- pods
    def observe_pod(self, body: dict[str, Any], *, deleted: bool = False) -> str | None:
        """Record a pod; returns its job's key (from labels), or None for a pod that is not ours."""
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        job_uid = labels.get(LABEL_JOB_UID)
        job_name = labels.get(LABEL_JOB)
        if not job_uid or not job_name:
            return None
        name = meta.get("name", "")
        uid = meta.get("uid", "")
        pods = self.pods.setdefault(job_uid, {})
        if deleted:
            current = pods.get(name)
            if current is not None and current.uid == uid:
                del pods[name]
            self._pod_rv.pop(uid, None)
        else:
            rv = _rv(body)
            seen = self._pod_rv.get(uid)
            if rv is not None and seen is not None and rv < seen:
                return job_key(meta.get("namespace", ""), job_name)
            if rv is not None:
                self._pod_rv[uid] = rv
            pods[name] = PodObservation.from_api(body)
        if not pods:
            self.pods.pop(job_uid, None)
        return job_key(meta.get("namespace", ""), job_name)

    @staticmethod
    def key_of_pod(body: dict[str, Any]) -> str | None:
        meta = body.get("metadata") or {}
        job_name = (meta.get("labels") or {}).get(LABEL_JOB)
        return job_key(meta.get("namespace", ""), job_name) if job_name else None

    def mark_deleting(self, job_uid: str, name: str) -> None:
        pod = self.pods.get(job_uid, {}).get(name)
        if pod is not None and not pod.deleting:
            self.pods[job_uid][name] = dataclasses.replace(pod, deleting=True)

    def has_pod(self, job_uid: str, name: str, uid: str) -> bool:
        pod = self.pods.get(job_uid, {}).get(name)
        return pod is not None and pod.uid == uid

    def pods_of(self, job_uid: str) -> list[PodObservation]:
        return list(self.pods.get(job_uid, {}).values())

    def live_pods(self) -> int:
        return sum(1 for pods in self.pods.values() for p in pods.values() if p.live)
