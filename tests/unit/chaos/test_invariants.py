"""The chaos checkers on small synthetic histories: each invariant holds on a clean history and
fails on one that breaks it (so none of them can pass by construction)."""

from __future__ import annotations

from typing import Any

from chaos.history import build
from chaos.invariants import check_i1, check_i2
from chaos.ledger import check_i3
from chaos.leftovers import check_i4
from chaos.policy import Disruption
from chaos.tally import check_i5, key

from tests.unit.chaos.stories import Story, flaky, succeeded, succeeded_once, whole


def verdicts(story: Story, disruptions: dict[str, Disruption] | None = None) -> dict[str, Any]:
    history = build(story.records)
    rows = {story.uid: story.rows}
    return {
        "I1": check_i1(history),
        "I2": check_i2(history, rows, disruptions or {}),
        "I3": check_i3(history, rows),
    }


def test_clean_histories_hold() -> None:
    for story in (succeeded_once(), flaky()):
        found = verdicts(story)
        for name, verdict in found.items():
            assert verdict.ok, (name, verdict.violations)
            assert verdict.checked > 0


# ------------------------------------------------------------------------------------------ I1
def test_i1_a_second_pod_for_one_attempt() -> None:
    story = succeeded_once()
    story.pod(1, "Pending", e="ADDED", uid="another-pod-uid")
    verdict = check_i1(build(story.records))
    assert not verdict.ok
    assert "2 pods" in verdict.violations[0]


def test_i1_a_status_naming_a_pod_of_another_job() -> None:
    story = succeeded_once()
    story.pod(1, "Succeeded", uid="old-pod", owner="an-older-job-of-that-name", job="an-older-job-of-that-name")
    story.attempts[1][5] = "old-pod"  # the status adopted it
    story.job()
    verdict = check_i1(build(story.records))
    assert not verdict.ok
    assert "owned by an-older-job-of-that-name" in verdict.violations[0]


# ------------------------------------------------------------------------------------------ I2
def test_i2_an_end_the_policy_does_not_allow() -> None:
    story = Story(retry={"limit": 0, "delaysSeconds": [1]})
    story.job(("JobCreated", "JobCreated", None), cond="Unknown:Running", e="ADDED")
    story.attempt(1, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 1))
    story.tick(1).pod(1, "Failed", e="ADDED", ex=1, fin=whole(story.t))
    story.attempt(1, "Failed", "Error", True, finished=story.t).job(
        ("JobSucceeded", "Succeeded", None), cond="True:Succeeded"
    )
    verdict = check_i2(build(story.records), {story.uid: story.rows}, {})
    assert not verdict.ok
    assert "BackoffLimitExceeded" in verdict.violations[0]


def test_i2_a_disruption_charged_as_a_deletion() -> None:
    story = Story(retry={"limit": 3, "delaysSeconds": [1]})
    story.job(("JobCreated", "JobCreated", None), cond="Unknown:Running", e="ADDED")
    story.attempt(1, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 1))
    story.tick(1).pod(1, "Running", e="ADDED").tick(1)
    story.pod(1, "Running", dt=whole(story.t + 30), dis="EvictionByEvictionAPI").pod(1, "Running", e="DELETED")
    story.attempt(1, "Failed", "PodDeleted", True, finished=story.t).job(("AttemptFailed", "PodDeleted", 1))
    evicted = {"pod-job-1-1": Disruption("evict", story.t - 0.1)}
    verdict = check_i2(build(story.records), {story.uid: story.rows}, evicted)
    assert not verdict.ok
    assert "disrupted" in " ".join(verdict.violations)
    right = Story(retry={"limit": 3, "delaysSeconds": [1]})
    right.records = [dict(r) for r in story.records]
    right.records[-1] = {
        **right.records[-1],
        "att": [["s1", 1, "Failed", "Disruption", False, "pod-job-1-1", None, None, None]],
    }
    assert not any("recorded" in v for v in check_i2(build(right.records), {story.uid: story.rows}, evicted).violations)


def test_i2_a_retry_before_its_backoff() -> None:
    verdict = check_i2(build(flaky(delay_after_failure=1.0).records), {"job-1": flaky(1.0).rows}, {})
    assert not verdict.ok
    assert any("owed 2.0s" in v for v in verdict.violations)
    assert check_i2(build(flaky(2.5).records), {"job-1": flaky(2.5).rows}, {}).ok


def test_i2_a_terminal_state_that_changes_without_a_retry() -> None:
    story = succeeded_once()
    story.job(cond="False:BackoffLimitExceeded")
    verdict = check_i2(build(story.records), {story.uid: story.rows}, {})
    assert not verdict.ok
    assert "terminal state changed" in verdict.violations[0]


def test_i2_a_job_that_never_ends() -> None:
    story = Story()
    story.job(("JobCreated", "JobCreated", None), cond="Unknown:Queued", e="ADDED")
    verdict = check_i2(build(story.records), {story.uid: story.rows}, {})
    assert not verdict.ok
    assert "never reached a terminal state" in verdict.violations[0]


def test_i2_a_pod_deleted_by_nobody_known() -> None:
    story = Story()
    story.job(("JobCreated", "JobCreated", None), cond="Unknown:Running", e="ADDED")
    story.attempt(1, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 1))
    story.tick(1).pod(1, "Running", e="ADDED").tick(1).pod(1, "Running", e="DELETED")
    story.attempt(1, "Failed", "PodDeleted", True, finished=story.t).job(
        ("AttemptFailed", "PodDeleted", 1), ("JobFailed", "X", None), cond="False:X"
    )
    verdict = check_i2(build(story.records), {story.uid: story.rows}, {})
    assert any("by nobody known" in v for v in verdict.violations)


def suspended_then_resumed_before_the_pod_goes(*, suspended: bool) -> Story:
    """Attempt 1 runs; (when `suspended`) the job is suspended, the operator records the attempt
    Stopped, the job is resumed, and only then does the pod's deletion begin."""
    story = Story()
    story.job(("JobCreated", "JobCreated", None), cond="Unknown:Running", e="ADDED")
    story.attempt(1, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 1))
    story.tick(1).pod(1, "Running", e="ADDED").tick(1)
    if suspended:
        story.job(sus=True)
    story.attempt(1, "Stopped", "Suspended", False, finished=story.t).job(
        ("JobSuspended", "JobSuspended", None), ("AttemptStopped", "Suspended", 1), cond="Unknown:Suspended"
    )
    story.tick(0.04).job(sus=False)
    story.tick(0.03).pod(1, "Running", dt=whole(story.t)).pod(1, "Running", e="DELETED")
    story.attempt(2, "Pending", created=story.t).job(("AttemptStarted", "AttemptStarted", 2), cond="Unknown:Running")
    story.tick(1).pod(2, "Running", e="ADDED").tick(1).pod(2, "Succeeded", ex=0, fin=whole(story.t))
    story.attempt(2, "Succeeded", "Completed", finished=story.t).job(*succeeded(2), cond="True:Succeeded")
    return story


def test_i2_a_pod_deleted_after_its_recorded_stop_though_the_job_was_resumed_meanwhile() -> None:
    story = suspended_then_resumed_before_the_pod_goes(suspended=True)
    verdict = check_i2(build(story.records), {story.uid: story.rows}, {})
    assert not any("by nobody known" in v for v in verdict.violations), verdict.violations


def test_i2_a_stopped_record_with_no_suspension_does_not_explain_a_deletion() -> None:
    story = suspended_then_resumed_before_the_pod_goes(suspended=False)
    verdict = check_i2(build(story.records), {story.uid: story.rows}, {})
    assert any("by nobody known" in v for v in verdict.violations)


# ------------------------------------------------------------------------------------------ I3
def test_i3_a_row_missing_from_postgresql() -> None:
    story = flaky()
    rows = {story.uid: [r for r in story.rows if r[0] != 3]}
    verdict = check_i3(build(story.records), rows)
    assert not verdict.ok
    assert any("missing [3]" in v for v in verdict.violations)


def test_i3_a_row_unlike_its_outbox_entry() -> None:
    story = flaky()
    rows = {story.uid: [(r[0], "JobCancelled", *r[2:]) if r[0] == 2 else r for r in story.rows]}
    assert not check_i3(build(story.records), rows).ok


def test_i3_a_row_nobody_saw_unless_the_observer_was_relisting() -> None:
    story = succeeded_once()
    extra = (story.seq + 1, "JobRetried", "JobRetried", None, None, story.t, None)
    story.job(cond="True:Succeeded")
    story.records[-1]["last"] = story.seq + 1
    rows = {story.uid: [*story.rows, extra]}
    verdict = check_i3(build(story.records), rows)
    assert not verdict.ok
    assert any("never appeared in the outbox" in v for v in verdict.violations)
    story.records.append({"k": "gap", "res": "/pj", "from": story.t - 1, "to": story.t + 1})
    relisted = check_i3(build(story.records), rows)
    assert relisted.ok, relisted.violations
    assert relisted.notes["unobserved_rows"] == 1


def test_i3_job_deleted_recorded_once_for_a_deleted_job() -> None:
    story = succeeded_once()
    story.job(("JobDeleted", "JobDeleted", None)).job(e="DELETED")
    assert check_i3(build(story.records), {story.uid: story.rows}).ok
    twice = [*story.rows, (story.seq + 1, "JobDeleted", "JobDeleted", None, None, story.t, None)]
    story.records[-1]["last"] = story.seq + 1
    assert not check_i3(build(story.records), {story.uid: twice}).ok
    never = succeeded_once()
    never.job(e="DELETED")
    assert not check_i3(build(never.records), {never.uid: never.rows}).ok


def test_i3_a_pod_without_an_attempt_started_row() -> None:
    story = succeeded_once()
    story.pod(2, "Running", e="ADDED")
    verdict = check_i3(build(story.records), {story.uid: story.rows})
    assert any("no AttemptStarted row" in v for v in verdict.violations)


# ------------------------------------------------------------------------------------------ I4
def clean_end() -> dict[str, Any]:
    return {
        "unfinished": [],
        "leader_jobs_active": 0,
        "cleanup_rv": 10_000,
        "cleanup": {"jobs_left": [], "finalizers_left": [], "pods_left": [], "namespaces_left": [], "seconds": 3},
    }


def test_i4_clean_and_each_leftover() -> None:
    story = succeeded_once()
    story.tick(1).pod(1, "Succeeded", dt=whole(story.t)).tick(1).pod(1, "Succeeded", e="DELETED")
    history = build(story.records)
    assert check_i4(history, clean_end(), {}).ok
    for what, value in (
        ("jobs_left", ["ns/j"]),
        ("finalizers_left", ["ns/j: [f]"]),
        ("pods_left", ["ns/p"]),
        ("namespaces_left", ["ns"]),
    ):
        end = clean_end()
        end["cleanup"][what] = value
        assert not check_i4(history, end, {}).ok, what
    assert not check_i4(history, {**clean_end(), "leader_jobs_active": 1}, {}).ok
    assert not check_i4(history, {**clean_end(), "unfinished": ["ns/j"]}, {}).ok


def test_i4_a_pod_terminating_for_minutes_unless_held_on_purpose() -> None:
    story = succeeded_once()
    story.tick(1).pod(1, "Succeeded", dt=whole(story.t)).tick(200).pod(1, "Succeeded", e="DELETED")
    history = build(story.records)
    assert not check_i4(history, clean_end(), {}).ok
    assert check_i4(history, clean_end(), {"pod-job-1-1": 190.0}).ok


def test_i4_a_live_pod_of_a_finished_job() -> None:
    story = succeeded_once()
    story.pod(2, "Running", e="ADDED")
    end = {**clean_end(), "cleanup_rv": story.rv + 1}
    assert not check_i4(build(story.records), end, {}).ok


# ------------------------------------------------------------------------------------------ I5
def scrapes(counted: dict[str, Any], before: dict[str, Any], after: dict[str, Any], jobs: list[str]) -> dict[str, Any]:
    return {
        "processes": [{"replica": "a", "start": 1, "last": counted}],
        "calm": {"before": before, "after": after, "same_process": True, "jobs": jobs, "until": None},
    }


def test_i5_counters_at_most_the_observed_and_exact_in_the_calm_window() -> None:
    story = flaky()
    history, rows = build(story.records), {story.uid: story.rows}
    started = key("procjob_attempts_started_total")
    exact = {
        started: 2,
        'procjob_attempts_failed_total{reason="Error"}': 1,
        'procjob_retries_total{action="Retry"}': 1,
        'procjob_jobs_finished_total{outcome="Succeeded",reason="Succeeded"}': 1,
        "procjob_audit_records_total": len(story.rows),
    }
    ok = check_i5(history, rows, scrapes(exact, {}, exact, [story.uid]))
    assert ok.ok, ok.violations
    double = check_i5(history, rows, scrapes({**exact, started: 3}, {}, exact, [story.uid]))
    assert not double.ok
    assert "counted 3" in double.violations[0]
    short = check_i5(history, rows, scrapes(exact, {}, {**exact, started: 1}, [story.uid]))
    assert not short.ok
    assert "calm window" in short.violations[0]
    changed = scrapes(exact, {}, exact, [story.uid])
    changed["calm"]["same_process"] = False
    assert not check_i5(history, rows, changed).ok
    assert not check_i5(history, rows, {"processes": [], "calm": None}).ok
