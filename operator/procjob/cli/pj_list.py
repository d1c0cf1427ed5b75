"""`kubectl pj list`: one row per job, read from its JSON; with `--failed`, the dead-letter view.

A row says what the job is, where it stands, and for a failed job what failed (the stage), why
(the Succeeded condition's reason and message), when (completionTime) and after how many attempts,
and whether `kubectl pj retry` can re-run it (procjob.models.lifecycle's answer). The duration is
computed here from startTime and completionTime (or now while it runs): `status.durationSeconds`
is only as fresh as the operator's last status write.

`-o json` prints the rows as a JSON list of objects (namespace, name, uid, phase, reason, message,
stage, progress, attempts, startTime, completionTime, the live durationSeconds, retryable) for
programs; the table shows a few of them for people. Pure: the caller passes the jobs and the clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from procjob.cli.pj_describe import table
from procjob.cli.pj_state import condition, status_of
from procjob.core.timefmt import human_duration, parse_time
from procjob.models.lifecycle import SUCCEEDED, body_retryable, body_state, outcome

Row = dict[str, Any]


def is_failed(job: Mapping[str, Any]) -> bool:
    """The job ended Failed (not Succeeded, not Cancelled): what `status.phase=Failed` selects."""
    return outcome(*body_state(job)) == "Failed"


def failed_stage(job: Mapping[str, Any]) -> str | None:
    """The stage that failed: the one in state Failed, else the one in progress when the job ended
    (a deadline), else the last stage that made an attempt."""
    stages: list[dict[str, Any]] = status_of(job).get("stages") or []
    for stage in stages:
        if stage.get("state") == "Failed":
            return str(stage.get("name"))
    current = status_of(job).get("currentStage")
    if current:
        return str(current)
    started = [s.get("name") for s in stages if s.get("attemptCount") or s.get("attempts")]
    return str(started[-1]) if started else None


def duration_seconds(job: Mapping[str, Any], now: datetime) -> int | None:
    """Start to end, or to now while the job runs; None before it starts."""
    status = status_of(job)
    start = _time(status.get("startTime"))
    if start is None:
        return None
    end = _time(status.get("completionTime")) or now
    return max(0, int((end - start).total_seconds()))


def row(job: Mapping[str, Any], now: datetime) -> Row:
    meta = job.get("metadata") or {}
    status = status_of(job)
    cond = condition(job, SUCCEEDED) or {}
    failed = is_failed(job)
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "phase": status.get("phase"),
        "reason": cond.get("reason"),
        "message": cond.get("message") or status.get("message") or "",
        "stage": failed_stage(job) if failed else status.get("currentStage"),
        "progress": status.get("progress"),
        "attempts": int(status.get("attempts") or 0),
        "startTime": status.get("startTime"),
        "completionTime": status.get("completionTime"),
        "durationSeconds": duration_seconds(job, now),
        "retryable": body_retryable(job),
    }


def rows(jobs: Sequence[Mapping[str, Any]], now: datetime, *, failed_only: bool) -> list[Row]:
    """The rows to show: all jobs by namespace and name, or the failed ones, oldest failure first."""
    if not failed_only:
        return sorted((row(j, now) for j in jobs), key=lambda r: (r["namespace"] or "", r["name"] or ""))
    chosen = [row(j, now) for j in jobs if is_failed(j)]
    return sorted(chosen, key=lambda r: (r["completionTime"] or "", r["namespace"] or "", r["name"] or ""))


def render(found: Sequence[Row], *, failed_only: bool, all_namespaces: bool, output: str) -> str:
    if output == "json":
        return json.dumps(list(found), indent=2) + "\n"
    if failed_only:
        header = ["NAME", "STAGE", "REASON", "ATTEMPTS", "FAILED", "RETRYABLE", "MESSAGE"]
        cells = [
            [
                r["name"],
                r["stage"] or "-",
                r["reason"] or "-",
                str(r["attempts"]),
                r["completionTime"] or "-",
                "yes" if r["retryable"] else "no",
                _one_line(r["message"]),
            ]
            for r in found
        ]
    else:
        header = ["NAME", "PHASE", "REASON", "STAGE", "ATTEMPTS", "DURATION", "MESSAGE"]
        cells = [
            [
                r["name"],
                r["phase"] or "-",
                r["reason"] or "-",
                r["stage"] or "-",
                str(r["attempts"]),
                _human(r["durationSeconds"]),
                _one_line(r["message"]),
            ]
            for r in found
        ]
    if all_namespaces:
        header = ["NAMESPACE", *header]
        cells = [[r["namespace"], *c] for r, c in zip(found, cells, strict=True)]
    return "\n".join(table(header, cells, indent="")) + "\n"


def _human(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return human_duration(timedelta(seconds=seconds))


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "-"


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        return None
