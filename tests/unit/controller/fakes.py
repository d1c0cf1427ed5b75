"""A fake API server client and clock for unit tests of the controller layer (like the Job
controller's FakePodControl and clocktesting.FakeClock): objects in dicts, resourceVersions that
move, 409s on stale writes, and failures a test can queue per verb."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from procjob.adapters.kube import ApiError, Conflict, NotFound
from procjob.models.job import LABEL_JOB_UID

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeKube:
    """Just enough of KubeClient for Reconciler: jobs, pods, events."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, list[Exception]] = {}  # verb -> errors raised by its next calls
        self._rv = itertools.count(10)
        self._uid = itertools.count(1)

    def _maybe_fail(self, verb: str, what: str) -> None:
        self.calls.append((verb, what))
        errors = self.fail.get(verb)
        if errors:
            raise errors.pop(0)

    def add_job(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        meta = body["metadata"]
        self.jobs[(meta["namespace"], meta["name"])] = body
        return copy.deepcopy(body)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail("get_job", name)
        job = self.jobs.get((namespace, name))
        return copy.deepcopy(job) if job is not None else None

    async def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        self._maybe_fail("replace_status", meta["name"])
        stored = self.jobs.get((meta["namespace"], meta["name"]))
        if stored is None:
            raise NotFound(404, "NotFound", "gone")
        if stored["metadata"]["resourceVersion"] != meta.get("resourceVersion"):
            raise Conflict(409, "Conflict", "the object has been modified")
        stored["status"] = copy.deepcopy(body["status"])
        stored["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(stored)

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("patch_job", name)
        stored = self.jobs[(namespace, name)]
        want = (patch.get("metadata") or {}).get("resourceVersion")
        if want is not None and want != stored["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        stored["metadata"].update({k: v for k, v in patch["metadata"].items() if k != "resourceVersion"})
        stored["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(stored)

    async def create_pod(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self._maybe_fail("create_pod", name)
        if (namespace, name) in self.pods:
            raise Conflict(409, "AlreadyExists", f'pods "{name}" already exists')
        pod = copy.deepcopy(manifest)
        pod["metadata"].update(uid=f"pod-uid-{next(self._uid)}", resourceVersion=str(next(self._rv)))
        pod["status"] = {"phase": "Pending"}
        self.pods[(namespace, name)] = pod
        return copy.deepcopy(pod)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail("get_pod", name)
        pod = self.pods.get((namespace, name))
        return copy.deepcopy(pod) if pod is not None else None

    async def delete_pod(
        self, namespace: str, name: str, uid: str | None = None, *, grace_seconds: int | None = None
    ) -> bool:
        self._maybe_fail("delete_pod", name)
        self.calls.append(("delete_pod_grace", str(grace_seconds)))
        return self.pods.pop((namespace, name), None) is not None

    async def delete_finished_pods(self, namespace: str, job_uid: str) -> None:
        """The API server's DeleteCollection by the job's UID label and the phase field selector."""
        self._maybe_fail("delete_finished_pods", job_uid)
        for key, pod in list(self.pods.items()):
            labels = pod.get("metadata", {}).get("labels") or {}
            phase = (pod.get("status") or {}).get("phase") or "Pending"
            if key[0] == namespace and labels.get(LABEL_JOB_UID) == job_uid and phase not in ("Pending", "Running"):
                del self.pods[key]

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        self._maybe_fail("delete_job", name)
        job = self.jobs.get((namespace, name))
        if job is None or job["metadata"]["uid"] != uid:
            return False
        del self.jobs[(namespace, name)]
        return True

    async def post_event(self, **event: Any) -> None:
        self._maybe_fail("post_event", event["reason"])
        self.events.append(event)


def refused(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)
