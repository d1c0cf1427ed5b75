"""Reduce a Pod API object to the few facts the core decides on.

Doing this once, at the edge of the core, keeps `decide` free of dict-walking and lets the unit
tests build pods with a one-line constructor.

Pods are untrusted: anyone with edit rights in a namespace can create a pod with any name and
labels there. So a pod counts for a job only when the job *controls* it: a controller
ownerReference of our kind (`ProcessingJob` in the `procjob.dev` group) carrying the job's UID,
and the pod in the job's namespace (owner references never cross namespaces). `owning_job` is
that rule in one place; the cache and the cache sync both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from procjob.core.sanitize import clean_text, has_invalid_text
from procjob.core.timefmt import parse_time
from procjob.models.job import GROUP, KIND, LABEL_ATTEMPT, LABEL_ITEM, LABEL_JOB, LABEL_JOB_UID, LABEL_STAGE

_TEXT_FIELDS = (
    "termination_message",
    "terminated_reason",
    "waiting_reason",
    "waiting_message",
    "status_reason",
    "status_message",
    "disruption",
    "unschedulable",
)
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class PodObservation:
    """What the operator knows about one worker pod."""

    name: str
    uid: str
    job_uid: str | None = None  # from the procjob.dev/job-uid label
    owner_uid: str | None = None  # the UID of the controller ownerReference, when it is a ProcessingJob
    stage: str | None = None
    attempt: int | None = None
    item: int | None = None  # the procjob.dev/item label: the item of a fanned-out stage
    phase: str = "Pending"
    created: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None
    termination_message: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    status_reason: str | None = None  # pod.status.reason, e.g. Evicted
    status_message: str | None = None
    disruption: str | None = None  # the DisruptionTarget condition's reason, when True
    unschedulable: str | None = None  # the PodScheduled=False message
    deleting: bool = False  # set by itself when deletion_time is; may be set alone (delete sent, not seen yet)
    namespace: str = ""
    deletion_time: datetime | None = None  # metadata.deletionTimestamp: when the grace period ends
    grace_seconds: int | None = None  # metadata.deletionGracePeriodSeconds
    containers: tuple[str, ...] = ()  # init containers, then containers: whose logs an archive keeps
    # Set by the controller from its log archive (never from the pod): the attempt's log is stored,
    # so podGC need not wait for it (see PassState.log_pending).
    log_archived: bool = False

    def __post_init__(self) -> None:
        if self.deletion_time is not None and not self.deleting:
            object.__setattr__(self, "deleting", True)  # frozen: the one derived field, fixed at birth
        for name in _TEXT_FIELDS:  # pod text goes into status and the audit: valid Unicode only
            value = getattr(self, name)
            if value is not None and has_invalid_text(value):
                object.__setattr__(self, name, clean_text(value))

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def live(self) -> bool:
        """Might still run: neither finished nor on its way out."""
        return not self.terminal and not self.deleting

    @classmethod
    def from_api(cls, pod: dict[str, Any]) -> PodObservation:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        labels = meta.get("labels") or {}
        controller = _controller_ref(meta)
        owner_uid = (controller.get("uid") or None) if controller is not None else None
        attempt_label = labels.get(LABEL_ATTEMPT)
        item_label = labels.get(LABEL_ITEM)
        container = _main_container_status(status)
        state = container.get("state") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        running = state.get("running") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        disruption = conditions.get("DisruptionTarget") or {}
        scheduled = conditions.get("PodScheduled") or {}
        return cls(
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            job_uid=labels.get(LABEL_JOB_UID),
            owner_uid=owner_uid,
            stage=labels.get(LABEL_STAGE),
            attempt=int(attempt_label) if attempt_label and attempt_label.isdigit() else None,
            item=int(item_label) if item_label and item_label.isdigit() and len(item_label) <= 9 else None,
            phase=status.get("phase") or "Pending",
            created=parse_time(meta.get("creationTimestamp")),
            started=parse_time(running.get("startedAt") or terminated.get("startedAt") or status.get("startTime")),
            finished=parse_time(terminated.get("finishedAt")),
            exit_code=terminated.get("exitCode"),
            terminated_reason=terminated.get("reason"),
            termination_message=terminated.get("message"),
            waiting_reason=waiting.get("reason"),
            waiting_message=waiting.get("message"),
            status_reason=status.get("reason"),
            status_message=status.get("message"),
            disruption=(disruption.get("reason") or "DisruptionTarget") if disruption.get("status") == "True" else None,
            unschedulable=scheduled.get("message") or "unschedulable" if scheduled.get("status") == "False" else None,
            deleting=bool(meta.get("deletionTimestamp")),
            namespace=meta.get("namespace") or "",
            deletion_time=parse_time(meta.get("deletionTimestamp")),
            grace_seconds=_int_or_none(meta.get("deletionGracePeriodSeconds")),
            containers=_container_names(pod.get("spec") or {}),
        )


@dataclass(frozen=True, slots=True)
class JobRef:
    """The job a pod belongs to, as its controller ownerReference says."""

    namespace: str
    name: str
    uid: str


def owning_job(pod: dict[str, Any]) -> JobRef | None:
    """The job that controls this pod, or None when the pod must count for no job at all.

    Accepted only when all of these hold: the pod has a namespace; its controller ownerReference is
    a `ProcessingJob` of the `procjob.dev` group with a name and a UID; and its `procjob.dev/job-uid`
    and `procjob.dev/job` labels name that same job. The labels are what the watch selects on and
    what a tenant can set freely; the ownerReference is what garbage collection honours. A pod on
    which they disagree was not made by us as it is, so it is ignored rather than guessed about.
    """
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    ref = _controller_ref(meta)
    if not namespace or ref is None:
        return None
    uid, name = ref.get("uid"), ref.get("name")
    if not isinstance(uid, str) or not isinstance(name, str) or not uid or not name:
        return None
    labels = meta.get("labels") or {}
    if labels.get(LABEL_JOB_UID) != uid or labels.get(LABEL_JOB) != name:
        return None
    return JobRef(namespace=namespace, name=name, uid=uid)


def _controller_ref(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The controller ownerReference when it is one of our jobs (the API allows one controller)."""
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, dict) or ref.get("controller") is not True:
            continue
        group, slash, _ = str(ref.get("apiVersion") or "").partition("/")
        return ref if ref.get("kind") == KIND and group == GROUP and slash else None
    return None


def _container_names(spec: dict[str, Any]) -> tuple[str, ...]:
    """The names of the pod's init containers, then its containers (what `pods/log` can read)."""
    names = []
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            name = container.get("name") if isinstance(container, dict) else None
            if isinstance(name, str) and name:
                names.append(name)
    return tuple(names)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _main_container_status(status: dict[str, Any]) -> dict[str, Any]:
    statuses = status.get("containerStatuses") or []
    for entry in statuses:
        if entry.get("name") == "main":
            return dict(entry)
    return dict(statuses[0]) if statuses else {}
