"""What a ProcessingJob's JSON says, for the plugin's commands: its state in words, whether a
request makes sense now, whether the operator has acknowledged one, which pod holds a log.

"Finished", "retryable" and the outcome are procjob.models.lifecycle's answers (the operator's),
read from the raw object; tests/unit/cli/test_lifecycle_pinned.py holds the plugin's commands to
them. That module imports nothing heavy, so the plugin still starts without pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from procjob.cli.pj_errors import PluginError
from procjob.core.naming import pod_name
from procjob.core.timefmt import parse_time
from procjob.models.lifecycle import SUCCEEDED, SUSPENDED, body_finished, body_retryable, outcome


def status_of(job: Mapping[str, Any]) -> dict[str, Any]:
    return dict(job.get("status") or {})


def condition(job: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in status_of(job).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def is_finished(job: Mapping[str, Any]) -> bool:
    """Succeeded, Failed or Cancelled: cancel, suspend and resume are refused."""
    return body_finished(job)


def is_retryable(job: Mapping[str, Any]) -> bool:
    """Failed, and a retry can help (not Cancelled, InvalidSpec or ReconcileError: the operator
    acknowledges, and ignores, a retry request for those)."""
    return body_retryable(job)


def is_suspended(job: Mapping[str, Any]) -> bool:
    cond = condition(job, SUSPENDED)
    return bool((job.get("spec") or {}).get("suspend")) or (cond is not None and cond.get("status") == "True")


def state_of(job: Mapping[str, Any]) -> str:
    """`Running: stage b (2/3) attempt 1 running`, `Failed (BackoffLimitExceeded): ...`, `Succeeded`."""
    cond = condition(job, SUCCEEDED)
    if cond is None:
        return "Pending: not yet seen by the operator"
    reason, message = cond.get("reason") or "Unknown", cond.get("message") or ""
    result = outcome(cond.get("status"), reason)
    if result is None:
        head = reason
    elif result == "Failed":
        head = f"Failed ({reason})"
    else:
        head = result
    return f"{head}: {message}" if message and message.lower() != head.lower() else head


def observed(job: Mapping[str, Any], generation: int) -> bool:
    """The operator has seen `generation` of the spec (a cancel, suspend or resume took effect)."""
    return int(status_of(job).get("observedGeneration") or 0) >= generation


def same_time(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return parse_time(a) == parse_time(b)
    except ValueError:
        return a == b


def retry_token(now: datetime) -> str:
    """The retry request value: an RFC 3339 UTC timestamp to the second (as Argo CD's action writes)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_key(ns: str, name: str) -> str:
    """How messages name a job."""
    return f"processingjob {ns}/{name}"


def pick_attempt(job: Mapping[str, Any], stage: str | None, attempt: int | None) -> tuple[str, int, str]:
    """(stage, attempt, pod name) for `logs`: by default the current stage's latest attempt, else
    the last stage that ran. Attempts no longer listed in status get their (deterministic) pod name."""
    meta = job.get("metadata") or {}
    key = job_key(meta.get("namespace", "?"), meta.get("name", "?"))
    stage = _pick_stage(job, stage, key)
    stages: list[dict[str, Any]] = status_of(job).get("stages") or []
    status = next((s for s in stages if s.get("name") == stage), {})
    attempts: list[dict[str, Any]] = status.get("attempts") or []
    count = int(status.get("attemptCount") or len(attempts))
    if attempt is None:
        if not attempts:
            raise PluginError(f"{key}: stage {stage} has not started an attempt yet")
        attempt = int(attempts[-1]["attempt"])
    elif not 1 <= attempt <= count:
        raise PluginError(f"{key}: stage {stage} has no attempt {attempt} (attempts made: {count})")
    listed = next((a for a in attempts if a.get("attempt") == attempt), None)
    pod = listed["podName"] if listed and listed.get("podName") else pod_name(meta["name"], meta["uid"], stage, attempt)
    return stage, attempt, pod


def pick_stage(job: Mapping[str, Any], stage: str | None) -> str:
    """The stage `logs` reads: the named one (which must exist), else the current one, else the last that ran."""
    meta = job.get("metadata") or {}
    return _pick_stage(job, stage, job_key(meta.get("namespace", "?"), meta.get("name", "?")))


def _pick_stage(job: Mapping[str, Any], stage: str | None, key: str) -> str:
    """The named stage (which must exist), else the current one, else the last that ran."""
    if stage is not None:
        names = [s.get("name") for s in (job.get("spec") or {}).get("stages") or []]
        if stage not in names:
            raise PluginError(f"{key} has no stage {stage!r} (stages: {', '.join(str(n) for n in names)})")
        return stage
    current = status_of(job).get("currentStage")
    if current is not None:
        return str(current)
    stages: list[dict[str, Any]] = status_of(job).get("stages") or []
    started = [s["name"] for s in stages if s.get("attemptCount") or s.get("attempts")]
    if not started:
        raise PluginError(f"{key} has not started any attempt yet")
    return str(started[-1])
