"""I5, the operators' counters against the observer (pure).

A counter lives in one process; the suite SIGKILLs processes, so what a process counted after its
last scrape is lost with it, and a replica restarted counts from 0. Two checks follow:

- over the whole run, for every counter below, the sum of every process's last scrape is at most
  what the observer saw: nothing was counted twice (a failover, a 409 re-run or a replayed pass
  must not count an attempt or a finish again);
- over the calm window at the end (no fault, one leader throughout, a fresh batch of jobs run to
  the end and their audit drained), the leader's increase equals the observer's count exactly.

Counters: procjob_attempts_started_total (AttemptStarted), procjob_attempts_failed_total{reason}
(AttemptFailed by reason), procjob_retries_total{action} (RetryScheduled by action),
procjob_jobs_finished_total{outcome,reason} (JobSucceeded/JobFailed/JobCancelled),
procjob_audit_records_total (rows in PostgreSQL).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from chaos.history import History
from chaos.invariants import transitions
from chaos.policy import seconds
from chaos.verdict import Row, Verdict

OUTCOME = {"JobSucceeded": "Succeeded", "JobFailed": "Failed", "JobCancelled": "Cancelled"}
NAMES = (
    "procjob_attempts_started_total",
    "procjob_attempts_failed_total",
    "procjob_retries_total",
    "procjob_jobs_finished_total",
    "procjob_audit_records_total",
)
_KEY = re.compile(r"^(\w+)(?:\{(.*)\})?$")


def key(name: str, **labels: str) -> str:
    """A sample's key in a canonical form: name{a="1",b="2"} with labels sorted."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def canonical(sample: str) -> str:
    match = _KEY.match(sample)
    if not match:
        return sample
    labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
    return key(match[1], **labels)


def counters(scrape: dict[str, float]) -> Counter[str]:
    """The samples of the counters above, keyed canonically."""
    out: Counter[str] = Counter()
    for sample, value in scrape.items():
        name = sample.split("{", 1)[0]
        if name in NAMES:
            out[canonical(sample)] += int(value)
    return out


def observed(
    history: History, rows: dict[str, list[Row]], uids: set[str] | None = None, until: float | None = None
) -> Counter[str]:
    """What the counters should say, from the transitions seen (rows fill an observer gap); with
    `uids`, of those jobs only; with `until`, of transitions made by then (epoch seconds)."""
    out: Counter[str] = Counter()
    for uid, job in history.jobs.items():
        if uids is not None and uid not in uids:
            continue
        found = rows.get(uid, [])
        when = {r[0]: r[5] for r in found}
        when.update({seq: seconds(str(e[5])) or 0.0 for seq, e in job.entries.items()})
        if until is not None:
            found = [r for r in found if r[5] <= until]
        actions = {r[0]: r[6] for r in found}
        actions.update({seq: e[6] for seq, e in job.entries.items()})
        reasons = {r[0]: r[2] for r in found}
        reasons.update({seq: str(e[2]) for seq, e in job.entries.items()})
        for seq, (kind, _, _) in transitions(job, found).items():
            if until is not None and when.get(seq, 0.0) > until:
                continue
            if kind == "AttemptStarted":
                out[key("procjob_attempts_started_total")] += 1
            elif kind == "AttemptFailed":
                out[key("procjob_attempts_failed_total", reason=reasons.get(seq, ""))] += 1
            elif kind == "RetryScheduled":
                out[key("procjob_retries_total", action=actions.get(seq) or "Retry")] += 1
            elif kind in OUTCOME:
                out[key("procjob_jobs_finished_total", outcome=OUTCOME[kind], reason=reasons.get(seq, ""))] += 1
        out[key("procjob_audit_records_total")] += len(found)
    return out


def check_i5(history: History, rows: dict[str, list[Row]], scrapes: dict[str, Any]) -> Verdict:
    """`scrapes`: {"processes": [{"replica", "start", "last": {sample: value}}], "calm": {"before",
    "after", "same_process", "jobs": [UIDs]} or None}."""
    verdict = Verdict()
    seen = observed(history, rows)
    total: Counter[str] = Counter()
    for process in scrapes.get("processes") or []:
        total.update(counters(process.get("last") or {}))
    verdict.notes["counted_whole_run"] = dict(sorted(total.items()))
    verdict.notes["observed_whole_run"] = dict(sorted(seen.items()))
    for sample, value in sorted(total.items()):
        verdict.checked += 1
        if value > seen.get(sample, 0):
            verdict.fail(f"{sample}: the processes counted {value}, the observer saw {seen.get(sample, 0)}")
    calm = scrapes.get("calm")
    if not calm:
        verdict.fail("no calm window was measured")
        return verdict
    if not calm.get("same_process"):
        verdict.fail("the leader changed during the calm window; its counters cannot be compared")
        return verdict
    increase = counters(calm["after"])
    increase.subtract(counters(calm["before"]))
    expected = observed(history, rows, set(calm.get("jobs") or []), calm.get("until"))
    verdict.notes["calm_counted"] = {k: v for k, v in sorted(increase.items()) if v}
    verdict.notes["calm_observed"] = dict(sorted(expected.items()))
    for sample in sorted(set(expected) | {k for k, v in increase.items() if v}):
        verdict.checked += 1
        if increase.get(sample, 0) != expected.get(sample, 0):
            verdict.fail(
                f"calm window: {sample} rose by {increase.get(sample, 0)}, the observer saw {expected.get(sample, 0)}"
            )
    return verdict
