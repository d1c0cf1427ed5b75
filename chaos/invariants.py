"""I1 and I2, checked after every run over the observer's history, PostgreSQL's rows and the
suite's own log of what it did to pods (pure functions; I3-I5 are in chaos.ledger and chaos.tally).

I1  at most one pod UID ever per (job, stage, attempt); a job's status names only pods it owns
    (no adoption across UIDs).
I2  one terminal state per job (per retry epoch), consistent with its pods and its retry policy;
    every attempt recorded with the reason its pod shows (disruptions not charged); the gap before
    each retry at least the backoff, on the operator's clock and on the API server's and kwok's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from chaos.history import History, JobLife, PodLife, pods_watch
from chaos.policy import Disruption, Outcome, classify, expected_record, replay, seconds
from chaos.verdict import Row, Verdict

ENDED = {Outcome.SUCCEEDED, Outcome.ERROR, Outcome.PERMANENT}
STALE_SECONDS = 5.0


# ------------------------------------------------------------------------------------------- I1
def check_i1(history: History) -> Verdict:
    verdict = Verdict()
    uids: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for pod in history.pods.values():
        if pod.job and pod.stage and pod.attempt is not None:
            uids[(pod.job, pod.stage, pod.attempt)].add(pod.uid)
            if pod.owner is not None and pod.owner != pod.job:
                verdict.fail(f"pod {pod.ns}/{pod.name} is labelled for job {pod.job} but owned by {pod.owner}")
    verdict.checked = len(uids)
    for (job_uid, stage, attempt), found in sorted(uids.items()):
        if len(found) > 1:
            verdict.fail(
                f"job {_name(history, job_uid)} stage {stage} attempt {attempt}: {len(found)} pods {sorted(found)}"
            )
    for life in history.jobs.values():
        for (stage, attempt), row in life.attempts.items():
            named = history.pods.get(row[5]) if row[5] else None
            if named is not None and named.owner != life.uid:
                verdict.fail(
                    f"{life.ns}/{life.name} attempt {stage}/{attempt} names pod {named.name} owned by {named.owner}"
                )
    return verdict


def _name(history: History, uid: str) -> str:
    job = history.jobs.get(uid)
    return f"{job.ns}/{job.name} ({uid[:8]})" if job else uid


# ------------------------------------------------------------------------------------------- I2
def transitions(job: JobLife, rows: list[Row]) -> dict[int, tuple[str, str | None, int | None]]:
    """seq -> (type, stage, attempt): the observer's entries, completed by PostgreSQL's rows."""
    found = {seq: (str(e[1]), e[3], e[4]) for seq, e in job.entries.items()}
    for row in rows:
        found.setdefault(row[0], (row[1], row[3], row[4]))
    return found


def epochs_of(job: JobLife, rows: list[Row]) -> tuple[list[int], dict[tuple[str, int], int]]:
    """The JobRetried seqs, and each attempt's epoch (the retries recorded before its start)."""
    seen = transitions(job, rows)
    retried = sorted(seq for seq, (kind, _, _) in seen.items() if kind == "JobRetried")
    epoch = {}
    for seq, (kind, stage, attempt) in seen.items():
        if kind == "AttemptStarted" and stage is not None and attempt is not None:
            epoch[(stage, attempt)] = sum(1 for r in retried if r < seq)
    return retried, epoch


RESTART_MARGIN = 5.0  # seconds from the replicas' release until they watch again (observed: about 1 s)


def stall_windows(faults: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(from, to) of the moments no operator watched, from the driver's fault records: each
    silent-watch fault's stall of the watches (its result's `stalled_at` and `stall_s`), and each
    delete-recreate fault with both replicas stopped (`down_from` to `released_at` plus
    RESTART_MARGIN; a record without them: the fault's whole span)."""
    found = []
    for fault in faults:
        result = fault.get("result") or {}
        if fault.get("name") == "silent-watch" and result.get("stalled_at") is not None:
            found.append((float(result["stalled_at"]), float(result["stalled_at"]) + float(result["stall_s"])))
        if fault.get("name") == "delete-recreate" and result.get("operator") == "down":
            start = float(result.get("down_from", fault.get("started", 0.0)))
            released = result.get("released_at")
            end = float(released) + RESTART_MARGIN if released is not None else float(fault.get("ended", start))
            found.append((start, end))
    return found


def check_i2(
    history: History,
    rows: dict[str, list[Row]],
    disruptions: dict[str, Disruption],
    stalls: list[tuple[float, float]] | None = None,
) -> Verdict:
    """`stalls`: the moments the suite itself stalled the operators' watches (`stall_windows`)."""
    verdict = Verdict(notes={"outcomes": Counter()})
    pods_of: dict[str, dict[tuple[str, int], PodLife]] = defaultdict(dict)
    for pod in history.pods.values():
        if pod.job and pod.stage and pod.attempt is not None:
            pods_of[pod.job][(pod.stage, pod.attempt)] = pod
    for job in history.jobs.values():
        if job.kind is None or not job.spec:
            continue
        verdict.checked += 1
        pods = pods_of.get(job.uid, {})
        JobCheck(history, job, rows.get(job.uid, []), pods, disruptions, verdict, stalls or []).run()
    verdict.notes["outcomes"] = dict(sorted(verdict.notes["outcomes"].items()))
    return verdict


@dataclass
class JobCheck:
    history: History
    job: JobLife
    rows: list[Row]
    pods: dict[tuple[str, int], PodLife]
    disruptions: dict[str, Disruption]
    verdict: Verdict
    stalls: list[tuple[float, float]]

    def fail(self, message: str) -> None:
        self.verdict.fail(f"{self.job.ns}/{self.job.name}: {message}")

    def run(self) -> None:
        retried, epoch = epochs_of(self.job, self.rows)
        keys = set(self.job.attempts) | set(self.pods) | set(epoch)
        outcomes = {key: self.outcome(key) for key in keys}
        for outcome in outcomes.values():
            self.verdict.notes["outcomes"][outcome.value] += 1
        self.recorded_reasons(outcomes)
        deleted = self.job.deleting_rv is not None
        self.terminal_sequence(len(retried), deleted)
        if not deleted or self._ended_before_deletion():
            self.expected_end(outcomes, epoch, len(retried))
        self.backoff_gaps(outcomes, epoch)

    def outcome(self, key: tuple[str, int]) -> Outcome:
        """What the pod shows, or a stop when the operator's Stopped record is accepted for it (the
        replay then follows the stop: not charged, no wait)."""
        outcome = classify(self.pods.get(key), self.job, self.disruptions)
        row = self.job.attempts.get(key)
        if row is not None and self._stopped_first(key, outcome, row):
            return Outcome.STOPPED
        if outcome == Outcome.DISRUPTED and row is not None and row[3] == "PodDeleted" and self._vanished_unseen(key):
            return Outcome.DELETED
        return outcome

    def _vanished_unseen(self, key: tuple[str, int]) -> bool:
        """The suite evicted or deleted the pod and it vanished while the suite stalled the
        operators' watches or had stopped both replicas: no controller could see its disruption,
        only that it was gone."""
        pod = self.pods.get(key)
        if pod is None or pod.uid not in self.disruptions:
            return False
        gone = pod.gone_t if pod.gone_t is not None else pod.deleting_t
        return gone is not None and any(start <= gone <= end for start, end in self.stalls)

    def _ended_before_deletion(self) -> bool:
        last = self.job.conditions[-1] if self.job.conditions else None
        return bool(last and _terminal(last[2]) and self.job.deleting_rv and last[0] < self.job.deleting_rv)

    def recorded_reasons(self, outcomes: dict[tuple[str, int], Outcome]) -> None:
        for key, outcome in sorted(outcomes.items()):
            row = self.job.attempts.get(key)
            if outcome == Outcome.UNEXPLAINED:
                self.fail(f"attempt {key[0]}/{key[1]}: its pod was deleted before it ended, by nobody known")
            if row is None or row[2] in ("Pending", "Running"):
                continue  # not recorded as ended (older than the 10 kept, or the job went first)
            if self._stopped_first(key, outcome, row):
                continue
            want = expected_record(outcome)
            created = seconds(row[6]) or self.job.first_t
            unseen = self.history.in_gap(created, watch=pods_watch(self.job.ns))
            if outcome == Outcome.NEVER and row[2] != "Stopped" and not unseen:
                self.fail(f"attempt {key[0]}/{key[1]}: recorded {row[2]}/{row[3]} but no pod was ever seen")
            if want is None:
                continue
            states, reasons, charged = want
            if row[2] not in states or (reasons and row[3] not in reasons):
                self.fail(f"attempt {key[0]}/{key[1]}: pod shows {outcome.value}, recorded {row[2]}/{row[3]}")
            elif charged is not None and bool(row[4]) != charged:
                self.fail(f"attempt {key[0]}/{key[1]}: {outcome.value} recorded with charged={row[4]}")

    def _stopped_first(self, key: tuple[str, int], outcome: Outcome, row: list[Any]) -> bool:
        """Recorded Stopped while its pod ended: right when the operator stopped it before the pod's
        end reached the API server, or within STALE_SECONDS after (a cache that lags that much is a
        controller's lot); the suspension or cancel must have come first."""
        pod = self.pods.get(key)
        if row[2] != "Stopped" or outcome not in ENDED or pod is None or pod.terminal_rv is None:
            return False
        if not any(self.job.flags_at(pod.terminal_rv)):
            return False
        rv, t = self.job.recorded_at.get(key, (0, 0.0))
        return rv < pod.terminal_rv or t - (pod.terminal_t or 0.0) < STALE_SECONDS

    def terminal_sequence(self, retries: int, deleted: bool) -> None:
        """Terminal states change only through a retry; a job not deleted ends terminal."""
        reopened = 0
        previous: str | None = None
        for _, _, cond in self.job.conditions:
            if previous is not None and _terminal(previous):
                if _terminal(cond):
                    self.fail(f"terminal state changed from {previous} to {cond}")
                else:
                    reopened += 1
            previous = cond
        if reopened > retries:
            self.fail(f"left a terminal state {reopened} times with {retries} retries recorded")
        if not deleted and (previous is None or not _terminal(previous)):
            self.fail(f"never reached a terminal state (last: {previous})")

    def expected_end(
        self, outcomes: dict[tuple[str, int], Outcome], epoch: dict[tuple[str, int], int], last: int
    ) -> None:
        final = self.job.final
        if final is None or not _terminal(final):
            return
        retry = self.job.spec.get("retry")
        expected: str | None = "True:Succeeded"
        for stage in [s["name"] for s in self.job.spec.get("stages") or []]:
            result = _stage_result(stage, outcomes, epoch, last, retry)
            if result == "Succeeded":
                continue
            expected = f"False:{result}" if result else None
            break
        cancel_rv = next((rv for rv, _, cancel in self.job.flags if cancel), None)
        final_rv = self.job.conditions[-1][0]
        # a cancel and the end first seen in one record (a re-list after a gap) came in that order
        # only when the end is the cancel's: a job that succeeded before a hidden cancel stays Succeeded
        same = cancel_rv == final_rv and final == "False:Cancelled"
        if cancel_rv is not None and (cancel_rv < final_rv or same):
            expected = "False:Cancelled"
        if expected != final:
            self.fail(f"ended {final}; its pods and retry policy say {expected or 'not ended'}")

    def backoff_gaps(self, outcomes: dict[tuple[str, int], Outcome], epoch: dict[tuple[str, int], int]) -> None:
        retry = self.job.spec.get("retry")
        by_stage: dict[tuple[str, int], list[tuple[int, Outcome]]] = defaultdict(list)
        for (stage, number), outcome in outcomes.items():
            by_stage[(stage, epoch.get((stage, number), 0))].append((number, outcome))
        for (stage, _), outs in by_stage.items():
            waits = replay(sorted(outs), retry).waits
            for number, wait in waits.items():
                self._gap(stage, number, wait, outcomes)

    def _gap(self, stage: str, number: int, wait: float, outcomes: dict[tuple[str, int], Outcome]) -> None:
        prev, nxt = self.job.attempts.get((stage, number - 1)), self.job.attempts.get((stage, number))
        self.verdict.notes["gaps_checked"] = self.verdict.notes.get("gaps_checked", 0) + 1
        if prev is not None and nxt is not None and prev[7] and nxt[6]:
            gap = (seconds(nxt[6]) or 0) - (seconds(prev[7]) or 0)
            if gap < wait - 0.001:
                self.fail(
                    f"{stage} attempt {number}: {gap:.3f}s after attempt {number - 1} (operator's clock), owed {wait}s"
                )
        pod_prev, pod_next = self.pods.get((stage, number - 1)), self.pods.get((stage, number))
        if pod_next is None or pod_next.created is None:
            return
        created = seconds(pod_next.created) or 0.0
        if outcomes.get((stage, number - 1)) == Outcome.ERROR and pod_prev is not None:
            ended = seconds(pod_prev.finished_at)
        else:
            done = self.disruptions.get(pod_prev.uid) if pod_prev else None
            ended = done.t if done else None
        if ended is not None and created + 1 - ended <= wait:
            self.fail(
                f"{stage} attempt {number}: pod created {created + 1 - ended:.2f}s or less after the end, owed {wait}s"
            )


def _terminal(cond: str) -> bool:
    return cond.split(":", 1)[0] in ("True", "False")


def _stage_result(
    stage: str, outcomes: dict[tuple[str, int], Outcome], epoch: dict[tuple[str, int], int], last: int, retry: Any
) -> str | None:
    """The stage's result in the last epoch it ran in (a retry re-runs only the failed stage on)."""
    for current in range(last, -1, -1):
        outs = sorted((n, o) for (s, n), o in outcomes.items() if s == stage and epoch.get((s, n), 0) == current)
        if outs:
            result = replay(outs, retry).result
            return result if current == last or result == "Succeeded" else None
    return None
