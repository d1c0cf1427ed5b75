"""Why procjob writes its status: every ProcessingJob change the observer sees, by its cause.

The API server counts `PUT processingjobs/status` per stage; this says what each of those writes
carried, read from the objects themselves (the independent observer sees every version of a job):

| cause | the change |
|---|---|
| `transition` | new audit entries (`status.audit.lastSeq` grew) besides AttemptRunning (a trim may ride along) |
| `running` | new audit entries, all AttemptRunning: an attempt recorded running (with its pod's UID, or alone) |
| `pod-uid` | no new entry; an attempt's `podUid` recorded (the pod seen: its later absence is a deletion) |
| `outbox-trim` | only the outbox trimmed (`status.audit.flushedSeq`: PostgreSQL confirmed the entries) |
| `other` | any other status change (a pod's waiting message, a queue position, ...) |
| `metadata` | no status change at all: the finalizer added or removed, the deletion begun, a spec edit |

`metadata` changes are not status writes (a PATCH of the object, or the API server's own); they are
listed so that every change is accounted for. Reported, never asserted. The observer keeps a small
`Mark` per job, not the job.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CAUSES = ("transition", "running", "pod-uid", "outbox-trim", "other", "metadata")
RUNNING = "AttemptRunning"
STATUS_WRITES = CAUSES[:-1]  # the causes that are status writes
RECORD = "pjw"  # the observer's record kind of one classified change (its "p" is the cause)


@dataclass(frozen=True, slots=True)
class Mark:
    """What the observer keeps of a job's last version: enough to classify the next change."""

    last_seq: int
    flushed_seq: int
    pod_uids: int  # hash of the attempts' (pod name, pod UID) pairs
    status: int  # hash of the whole status
    meta: int  # hash of what a metadata change touches: finalizers, deletion, generation, labels, annotations


def _hash(value: Any) -> int:
    return hash(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def mark(obj: dict[str, Any]) -> Mark:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    audit = status.get("audit") or {}
    attempts = [a for s in status.get("stages") or [] for a in s.get("attempts") or [] if isinstance(a, dict)]
    uids = [(a.get("podName"), a.get("podUid")) for a in attempts]
    touched = [meta.get(k) for k in ("finalizers", "deletionTimestamp", "generation", "labels", "annotations")]
    return Mark(
        last_seq=_int(audit.get("lastSeq")),
        flushed_seq=_int(audit.get("flushedSeq")),
        pod_uids=hash(tuple(uids)),
        status=_hash(status),
        meta=_hash(touched),
    )


def _new_types(obj: dict[str, Any], after: int) -> set[str]:
    """The types of the outbox entries above seq `after` (an entry already trimmed is not there: unknown)."""
    pending = ((obj.get("status") or {}).get("audit") or {}).get("pending") or []
    return {str(e.get("type")) for e in pending if isinstance(e, dict) and _int(e.get("seq")) > after}


def classify(before: Mark | None, obj: dict[str, Any]) -> tuple[Mark, str | None]:
    """The job's mark, and the cause of its change since `before` (None: its first sight)."""
    after = mark(obj)
    if before is None:
        return after, None
    found = cause(before, after)
    if found == "transition" and _new_types(obj, before.last_seq) == {RUNNING}:
        found = "running"
    return after, found


def cause(before: Mark, after: Mark) -> str | None:
    """The cause of the change from `before` to `after` (see the module docstring; `classify` tells
    `running` apart); None: nothing this census counts changed (a version the observer saw twice)."""
    if after.status == before.status:
        return "metadata" if after.meta != before.meta else None
    if after.last_seq > before.last_seq:
        return "transition"
    if after.pod_uids != before.pod_uids:
        return "pod-uid"
    if after.flushed_seq != before.flushed_seq:
        return "outbox-trim"
    return "other"


def per_stage(records: Iterable[dict[str, Any]], chains: set[str], stages_total: int) -> dict[str, float]:
    """The observer's classified changes of the run's chains (`RECORD` records), per stage."""
    counts = Counter(str(r.get("p")) for r in records if r.get("r") == RECORD and r.get("c") in chains)
    if not counts or stages_total <= 0:
        return {}
    return {c: round(counts[c] / stages_total, 2) for c in CAUSES}


def report_lines(rows: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """A line per system that has a census: (its title, its result row)."""
    lines = []
    for name, row in rows:
        census = row.get("status_writes_by_cause_per_stage")
        if not isinstance(census, dict) or not census:
            continue
        writes = sum(float(census.get(c) or 0.0) for c in STATUS_WRITES)
        parts = ", ".join(f"{c} {float(census.get(c) or 0.0):.2f}" for c in STATUS_WRITES)
        meta = float(census.get("metadata") or 0.0)
        lines.append(f"- {name}: {writes:.2f} status writes ({parts}); metadata-only changes {meta:.2f}")
    if not lines:
        return []
    head = "ProcessingJob status writes per stage by cause, as the observer saw each version (bench/statuswrites.py):"
    return [head, "", *lines, ""]
