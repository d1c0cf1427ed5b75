"""In-memory indexes fed by the watches: jobs by key, pods by (namespace, job UID).

The reconcile reads only from here (no GET per reconcile). A job is kept as its compact JSON
(without `metadata.managedFields`, which nothing here reads), deflated (`Packer`), plus a
`JobOutline` of the few fields read of every job at once (queue order, gauges, the finished-jobs
cap): a decoded ProcessingJob costs about 9 KiB of Python objects for 2 KiB of JSON, and 20,000 of
them alone took 177 MiB; packed, with an outline, they take about 20 MiB. `job(key)` decodes a
fresh dict for each reconcile (~20 us, beside the pydantic parse that follows it), so no caller
can alter the cached copy.

Our own writes are put in as soon as the API server answers, so the next reconcile does not act
on an older copy; a watch event older than what we hold (a smaller resourceVersion) is ignored for
the same reason. resourceVersions are opaque by contract but are etcd revisions in practice; when
one does not parse as an integer the newer arrival simply wins, and the optimistic-concurrency
check on every status write remains the guarantee against acting on stale state.

Pods are untrusted (any tenant can create one with any name and labels in its own namespace), so a
pod is cached only when `owning_job` accepts it, under the namespace and UID of the job that
controls it, and its job's key comes from that controller reference, never from a label alone. A
pod that stops being acceptable (its owner or labels edited) leaves the cache as if deleted. The
pods ignored are counted by why (`ignored`): `unlabelled` (no procjob.dev/job-uid label: the watch's
server-side label selector keeps these away, so any count shows it is not in effect) or `not-ours`
(labelled, but not controlled by the job its labels name: a look-alike).

Two things the watches alone cannot give are kept here too: tombstones (which pods were seen
deleted, for a while) so the reconcile can tell a pod that existed and vanished from one never
created, and `converge`, which removes ghosts after a re-list (kopf sends no DELETED event for
objects deleted while its watch was down).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from procjob.core.observe import PodObservation, owning_job
from procjob.models.job import LABEL_JOB_UID
from procjob.models.lifecycle import SUCCEEDED, body_state
from procjob.models.timestamps import parse_time

PodKey = tuple[str, str]  # (namespace, job UID)

TOMBSTONE_LIMIT = 10_000
TOMBSTONE_SECONDS = 3600.0

ZDICT_BYTES = 32 * 1024  # zlib's window: a longer preset dictionary is not used
ZLIB_LEVEL = 1  # the fastest: with the preset dictionary, higher levels gain little

IGNORED_UNLABELLED = "unlabelled"  # a pod without our label reached the cache: the selector is not in effect
IGNORED_NOT_OURS = "not-ours"  # labelled as ours, but not controlled by the job its labels name


def _rv(body: dict[str, Any]) -> int | None:
    raw = (body.get("metadata") or {}).get("resourceVersion")
    if raw is None:
        return None
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


def _older(new: int | None, old: int | None) -> bool:
    return new is not None and old is not None and new < old


def _parsed_time(raw: object) -> datetime | None:
    try:
        return parse_time(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def job_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass(frozen=True, slots=True)
class JobOutline:
    """What is read of every cached job at once, without decoding it (see the module docstring)."""

    namespace: str
    name: str
    uid: str
    rv: int | None
    created: str | None  # metadata.creationTimestamp
    created_at: datetime | None  # ... parsed once here, not on each pass over the queue
    deleting: bool  # metadata.deletionTimestamp is set
    priority: object  # spec.priority as written (the admission caps and checks it)
    cancel: bool
    suspend: bool
    started: str | None  # status.startTime
    completed: str | None  # status.completionTime
    state: str | None  # the Succeeded condition's status ...
    reason: str | None  # ... and reason (models.lifecycle)
    key: str  # namespace/name (kept, not joined again on each pass over the queue)

    @classmethod
    def of(cls, body: dict[str, Any]) -> JobOutline:
        meta, spec, status = (body.get(k) or {} for k in ("metadata", "spec", "status"))
        state, reason = body_state(body)
        return cls(
            namespace=sys.intern(str(meta.get("namespace", ""))),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid") or ""),
            rv=_rv(body),
            created=meta.get("creationTimestamp"),
            created_at=_parsed_time(meta.get("creationTimestamp")),
            deleting=bool(meta.get("deletionTimestamp")),
            priority=spec.get("priority"),
            cancel=bool(spec.get("cancel")),
            suspend=bool(spec.get("suspend")),
            started=status.get("startTime"),
            completed=status.get("completionTime"),
            state=sys.intern(state) if isinstance(state, str) else None,
            reason=sys.intern(reason) if isinstance(reason, str) else None,
            key=job_key(str(meta.get("namespace", "")), str(meta.get("name", ""))),
        )

    def as_body(self) -> dict[str, Any]:
        """A ProcessingJob object with only the outline's fields, for the helpers that read raw
        objects (models.lifecycle.body_state, controller.reporting.active_job_counts)."""
        meta: dict[str, Any] = {"namespace": self.namespace, "name": self.name, "uid": self.uid}
        if self.created is not None:
            meta["creationTimestamp"] = self.created
        if self.deleting:
            meta["deletionTimestamp"] = True
        status: dict[str, Any] = {"startTime": self.started, "completionTime": self.completed}
        if self.state is not None:
            status["conditions"] = [{"type": SUCCEEDED, "status": self.state, "reason": self.reason}]
        spec = {"priority": self.priority, "cancel": self.cancel, "suspend": self.suspend}
        return {"metadata": meta, "spec": spec, "status": status}


class Packer:
    """A job's compact JSON, deflated with a preset dictionary: the first job packed (its last
    ZDICT_BYTES). Jobs share most of their JSON (field names, images, conditions, timestamps' digits),
    so 2 KiB of a one-stage job's JSON deflate to about 200 bytes against another job (600 with
    no dictionary), for ~55 us per write and ~3 us per read. The dictionary is fixed once chosen
    (every packed body needs it to be read back); a first job unlike the rest only costs ratio."""

    def __init__(self) -> None:
        self._zdict: bytes | None = None

    def pack(self, body: dict[str, Any]) -> bytes:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if self._zdict is None:
            self._zdict = data[-ZDICT_BYTES:]
        deflate = zlib.compressobj(ZLIB_LEVEL, zdict=self._zdict)
        return deflate.compress(data) + deflate.flush()

    def unpack(self, packed: bytes) -> dict[str, Any]:
        assert self._zdict is not None, "nothing was packed yet"
        body: dict[str, Any] = json.loads(zlib.decompressobj(zdict=self._zdict).decompress(packed))
        return body


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a cached pod is filed, and the newest resourceVersion seen for it."""

    key: PodKey
    name: str
    rv: int | None


@dataclass(frozen=True)
class Listing:
    """One LIST, reduced to what `converge` compares: the UIDs of the objects that existed at
    `resource_version` in `namespace` (None: cluster-wide). For pods, only those the cache would hold
    (`owning_job`): a listed pod it would not hold counts as absent."""

    uids: AbstractSet[str]
    resource_version: int | None
    namespace: str | None = None


@dataclass(frozen=True)
class Converged:
    """What `Cache.converge` removed: jobs gone (key -> UID), and keys of jobs that lost pods."""

    jobs: dict[str, str] = dataclasses.field(default_factory=dict)
    pods: frozenset[str] = frozenset()


class Tombstones:
    """(namespace, job UID) -> pod name -> UID of pods seen deleted; the newest `limit`, for `seconds`.

    With the pod's last observation when it had ended (Succeeded, Failed) or carried a
    DisruptionTarget condition: a pod may be gone before a reconcile saw that (kwok or a quick
    kubelet removes an evicted pod at once; someone deletes a pod just after it succeeded), and its
    end must still count as what it was, not as a deletion."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float]) -> None:
        self.limit, self.seconds, self._clock = limit, seconds, clock
        self._order: deque[tuple[float, PodKey, str, str]] = deque()
        self._index: dict[PodKey, dict[str, str]] = {}
        self._last: dict[str, PodObservation] = {}  # pod UID -> its last observation, when it had ended

    def add(self, key: PodKey, name: str, uid: str, last: PodObservation | None = None) -> None:
        if not uid:
            return
        if last is not None and (last.terminal or last.disruption):
            self._last[uid] = last
        if self.holds(key, name, uid):
            return
        self._index.setdefault(key, {})[name] = uid
        self._order.append((self._clock(), key, name, uid))
        self._prune()

    def ended(self, key: PodKey) -> dict[str, PodObservation]:
        """Pod name -> last observation, of the tombstones of `key` whose pod had ended or was disrupted."""
        return {n: self._last[u] for n, u in self.of(key).items() if u in self._last}

    def forget(self, key: PodKey) -> None:
        """Drop the tombstones of `key` (a finished job no pass reads them for): their index entries
        and last observations now; their place in the age order when it is pruned."""
        for uid in self._index.pop(key, {}).values():
            self._last.pop(uid, None)

    def holds(self, key: PodKey, name: str, uid: str) -> bool:
        return bool(uid) and self._index.get(key, {}).get(name) == uid

    def of(self, key: PodKey) -> dict[str, str]:
        self._prune()
        return dict(self._index.get(key, {}))

    def __len__(self) -> int:
        return len(self._order)

    def _prune(self) -> None:
        horizon = self._clock() - self.seconds
        while self._order and (len(self._order) > self.limit or self._order[0][0] < horizon):
            _, key, name, uid = self._order.popleft()
            self._last.pop(uid, None)
            names = self._index.get(key)
            if names is not None and names.get(name) == uid:  # not a newer pod of the same name
                del names[name]
                if not names:
                    del self._index[key]


class Cache:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        tombstone_limit: int = TOMBSTONE_LIMIT,
        tombstone_seconds: float = TOMBSTONE_SECONDS,
        ignored: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._ignored = ignored  # called with IGNORED_* for each pod event that counts for no job
        self.jobs: dict[str, JobOutline] = {}  # key -> outline
        self._bodies: dict[str, bytes] = {}  # key -> the job's packed JSON, without managedFields
        self._packer = Packer()
        self.pods: dict[PodKey, dict[str, PodObservation]] = {}  # (namespace, job UID) -> pod name -> pod
        self.tombstones = Tombstones(tombstone_limit, tombstone_seconds, clock)
        self._where: dict[str, _Where] = {}  # pod UID -> where it is filed
        self._job_of: dict[PodKey, str] = {}  # the job key of cached pods, from their controller reference

    # ---------------------------------------------------------------------------------- jobs
    def observe_job(self, body: dict[str, Any], *, deleted: bool = False) -> str:
        meta = body.get("metadata") or {}
        key = job_key(meta.get("namespace", ""), meta.get("name", ""))
        current = self.jobs.get(key)
        same_object = current is not None and current.uid == meta.get("uid")
        if deleted or (meta.get("deletionTimestamp") and not meta.get("finalizers")):
            # A job with a deletionTimestamp and no finalizer left no longer exists: the API server
            # deletes it in the very write that removed the last finalizer. Our own write's answer
            # may arrive after the watch's DELETED event, and must not bring the job back (a ghost
            # that would hold a queue slot until the next resync).
            if same_object:
                self._drop_job(key)
            return key
        if same_object and current is not None and _older(_rv(body), current.rv):
            return key
        if "managedFields" in meta:
            # A third of a job's JSON that nothing here reads; a status PUT without it leaves the
            # server's copy as it is.
            body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        self.jobs[key] = JobOutline.of(body)
        self._bodies[key] = self._packer.pack(body)
        return key

    def job(self, key: str) -> dict[str, Any] | None:
        """The job as last seen (a fresh copy), or None."""
        packed = self._bodies.get(key)
        return None if packed is None else self._packer.unpack(packed)

    def outlines(self) -> list[JobOutline]:
        return list(self.jobs.values())

    def _drop_job(self, key: str) -> None:
        outline = self.jobs.pop(key)
        self._bodies.pop(key, None)
        for pod in self.pods.pop((outline.namespace, outline.uid), {}).values():
            self._where.pop(pod.uid, None)
        self._job_of.pop((outline.namespace, outline.uid), None)

    # ---------------------------------------------------------------------------------- pods
    def observe_pod(self, body: dict[str, Any], *, deleted: bool = False) -> str | None:
        """Record a pod; returns its job's key, or None for a pod that counts for no job."""
        meta = body.get("metadata") or {}
        uid, name = meta.get("uid") or "", meta.get("name") or ""
        owner = owning_job(body)
        if owner is None:
            self._ignored(IGNORED_NOT_OURS if LABEL_JOB_UID in (meta.get("labels") or {}) else IGNORED_UNLABELLED)
        if deleted or owner is None:
            # Deleted, or no longer ours as it stands (owner or labels edited): gone for its job.
            last = PodObservation.from_api(body) if deleted and owner is not None else None  # its last state
            job = self._remove_pod(uid, last)
            if job is None and deleted and owner is not None:
                self.tombstones.add((owner.namespace, owner.uid), name, uid, last)  # deleted before we saw it
                return job_key(owner.namespace, owner.name)
            return job
        key, job = (owner.namespace, owner.uid), job_key(owner.namespace, owner.name)
        if self.tombstones.holds(key, name, uid):
            return job  # a late copy of a pod already seen deleted (e.g. our create's answer)
        rv, where = _rv(body), self._where.get(uid)
        if where is not None and _older(rv, where.rv):
            return job
        current = self.pods.get(key, {}).get(name)
        if current is not None and current.uid != uid:
            held = self._where.get(current.uid)
            if held is not None and _older(rv, held.rv):
                return job  # an older incarnation of the name than the one we hold
            self._remove_pod(current.uid)  # the name was freed, so that pod is gone
        if where is not None and where.key != key:
            self._remove_pod(uid)  # re-owned by another of the namespace's jobs
        self.pods.setdefault(key, {})[name] = PodObservation.from_api(body)
        self._where[uid] = _Where(key, name, rv)
        self._job_of[key] = job
        return job

    def _remove_pod(self, uid: str, last: PodObservation | None = None) -> str | None:
        """Forget a cached pod and leave a tombstone (with how it last looked, see Tombstones); its
        job's key, or None if it was not cached."""
        where = self._where.pop(uid, None) if uid else None
        if where is None:
            return None
        job = self._job_of.get(where.key)
        pods = self.pods.get(where.key, {})
        if (pod := pods.get(where.name)) is not None and pod.uid == uid:
            if last is None or not (last.terminal or last.disruption):
                last = pod  # the deleted object says less than what we had seen (a relisted gap)
            del pods[where.name]
        if not pods:
            self.pods.pop(where.key, None)
            self._job_of.pop(where.key, None)
        self.tombstones.add(where.key, where.name, uid, last)
        return job

    def mark_deleting(self, namespace: str, job_uid: str, name: str, *, at: datetime | None = None) -> None:
        """We sent the delete: not live any more, even before the watch shows the deletionTimestamp."""
        pods = self.pods.get((namespace, job_uid), {})
        pod = pods.get(name)
        if pod is not None and not pod.deleting:
            pods[name] = dataclasses.replace(pod, deleting=True, deletion_time=pod.deletion_time or at)

    def has_pod(self, namespace: str, job_uid: str, name: str, uid: str) -> bool:
        pod = self.pods.get((namespace, job_uid), {}).get(name)
        return pod is not None and pod.uid == uid

    def pods_of(self, namespace: str, job_uid: str) -> list[PodObservation]:
        return list(self.pods.get((namespace, job_uid), {}).values())

    def gone(self, namespace: str, job_uid: str) -> dict[str, str]:
        """Pod name -> UID of this job's pods seen deleted in the last hour (bounded, see Tombstones)."""
        return self.tombstones.of((namespace, job_uid))

    def forget_gone(self, namespace: str, job_uid: str) -> None:
        """The job has finished and none of its pods is cached: what `gone` and `vanished` hold for it
        is read no more (a finished job creates no pod and waits for none); memory for the next."""
        self.tombstones.forget((namespace, job_uid))

    def vanished(self, namespace: str, job_uid: str) -> dict[str, PodObservation]:
        """Pod name -> last observation of the gone pods that had ended or were disrupted when last seen."""
        return self.tombstones.ended((namespace, job_uid))

    # ----------------------------------------------------------------------------- converge
    def converge(self, jobs: Listing, pods: Listing) -> Converged:
        """Remove what a LIST proves deleted: absent from it, and last seen before it was taken.

        An object cached at a resourceVersion newer than the listing's (created or changed after
        the list, e.g. our own create's answer) stays, and so does one whose resourceVersion does
        not parse. A pod listed but no longer acceptable (the watch path's rule, `owning_job`) is not
        in the pods' listing (sync reduces it so), so it counts as absent.
        """
        return Converged(jobs=self._converge_jobs(jobs), pods=frozenset(self._converge_pods(pods)))

    def _converge_jobs(self, listing: Listing) -> dict[str, str]:
        dropped: dict[str, str] = {}
        for key, outline in list(self.jobs.items()):
            if listing.namespace is not None and outline.namespace != listing.namespace:
                continue
            if outline.uid not in listing.uids and _older(outline.rv, listing.resource_version):
                self._drop_job(key)
                dropped[key] = outline.uid
        return dropped

    def _converge_pods(self, listing: Listing) -> Iterable[str]:
        dropped = []
        for uid, where in list(self._where.items()):
            if listing.namespace is not None and where.key[0] != listing.namespace:
                continue
            if uid not in listing.uids and _older(where.rv, listing.resource_version):
                job = self._remove_pod(uid)
                if job is not None:
                    dropped.append(job)
        return dropped
