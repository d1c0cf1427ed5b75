"""I2's rules for the harder cases a full run met: how a pod ended when it was also evicted or
deleted, a stop against a deletion, replay after an accepted stop, a cancel seen in the same record
as the end, and whose watch gap excuses what (each with the history that must still fail)."""

from __future__ import annotations

from chaos.history import build
from chaos.invariants import check_i2, stall_windows
from chaos.policy import Disruption
from chaos.verdict import Verdict

from tests.unit.chaos.stories import T0, Story, succeeded, whole

EVICTED = "EvictionByEvictionAPI"


def judge(story: Story, disruptions: dict[str, Disruption] | None = None) -> Verdict:
    return check_i2(build(story.records), {story.uid: story.rows}, disruptions or {})


def started(retry: dict[str, object] | None = None) -> Story:
    """Created; attempt 1 started and its pod running."""
    story = Story(retry=retry)
    story.job(("JobCreated", "JobCreated", None), cond="Unknown:Running", e="ADDED")
    story.attempt(1, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 1))
    story.tick(0.5).pod(1, "Running", e="ADDED").tick(1)
    return story


def second_attempt_succeeds(story: Story, after: float) -> Story:
    """Attempt 2 starts `after` seconds on and succeeds; the job Succeeded."""
    story.tick(after).attempt(2, "Pending", created=story.t)
    story.job(("AttemptStarted", "AttemptStarted", 2), cond="Unknown:Running")
    story.tick(0.1).pod(2, "Running", e="ADDED").tick(1).pod(2, "Succeeded", ex=0, fin=whole(story.t))
    story.attempt(2, "Succeeded", "Completed", finished=story.t).job(*succeeded(2), cond="True:Succeeded")
    return story


# ------------------------------------------------------------------- a pod that ended, then evicted
def test_a_pod_that_succeeded_then_was_evicted_counts_as_succeeded() -> None:
    story = started()
    story.pod(1, "Succeeded", ex=0, fin=whole(story.t))
    story.attempt(1, "Succeeded", "Completed", finished=story.t).job(*succeeded(1), cond="True:Succeeded")
    story.tick(2.4).pod(1, "Succeeded", ex=0, dis=EVICTED)
    story.pod(1, "Succeeded", ex=0, dis=EVICTED, dt=whole(story.t)).pod(1, "Succeeded", e="DELETED", dis=EVICTED)
    verdict = judge(story, {"pod-job-1-1": Disruption("evict", story.t - 0.01)})
    assert verdict.ok, verdict.violations
    assert verdict.notes["outcomes"] == {"succeeded": 1}


def evicted_around_a_failure(*, disrupted_first: bool, recorded: tuple[str, bool]) -> Story:
    """Attempt 1's pod fails (exit 137) with the DisruptionTarget condition shown before its failed
    phase (or only after it); the operator records `recorded` (reason, charged); attempt 2 succeeds."""
    story = started()
    if disrupted_first:
        story.pod(1, "Running", dis=EVICTED)
    story.tick(0.1).pod(1, "Failed", ex=137, fin=whole(story.t), dis=EVICTED if disrupted_first else None)
    if not disrupted_first:
        story.pod(1, "Failed", ex=137, fin=whole(story.t), dis=EVICTED)
    story.pod(1, "Failed", e="DELETED", ex=137, dis=EVICTED)
    story.attempt(1, "Failed", recorded[0], recorded[1], finished=story.t).job(("AttemptFailed", recorded[0], 1))
    return second_attempt_succeeds(story, 2.5)


def test_a_disruption_seen_before_the_failed_phase_is_still_a_disruption() -> None:
    evicted = {"pod-job-1-1": Disruption("evict", 0.0)}
    right = judge(evicted_around_a_failure(disrupted_first=True, recorded=("Evicted", False)), evicted)
    assert right.ok, right.violations
    assert right.notes["outcomes"]["disrupted"] == 1
    charged = judge(evicted_around_a_failure(disrupted_first=True, recorded=("Error", True)), evicted)
    assert any("pod shows disrupted, recorded Failed/Error" in v for v in charged.violations), charged.violations


def test_a_disruption_seen_only_after_the_failed_phase_leaves_it_a_failure() -> None:
    evicted = {"pod-job-1-1": Disruption("evict", 0.0)}
    right = judge(evicted_around_a_failure(disrupted_first=False, recorded=("Error", True)), evicted)
    assert right.ok, right.violations
    assert right.notes["outcomes"]["error"] == 1


# ------------------------------------------------------------- a recorded stop, then the suite's delete
def stopped_then_deleted_by_the_suite(*, suspended: bool) -> Story:
    """(When `suspended`) the job is suspended; the operator records attempt 1 Stopped; then the
    suite's graceful delete begins; the job is resumed and attempt 2 starts 0.994 s after attempt
    1's recorded end (a stop owes no wait; a charged deletion would owe 1 s)."""
    story = started({"limit": 2, "delaysSeconds": [1]})
    story.job(sus=suspended).tick(0.5)
    story.attempt(1, "Stopped", "Suspended", False, finished=story.t)
    story.job(("AttemptStopped", "Suspended", 1), cond="Unknown:Suspended")
    story.tick(0.2).pod(1, "Running", dt=whole(story.t + 30)).tick(0.3).pod(1, "Running", e="DELETED")
    story.job(sus=False)
    return second_attempt_succeeds(story, 0.494)


def test_a_stop_recorded_before_the_suites_delete_wins_over_the_delete() -> None:
    story = stopped_then_deleted_by_the_suite(suspended=True)
    verdict = judge(story, {"pod-job-1-1": Disruption("delete", T0 + 2.15)})
    assert verdict.ok, verdict.violations
    assert verdict.notes["outcomes"]["stopped"] == 1
    unsuspended = stopped_then_deleted_by_the_suite(suspended=False)
    verdict = judge(unsuspended, {"pod-job-1-1": Disruption("delete", T0 + 2.15)})
    assert any("pod shows deleted, recorded Stopped/Suspended" in v for v in verdict.violations), verdict.violations


# ------------------------------------------------------- the suite's delete of a cancelled job's pod
def force_deleted_then_stopped(*, cancelled: bool) -> Story:
    """(When `cancelled`) the job is cancelled; the suite force-deletes attempt 1's pod before the
    operator (its watches stalled) stops it; the operator then records it Stopped/Cancelled and the
    job Cancelled."""
    story = started()
    story.job(can=cancelled).tick(0.5)
    story.pod(1, "Running", e="DELETED")  # a force delete: gone without a deletionTimestamp seen
    story.tick(5).attempt(1, "Stopped", "Cancelled", False, finished=story.t)
    story.job(("AttemptStopped", "Cancelled", 1), ("JobCancelled", "Cancelled", None), cond="False:Cancelled")
    return story


def test_the_suites_delete_of_a_cancelled_jobs_pod_may_be_recorded_stopped() -> None:
    story = force_deleted_then_stopped(cancelled=True)
    verdict = judge(story, {"pod-job-1-1": Disruption("force", T0 + 2.0)})
    assert verdict.ok, verdict.violations
    assert verdict.notes["outcomes"] == {"stopped": 1}
    never = force_deleted_then_stopped(cancelled=False)
    verdict = judge(never, {"pod-job-1-1": Disruption("force", T0 + 2.0)})
    assert any("pod shows deleted, recorded Stopped/Cancelled" in v for v in verdict.violations), verdict.violations


# --------------------------------------------------------------- replay after an accepted stop
def stopped_before_its_pod_failed(gap: float) -> Story:
    """delaysSeconds [1, 2]: the job is suspended and attempt 1 recorded Stopped before its pod
    fails; resumed, attempt 2 fails (charged: 1 s owed); attempt 3 starts `gap` later and succeeds."""
    story = started({"limit": 3, "delaysSeconds": [1, 2]})
    story.job(sus=True).tick(0.2)
    story.attempt(1, "Stopped", "Suspended", False, finished=story.t)
    story.job(("AttemptStopped", "Suspended", 1), cond="Unknown:Suspended")
    story.tick(0.1).pod(1, "Failed", ex=1, fin=whole(story.t)).tick(0.1).pod(1, "Failed", e="DELETED", ex=1)
    story.tick(1).job(sus=False).tick(0.5)
    story.attempt(2, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 2), cond="Unknown:Running")
    story.tick(0.1).pod(2, "Running", e="ADDED")
    end = float(int(story.t) + 1)
    story.t = end
    story.pod(2, "Failed", ex=1, fin=whole(end))
    story.attempt(2, "Failed", "Error", True, finished=end).job(("AttemptFailed", "Error", 2))
    story.t = end + gap
    story.attempt(3, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 3), cond="Unknown:Running")
    story.tick(0.1).pod(3, "Running", e="ADDED").tick(1).pod(3, "Succeeded", ex=0, fin=whole(story.t))
    story.attempt(3, "Succeeded", "Completed", finished=story.t).job(*succeeded(3), cond="True:Succeeded")
    return story


def test_a_stop_accepted_for_an_attempt_is_not_charged_in_the_replay() -> None:
    verdict = judge(stopped_before_its_pod_failed(1.002))
    assert verdict.ok, verdict.violations
    assert verdict.notes["outcomes"] == {"error": 1, "stopped": 1, "succeeded": 1}
    early = judge(stopped_before_its_pod_failed(0.9))
    assert any("attempt 3: 0.900s after attempt 2 (operator's clock), owed 1.0s" in v for v in early.violations)


# ------------------------------------------------- a cancel and the end first seen in one record
def cancel_seen_with_the_end(cond: str) -> Story:
    """Attempt 1 runs; after an observer gap the re-listed job shows the cancel and its end `cond`
    in one record (attempt 1 Stopped/Cancelled, or Succeeded when the pod succeeded first)."""
    story = started()
    if cond == "True:Succeeded":
        story.pod(1, "Succeeded", ex=0, fin=whole(story.t))
        story.attempt(1, "Succeeded", "Completed", finished=story.t)
        story.job(*succeeded(1), cond=cond, can=True)
    else:
        story.attempt(1, "Stopped", "Cancelled", False, finished=story.t)
        story.job(("AttemptStopped", "Cancelled", 1), ("JobCancelled", "Cancelled", None), cond=cond, can=True)
        story.tick(0.1).pod(1, "Running", dt=whole(story.t)).pod(1, "Running", e="DELETED")
    story.records.append(
        {"k": "gap", "res": "/apis/procjob.dev/v1alpha1/namespaces/ns/processingjobs", "from": T0 + 1, "to": story.t}
    )
    return story


def test_a_cancel_and_its_cancelled_end_seen_in_one_record() -> None:
    verdict = judge(cancel_seen_with_the_end("False:Cancelled"))
    assert verdict.ok, verdict.violations


def test_a_hidden_cancel_seen_with_a_success_leaves_the_success() -> None:
    verdict = judge(cancel_seen_with_the_end("True:Succeeded"))
    assert verdict.ok, verdict.violations


# ------------------------------------------------------------------ whose gap excuses a missing pod
def failed_with_no_pod_seen(gap_of: str) -> Story:
    """Attempt 1 recorded Failed/StartupTimeout though the observer saw no pod; a re-list gap of
    the watch `gap_of` covers its creation."""
    story = Story(retry={"limit": 0, "delaysSeconds": [1]})
    story.job(("JobCreated", "JobCreated", None), cond="Unknown:Running", e="ADDED")
    story.attempt(1, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 1))
    story.records.append({"k": "gap", "res": gap_of, "from": story.t - 1, "to": story.t + 1})
    story.tick(60).attempt(1, "Failed", "StartupTimeout", True, finished=story.t)
    story.job(("AttemptFailed", "StartupTimeout", 1), ("JobFailed", "BackoffLimitExceeded", None))
    return story


def test_only_a_gap_of_the_jobs_own_pods_watch_excuses_a_pod_never_seen() -> None:
    own = judge(failed_with_no_pod_seen("/api/v1/namespaces/ns/pods"))
    assert not any("no pod was ever seen" in v for v in own.violations), own.violations
    for other in ("/api/v1/namespaces/other/events", "/api/v1/namespaces/other/pods", "/api/v1/namespaces/ns/events"):
        verdict = judge(failed_with_no_pod_seen(other))
        assert any("no pod was ever seen" in v for v in verdict.violations), (other, verdict.violations)


# --------------------------------------------- an eviction nobody could see: the watches stalled
def evicted_while_the_watches_stalled(reason: str, charged: bool, after: float) -> Story:
    """The suite evicts attempt 1's pod and it vanishes at once; the operator records `reason`;
    attempt 2 starts `after` seconds later and succeeds."""
    story = started({"limit": 2, "delaysSeconds": [2]})
    story.pod(1, "Running", dis=EVICTED).pod(1, "Running", dis=EVICTED, dt=whole(story.t))
    story.pod(1, "Running", e="DELETED", dis=EVICTED)
    story.tick(5).attempt(1, "Failed", reason, charged, finished=story.t)
    story.job(("AttemptFailed", reason, 1))
    return second_attempt_succeeds(story, after)


def test_an_eviction_during_a_stall_of_the_operators_watches_may_be_recorded_deleted() -> None:
    evicted = {"pod-job-1-1": Disruption("evict", T0 + 1.4)}
    stall = [(T0, T0 + 90)]
    deleted = evicted_while_the_watches_stalled("PodDeleted", True, 2.5)
    verdict = check_i2(build(deleted.records), {deleted.uid: deleted.rows}, evicted, stall)
    assert verdict.ok, verdict.violations
    assert verdict.notes["outcomes"]["deleted"] == 1
    early = evicted_while_the_watches_stalled("PodDeleted", True, 1.5)  # the charged retry owes 2 s
    verdict = check_i2(build(early.records), {early.uid: early.rows}, evicted, stall)
    assert any("owed 2.0s" in v for v in verdict.violations), verdict.violations
    disrupted = evicted_while_the_watches_stalled("Evicted", False, 2.5)
    verdict = check_i2(build(disrupted.records), {disrupted.uid: disrupted.rows}, evicted, stall)
    assert verdict.ok, verdict.violations
    unstalled = judge(deleted, evicted)
    assert any("pod shows disrupted, recorded Failed/PodDeleted" in v for v in unstalled.violations)
    later = check_i2(build(deleted.records), {deleted.uid: deleted.rows}, evicted, [(T0 + 10, T0 + 90)])
    assert any("pod shows disrupted, recorded Failed/PodDeleted" in v for v in later.violations)


def test_stall_windows_from_the_drivers_fault_records() -> None:
    faults = [
        {"name": "silent-watch", "result": {"stalled_at": 100.0, "stall_s": 90}},
        {"name": "silent-watch", "result": None},
        {"name": "disruptions", "result": {"done": {}}},
    ]
    assert stall_windows(faults) == [(100.0, 190.0)]


def test_both_replicas_stopped_count_as_a_window_nobody_watched() -> None:
    """Seed 20261202, quick (CI, 2026-12-03): `disrupt-00125`'s pod was evicted 1.3 s after the
    delete-recreate fault stopped both replicas; the restarted leader found it gone, with nothing to
    say it had been evicted, and recorded `PodDeleted`, charged."""
    down = {"operator": "down", "down_from": 407.4, "released_at": 413.0}
    faults = [
        {"name": "delete-recreate", "started": 407.0, "ended": 422.7, "result": down},
        {"name": "delete-recreate", "started": 600.0, "ended": 610.0, "result": {"operator": "up"}},
        {"name": "delete-recreate", "started": 700.0, "ended": 715.0, "result": {"operator": "down"}},  # older record
    ]
    assert stall_windows(faults) == [(407.4, 413.0 + 5.0), (700.0, 715.0)]


# ------------------------------------------------------ the suite's eviction of a cancelled job's pod
def evicted_then_stopped(*, cancelled: bool) -> Story:
    """(When `cancelled`) the job is cancelled; the suite evicts attempt 1's pod before the operator
    (its watches stalled) stops it; the operator then records it Stopped/Cancelled and the job
    Cancelled (seed 915638: cancel-00431, cancelled 8.8 s before the eviction, recorded 78 s after)."""
    story = started()
    story.job(can=cancelled).tick(0.5)
    story.pod(1, "Running", dis=EVICTED).pod(1, "Running", dis=EVICTED, dt=whole(story.t + 30))
    story.pod(1, "Running", e="DELETED", dis=EVICTED)
    story.tick(5).attempt(1, "Stopped", "Cancelled", False, finished=story.t)
    story.job(("AttemptStopped", "Cancelled", 1), ("JobCancelled", "Cancelled", None), cond="False:Cancelled")
    return story


def test_the_suites_eviction_of_a_cancelled_jobs_pod_may_be_recorded_stopped() -> None:
    evicted = {"pod-job-1-1": Disruption("evict", T0 + 2.0)}
    verdict = judge(evicted_then_stopped(cancelled=True), evicted)
    assert verdict.ok, verdict.violations
    assert verdict.notes["outcomes"] == {"stopped": 1}
    never = judge(evicted_then_stopped(cancelled=False), evicted)
    assert any("pod shows disrupted, recorded Stopped/Cancelled" in v for v in never.violations), never.violations
