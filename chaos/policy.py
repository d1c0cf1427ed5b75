"""What each attempt's pod says happened, and what the retry policy then requires (pure).

Written from the documented semantics (README "Retry semantics"), not from the operator's code:
the default rules (exit 2: FailJob; Evicted/Disruption: Ignore, retried without charge; anything
else, a deleted pod included: Retry, charged), `delaysSeconds[n-1]` (the last repeating) or
`min(maxSeconds, initialSeconds * factor^(n-1))` before retry n, counted from the failed attempt's
end; an uncharged retry waits as long as the next charged one would; a suspended or cancelled
attempt is Stopped (not charged, no wait); `procjob.dev/retry` gives the failed stage a fresh budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from chaos.history import JobLife, PodLife

PERMANENT_EXIT = 2


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    ERROR = "error"  # exited non-zero, not 2: charged
    PERMANENT = "permanent"  # exited 2: FailJob
    DELETED = "deleted"  # deleted by someone (the suite): PodDeleted, charged
    DISRUPTED = "disrupted"  # evicted, or its node lost: not charged
    STOPPED = "stopped"  # deleted by the operator for suspend or cancel
    NEVER = "never"  # no pod was ever seen for the attempt
    GONE = "gone"  # its job was being deleted
    LIVE = "live"  # neither ended nor deleted when the run ended
    UNEXPLAINED = "unexplained"  # deleted before it ended, and nobody known did it


CHARGED = {Outcome.ERROR, Outcome.DELETED}
RETRIED = {Outcome.ERROR, Outcome.DELETED, Outcome.DISRUPTED}


@dataclass(frozen=True)
class Disruption:
    """What the suite did to a pod: delete, force, evict or node; at `t` (the request's send time)."""

    method: str
    t: float


def classify(pod: PodLife | None, job: JobLife, disruptions: dict[str, Disruption]) -> Outcome:
    if pod is None:
        return Outcome.NEVER
    ended_first = pod.terminal_rv is not None and (pod.deleting_rv is None or pod.terminal_rv < pod.deleting_rv)
    if ended_first:
        return _ended(pod)
    if pod.deleting_rv is None:
        return Outcome.LIVE
    if job.deleting_rv is not None and job.deleting_rv <= pod.deleting_rv:
        return Outcome.GONE
    if _stopped_then_deleted(pod, job):  # the recorded stop came first, whoever deleted the pod
        return Outcome.STOPPED
    done = disruptions.get(pod.uid)
    suspend, cancel = job.flags_at(pod.deleting_rv)
    # the suite's delete, eviction or node loss of a suspended or cancelled job's pod: whichever was recorded
    stopped = (suspend or cancel) and _recorded_state(pod, job) == "Stopped"
    if pod.disruption or (done is not None and done.method in ("evict", "node")):
        return Outcome.STOPPED if stopped else Outcome.DISRUPTED
    if done is not None:
        return Outcome.STOPPED if stopped else Outcome.DELETED
    if suspend or cancel:
        return Outcome.STOPPED
    return Outcome.UNEXPLAINED


def _ended(pod: PodLife) -> Outcome:
    """A pod that ended before its deletion began counts as how it ended: a success is a success
    even when it was evicted afterwards; a failure is a disruption only when the DisruptionTarget
    condition was seen no later than the failed phase (the eviction or node loss ended it)."""
    if pod.phase == "Succeeded":
        return Outcome.SUCCEEDED
    if pod.disruption_rv is not None and pod.terminal_rv is not None and pod.disruption_rv <= pod.terminal_rv:
        return Outcome.DISRUPTED
    return Outcome.PERMANENT if pod.exit_code == PERMANENT_EXIT else Outcome.ERROR


def _recorded_state(pod: PodLife, job: JobLife) -> str | None:
    """The state the operator last recorded for the pod's attempt."""
    if pod.stage is None or pod.attempt is None:
        return None
    record = job.attempts.get((pod.stage, pod.attempt))
    return str(record[2]) if record is not None else None


def _stopped_then_deleted(pod: PodLife, job: JobLife) -> bool:
    """The operator recorded the attempt Stopped before the pod's deletion began, and the job was
    suspended or cancelled at some moment between the pod's creation and that record: the stop
    the operator saw, recorded first (intent before action), then carried out — even when the job
    was resumed in between (the 10 Hz writer resumes 0.5-2 s after it suspends; seed 20261202 saw
    `delete-00040` resumed 0.04 s after the Stopped record and 0.03 s before the pod's deletion)."""
    if _recorded_state(pod, job) != "Stopped" or pod.deleting_rv is None:
        return False
    recorded = job.recorded_at.get((pod.stage, pod.attempt)) if pod.stage is not None else None
    if recorded is None or recorded[0] >= pod.deleting_rv:
        return False
    if any(job.flags_at(pod.first_rv)):
        return True
    return any(suspend or cancel for rv, suspend, cancel in job.flags if pod.first_rv < rv <= recorded[0])


def expected_record(outcome: Outcome) -> tuple[set[str], set[str], bool | None] | None:
    """(allowed states, allowed reasons, charged) the operator must record for `outcome`; None: no
    expectation (the job went, or the observer cannot tell)."""
    table: dict[Outcome, tuple[set[str], set[str], bool | None]] = {
        Outcome.SUCCEEDED: ({"Succeeded"}, {"Completed"}, None),
        Outcome.ERROR: ({"Failed"}, {"Error"}, True),
        Outcome.PERMANENT: ({"Failed"}, {"Error"}, False),
        Outcome.DELETED: ({"Failed"}, {"PodDeleted"}, True),
        Outcome.DISRUPTED: ({"Failed"}, {"Evicted", "Disruption"}, False),
        Outcome.STOPPED: ({"Stopped"}, set(), None),
    }
    return table.get(outcome)


def delay_before(retry: dict[str, Any] | None, number: int) -> float:
    """The wait before retry `number` (1 = the first), jitter excluded (jitter never shortens it)."""
    retry = retry or {}
    delays = retry.get("delaysSeconds")
    if delays:
        return float(delays[min(number, len(delays)) - 1])
    backoff = retry.get("backoff") or {}
    initial = float(backoff.get("initialSeconds", 10))
    factor = float(backoff.get("factor", 2.0))
    cap = float(backoff.get("maxSeconds", 300))
    return min(cap, initial * factor ** (number - 1))


def limit_of(retry: dict[str, Any] | None) -> int:
    return int((retry or {}).get("limit", 3))


@dataclass
class StageReplay:
    """One stage in one epoch: the outcome the policy requires, and the wait owed before each retry."""

    result: str | None  # "Succeeded", "StageFailed", "BackoffLimitExceeded", or None (not ended)
    charged: int
    waits: dict[int, float]  # attempt number n+1 -> the wait owed after attempt n


def replay(outcomes: list[tuple[int, Outcome]], retry: dict[str, Any] | None) -> StageReplay:
    """Apply the policy to one stage's attempts (in order) within one epoch."""
    limit = limit_of(retry)
    charged = 0
    waits: dict[int, float] = {}
    for number, outcome in outcomes:
        if outcome == Outcome.SUCCEEDED:
            return StageReplay("Succeeded", charged, waits)
        if outcome == Outcome.PERMANENT:
            return StageReplay("StageFailed", charged, waits)
        if outcome in CHARGED:
            charged += 1
            if charged > limit:
                return StageReplay("BackoffLimitExceeded", charged, waits)
        if outcome in RETRIED:
            waits[number + 1] = delay_before(retry, charged if outcome in CHARGED else charged + 1)
    return StageReplay(None, charged, waits)


def seconds(stamp: str | None) -> float | None:
    """An RFC 3339 timestamp as epoch seconds."""
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
