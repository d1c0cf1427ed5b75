"""I3, the audit of record against what the observer saw (pure).

Per job: PostgreSQL's rows are seq 1..N with no gap and no duplicate; N is the last lastSeq the
observer saw; every outbox entry the observer saw is the row with its seq (same type, reason, stage,
attempt); a row the observer never saw in an outbox is allowed only when it was made while the
observer was re-listing (a re-list after a 410 can hide an entry written and trimmed meanwhile):
those are counted as `unobserved`, never silently; JobDeleted exactly once for a deleted job and
never for another; an AttemptStarted row for every attempt pod seen; one job-ending row per
terminal state the observer saw.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from chaos.history import History, JobLife
from chaos.verdict import Row, Verdict

ENDING = {"JobSucceeded", "JobFailed", "JobCancelled"}


def check_i3(history: History, rows: dict[str, list[Row]]) -> Verdict:
    verdict = Verdict(notes={"rows": 0, "unobserved_rows": 0, "jobs_deleted": 0})
    pods_of: dict[str, set[tuple[str, int]]] = {}
    for pod in history.pods.values():
        if pod.job and pod.stage and pod.attempt is not None:
            pods_of.setdefault(pod.job, set()).add((pod.stage, pod.attempt))
    for uid, job in history.jobs.items():
        if job.kind is None:
            continue
        verdict.checked += 1
        _job(history, job, rows.get(uid, []), pods_of.get(uid, set()), verdict)
    for uid, found in rows.items():
        if uid not in history.jobs and not all(history.in_gap(r[5]) for r in found):
            verdict.fail(f"{len(found)} rows for job UID {uid}, which the observer never saw")
    return verdict


def _job(history: History, job: JobLife, found: list[Row], pods: set[tuple[str, int]], verdict: Verdict) -> None:
    where = f"{job.ns}/{job.name} ({job.uid[:8]})"
    verdict.notes["rows"] += len(found)
    seqs = [r[0] for r in found]
    if seqs != list(range(1, len(seqs) + 1)):
        verdict.fail(f"{where}: seqs {_gaps(seqs)}")
    if len(found) != job.last_seq:
        verdict.fail(f"{where}: {len(found)} rows, the last lastSeq seen was {job.last_seq}")
    by_seq = {r[0]: r for r in found}
    for seq, entry in sorted(job.entries.items()):
        row = by_seq.get(seq)
        if row is None:
            verdict.fail(f"{where}: seq {seq} {entry[1]} was in the outbox and is not in PostgreSQL")
        elif (row[1], row[2], row[3], row[4]) != (entry[1], entry[2], entry[3], entry[4]):
            verdict.fail(f"{where}: seq {seq} is {row[1:5]} in PostgreSQL, {tuple(entry[1:5])} in the outbox")
    for row in found:
        if row[0] not in job.entries:
            if history.in_gap(row[5]):
                verdict.notes["unobserved_rows"] += 1
            else:
                verdict.fail(f"{where}: seq {row[0]} {row[1]} is in PostgreSQL but never appeared in the outbox")
    _facts(history, job, found, pods, verdict, where)


def _facts(
    history: History, job: JobLife, found: list[Row], pods: set[tuple[str, int]], verdict: Verdict, where: str
) -> None:
    kinds = Counter(r[1] for r in found)
    deleted = job.gone_rv is not None
    verdict.notes["jobs_deleted"] += int(deleted)
    if kinds["JobDeleted"] != (1 if deleted else 0):
        verdict.fail(
            f"{where}: {kinds['JobDeleted']} JobDeleted rows for a job {'deleted' if deleted else 'not deleted'}"
        )
    started = {(r[3], r[4]) for r in found if r[1] == "AttemptStarted"}
    for stage, attempt in sorted(pods - started):
        verdict.fail(f"{where}: a pod ran for {stage}/{attempt} and there is no AttemptStarted row for it")
    terminal = sum(1 for _, _, cond in job.conditions if cond.split(":", 1)[0] in ("True", "False"))
    ending_rows = [r for r in found if r[1] in ENDING]
    ending = len(ending_rows)
    if ending != terminal and not any(history.in_gap(r[5]) for r in ending_rows):
        verdict.fail(f"{where}: {ending} job-ending rows, {terminal} terminal states observed")


def _gaps(seqs: list[int]) -> str:
    dups = sorted(s for s, n in Counter(seqs).items() if n > 1)
    missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
    return f"duplicates {dups[:10]}, missing {missing[:10]}"


def rows_from(records: list[dict[str, Any]]) -> dict[str, list[Row]]:
    """{job UID: rows ordered by seq} from dicts with the audit_events columns (chaos.pgread)."""
    out: dict[str, list[Row]] = {}
    for rec in records:
        detail = rec.get("detail") or {}
        row: Row = (
            int(rec["seq"]),
            str(rec["event_type"]),
            str(rec.get("reason") or ""),
            rec.get("stage"),
            rec.get("attempt"),
            float(rec["occurred_at"]),
            detail.get("action"),
        )
        out.setdefault(str(rec["job_uid"]), []).append(row)
    for found in out.values():
        found.sort()
    return out
