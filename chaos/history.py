"""The observer's records folded into one life per pod and per job (pure).

Records arrive in watch order per resource; across resources they are ordered by resourceVersion
(etcd's revision). Folding keeps, for a pod, when it was first seen, when it first showed a
terminal phase (and with which exit code), when it was first seen deleting, whether it carried a
DisruptionTarget condition, and when it was gone; for a job, every change of the spec fields a user
may edit (suspend, cancel), every change of its Succeeded condition, every outbox entry that ever
appeared in its status, its attempts as last recorded, and its deletion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class PodLife:
    uid: str
    name: str
    ns: str
    job: str | None  # the job UID label
    owner: str | None  # the controller ownerReference's UID
    stage: str | None
    attempt: int | None
    first_rv: int
    first_t: float
    created: str | None = None  # creationTimestamp (whole seconds)
    node: str | None = None
    terminal_rv: int | None = None
    terminal_t: float | None = None
    phase: str | None = None  # the first terminal phase seen
    exit_code: int | None = None
    finished_at: str | None = None
    deleting_rv: int | None = None
    deleting_t: float | None = None
    deletion_ts: str | None = None
    disruption: str | None = None
    disruption_rv: int | None = None  # the record that first showed the DisruptionTarget condition
    gone_rv: int | None = None
    gone_t: float | None = None
    finalizers: list[str] = field(default_factory=list)
    last_phase: str | None = None


@dataclass
class JobLife:
    uid: str
    name: str
    ns: str
    kind: str | None
    first_rv: int
    first_t: float
    spec: dict[str, Any] = field(default_factory=dict)
    flags: list[tuple[int, bool, bool]] = field(default_factory=list)  # (rv, suspend, cancel) on change
    conditions: list[tuple[int, float, str]] = field(default_factory=list)  # (rv, t, "status:reason") on change
    entries: dict[int, list[Any]] = field(
        default_factory=dict
    )  # seq -> [seq, type, reason, stage, attempt, time, action]
    attempts: dict[tuple[str, int], list[Any]] = field(default_factory=dict)  # last recorded, by (stage, attempt)
    recorded_at: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)  # (rv, t) of its last state
    last_seq: int = 0
    max_pending: int = 0
    deleting_rv: int | None = None
    gone_rv: int | None = None
    gone_t: float | None = None
    finalizers: list[str] = field(default_factory=list)
    retry_requests: list[tuple[int, str]] = field(default_factory=list)  # (rv, lastRetryRequest) on change

    @property
    def final(self) -> str | None:
        return self.conditions[-1][2] if self.conditions else None

    def flags_at(self, rv: int) -> tuple[bool, bool]:
        """(suspend, cancel) as of revision `rv` (the last change before it)."""
        state = (False, False)
        for at, suspend, cancel in self.flags:
            if at > rv:
                break
            state = (suspend, cancel)
        return state


@dataclass
class History:
    pods: dict[str, PodLife] = field(default_factory=dict)
    jobs: dict[str, JobLife] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    leases: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[tuple[float, float, str]] = field(default_factory=list)
    ended: bool = False

    def in_gap(self, t: float, slack: float = 5.0, watch: str | None = None) -> bool:
        """Whether `t` falls within `slack` of a gap: of any watch, or only of `watch` (its path)."""
        return any(start - slack <= t <= end + slack for start, end, res in self.gaps if watch in (None, res))


def pods_watch(ns: str) -> str:
    """The path of the observer's pods watch of namespace `ns` (as its gap records name it)."""
    return f"/api/v1/namespaces/{ns}/pods"


def _pod(history: History, rec: dict[str, Any]) -> None:
    uid = rec["uid"]
    life = history.pods.get(uid)
    if life is None:
        life = history.pods[uid] = PodLife(
            uid,
            rec["n"],
            rec["ns"],
            rec.get("job"),
            rec.get("owner"),
            rec.get("st"),
            rec.get("at"),
            rec["rv"],
            rec["t"],
        )
    life.created = life.created or rec.get("ct")
    life.node = rec.get("node") or life.node
    life.finalizers = list(rec.get("fz") or [])
    life.last_phase = rec.get("ph")
    if rec.get("dis") and life.disruption is None:
        life.disruption, life.disruption_rv = rec["dis"], rec["rv"]
    if rec.get("ph") in TERMINAL_PHASES and life.terminal_rv is None:
        life.terminal_rv, life.terminal_t, life.phase = rec["rv"], rec["t"], rec["ph"]
        life.exit_code, life.finished_at = rec.get("ex"), rec.get("fin")
    if rec.get("dt") and life.deleting_rv is None:
        life.deleting_rv, life.deleting_t, life.deletion_ts = rec["rv"], rec["t"], rec["dt"]
    if rec["e"] == "DELETED":
        life.gone_rv, life.gone_t = rec["rv"], rec["t"]
        if life.deleting_rv is None:  # a force delete: gone without a deletionTimestamp seen first
            life.deleting_rv, life.deleting_t, life.deletion_ts = rec["rv"], rec["t"], rec.get("dt")


def _job(history: History, rec: dict[str, Any]) -> None:
    uid = rec["uid"]
    life = history.jobs.get(uid)
    if life is None:
        life = history.jobs[uid] = JobLife(uid, rec["n"], rec["ns"], rec.get("kind"), rec["rv"], rec["t"])
    if rec.get("spec"):
        life.spec = rec["spec"]
    flags = (bool(rec.get("sus")), bool(rec.get("can")))
    if not life.flags or life.flags[-1][1:] != flags:
        life.flags.append((rec["rv"], *flags))
    cond = rec.get("cond")
    if cond and (not life.conditions or life.conditions[-1][2] != cond):
        life.conditions.append((rec["rv"], rec["t"], cond))
    for entry in rec.get("ob") or []:
        life.entries.setdefault(int(entry[0]), entry)
    for row in rec.get("att") or []:
        key = (str(row[0]), int(row[1]))
        previous = life.attempts.get(key)
        if previous is None or previous[2] != row[2]:
            life.recorded_at[key] = (rec["rv"], rec["t"])
        life.attempts[key] = row
    life.last_seq = max(life.last_seq, int(rec.get("last") or 0))
    life.max_pending = max(life.max_pending, int(rec.get("pend") or 0))
    life.finalizers = list(rec.get("fz") or [])
    rr = rec.get("rr")
    if rr and (not life.retry_requests or life.retry_requests[-1][1] != rr):
        life.retry_requests.append((rec["rv"], rr))
    if rec.get("dt") and life.deleting_rv is None:
        life.deleting_rv = rec["rv"]
    if rec["e"] == "DELETED":
        life.gone_rv, life.gone_t = rec["rv"], rec["t"]


def build(records: list[dict[str, Any]]) -> History:
    history = History()
    for rec in records:
        kind = rec.get("k")
        if kind == "pod":
            _pod(history, rec)
        elif kind == "pj":
            _job(history, rec)
        elif kind == "ev":
            history.events.append(rec)
        elif kind == "lease":
            history.leases.append(rec)
        elif kind == "gap":
            history.gaps.append((rec["from"], rec["to"], rec["res"]))
        elif kind == "end":
            history.ended = True
    return history


def holder_at(history: History, t: float) -> str | None:
    """The Lease's holder as last seen at or before `t`."""
    found = None
    for rec in history.leases:
        if rec["t"] > t:
            break
        found = rec.get("holder")
    return found


def holders(history: History) -> list[tuple[float, str]]:
    """Changes of the Lease's holder, in time order: (time first seen, holder identity)."""
    changes: list[tuple[float, str]] = []
    for rec in history.leases:
        holder = rec.get("holder") or ""
        if not changes or changes[-1][1] != holder:
            changes.append((rec["t"], holder))
    return changes
