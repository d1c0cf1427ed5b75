"""The observer's record shapes: what it keeps of each watched object (pure functions).

Every record has `k` (pod, pj, ev, lease, gap, end), `t` (arrival, epoch seconds), `rv` (the
object's resourceVersion as an integer: etcd's revision, global across kinds) and `e` (ADDED,
MODIFIED, DELETED, or LISTED for items of a (re-)list).

- pod: ns, n, uid, job (label procjob.dev/job-uid), owner (controller ownerReference UID), st
  (stage label), at (attempt label), ph (phase), ex (exit code), fin (container finishedAt), ct
  (creationTimestamp), dt (deletionTimestamp), dis (DisruptionTarget reason when True), fz
  (finalizers), node.
- pj: ns, n, uid, kind (the workload's label), spec (first sight only), sus, can, pri, cond
  ("True:Succeeded", "Unknown:Queued"...), ob (outbox entries not written before: [seq, type,
  reason, stage, attempt, time, action]), pend (entries pending), last (lastSeq), flushed, att
  (attempts: [stage, attempt, state, reason, charged, podUid, createTime, finishTime, exitCode]),
  fz, dt, rr (status.lastRetryRequest), ann (the procjob.dev/retry annotation).
- ev: ns, n, uid, reason, type, obj (involvedObject UID), name, inst (reportingInstance), msg.
- lease: n, holder, renew, acquire, trans.
"""

from __future__ import annotations

from typing import Any

LABEL_JOB_UID = "procjob.dev/job-uid"
LABEL_STAGE = "procjob.dev/stage"
LABEL_ATTEMPT = "procjob.dev/attempt"
RETRY_ANNOTATION = "procjob.dev/retry"


def _rv(meta: dict[str, Any]) -> int:
    try:
        return int(str(meta.get("resourceVersion")))
    except (TypeError, ValueError):
        return 0


def _base(kind: str, now: float, etype: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "k": kind,
        "t": round(now, 3),
        "rv": _rv(meta),
        "e": etype,
        "ns": meta.get("namespace"),
        "n": meta.get("name"),
        "uid": meta.get("uid"),
    }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _terminated(status: dict[str, Any]) -> dict[str, Any]:
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return dict(term)
    return {}


def pod_record(now: float, etype: str, pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    owner = next((r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    term = _terminated(status)
    disruption = next(
        (c.get("reason") or "DisruptionTarget" for c in status.get("conditions") or [] if _disrupted(c)), None
    )
    return {
        **_base("pod", now, etype, meta),
        "job": labels.get(LABEL_JOB_UID),
        "owner": owner,
        "st": labels.get(LABEL_STAGE),
        "at": _int(labels.get(LABEL_ATTEMPT)),
        "ph": status.get("phase"),
        "ex": term.get("exitCode"),
        "fin": term.get("finishedAt"),
        "ct": meta.get("creationTimestamp"),
        "dt": meta.get("deletionTimestamp"),
        "dis": disruption,
        "fz": list(meta.get("finalizers") or []),
        "node": (pod.get("spec") or {}).get("nodeName"),
    }


def _disrupted(condition: dict[str, Any]) -> bool:
    return condition.get("type") == "DisruptionTarget" and condition.get("status") == "True"


def _condition(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Succeeded":
            return f"{cond.get('status')}:{cond.get('reason', '')}"
    return None


def _attempts(status: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for stage in status.get("stages") or []:
        for a in stage.get("attempts") or []:
            rows.append(
                [
                    stage.get("name"),
                    a.get("attempt"),
                    a.get("state"),
                    a.get("reason"),
                    a.get("charged"),
                    a.get("podUid"),
                    a.get("createTime"),
                    a.get("finishTime"),
                    a.get("exitCode"),
                ]
            )
    return rows


def _entry(entry: dict[str, Any]) -> list[Any]:
    detail = entry.get("detail") or {}
    return [
        entry.get("seq"),
        entry.get("type"),
        entry.get("reason"),
        entry.get("stage"),
        entry.get("attempt"),
        entry.get("time"),
        detail.get("action"),
    ]


def job_record(now: float, etype: str, job: dict[str, Any], seen: dict[str, set[int]]) -> dict[str, Any]:
    """A ProcessingJob's record; `seen` (job UID -> outbox seqs written) keeps `ob` to new entries."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    audit = status.get("audit") or {}
    uid = str(meta.get("uid"))
    pending = audit.get("pending") or []
    first = uid not in seen
    known = seen.setdefault(uid, set())
    fresh = [_entry(e) for e in pending if e.get("seq") not in known]
    known.update(e.get("seq") for e in pending)
    record = {
        **_base("pj", now, etype, meta),
        "kind": (meta.get("labels") or {}).get("chaos.procjob.dev/kind"),
        "sus": bool(spec.get("suspend")),
        "can": bool(spec.get("cancel")),
        "pri": spec.get("priority", 0),
        "cond": _condition(status),
        "ob": fresh,
        "pend": len(pending),
        "last": audit.get("lastSeq", 0),
        "flushed": audit.get("flushedSeq", 0),
        "att": _attempts(status),
        "fz": list(meta.get("finalizers") or []),
        "dt": meta.get("deletionTimestamp"),
        "rr": status.get("lastRetryRequest"),
        "ann": (meta.get("annotations") or {}).get(RETRY_ANNOTATION),
    }
    if first:
        record["spec"] = {k: spec.get(k) for k in ("stages", "retry", "podGC")}
    return record


def event_record(now: float, etype: str, event: dict[str, Any]) -> dict[str, Any]:
    meta = event.get("metadata") or {}
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return {
        **_base("ev", now, etype, meta),
        "reason": event.get("reason"),
        "type": event.get("type"),
        "obj": involved.get("uid"),
        "name": involved.get("name"),
        "inst": event.get("reportingInstance") or (event.get("source") or {}).get("host"),
        "msg": str(event.get("message") or "")[:200],
    }


def lease_record(now: float, etype: str, lease: dict[str, Any]) -> dict[str, Any]:
    meta = lease.get("metadata") or {}
    spec = lease.get("spec") or {}
    return {
        **_base("lease", now, etype, meta),
        "holder": spec.get("holderIdentity"),
        "renew": spec.get("renewTime"),
        "acquire": spec.get("acquireTime"),
        "trans": spec.get("leaseTransitions"),
    }
