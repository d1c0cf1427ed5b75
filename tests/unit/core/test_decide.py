"""`decide`: whole scenarios, pass by pass, with a fake clock and pods built by hand.

Each test drives a `Run` (tests/unit/core/builders.py): decide → store the status it returns →
change the pods or the clock → decide again, and asserts the state of the world (status, pods
created and deleted, transitions, events) rather than the calls made.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from procjob.core.config import CoreConfig
from procjob.core.decide import MAX_ATTEMPTS_PER_STAGE, decide
from procjob.core.decision import DeletePod, Event, EventType, FinalizerAction
from procjob.core.naming import pod_name
from procjob.models.audit import AuditEntry
from procjob.models.job import FINALIZER
from procjob.models.status import AUDIT_BACKLOG_LIMIT, MAX_ATTEMPTS_KEPT
from tests.unit.core.builders import (
    JOB_NAME,
    JOB_UID,
    NOW,
    OTHER_UID,
    Run,
    image_stage,
    iso,
    make_job,
    make_pod,
    spec_of,
)

AUDITED = CoreConfig(audit_enabled=True)
POD1 = pod_name(JOB_NAME, JOB_UID, "work", 1)
POD2 = pod_name(JOB_NAME, JOB_UID, "work", 2)


def quick(limit: int = 3, **retry: Any) -> dict[str, Any]:
    """A retry policy with 1s, 2s, 4s... backoff."""
    return {"limit": limit, "backoff": {"initialSeconds": 1, "factor": 2, "maxSeconds": 60}, **retry}


def env_of(manifest: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in manifest["spec"]["containers"][0]["env"]}


# ------------------------------------------------------------------------------------------------
# The scenario table: a spec, the steps the world takes, and where the job ends up.

Step = Callable[[Run], object]


def D(run: Run) -> None:  # a pass of decide; one letter, to keep the step lists readable
    run.decide()


def tick(seconds: float) -> Step:
    return lambda run: run.tick(seconds)


def R(run: Run) -> None:  # the live pod starts running
    run.running()


def ok(message: str | None = None) -> Step:
    return lambda run: run.succeeded(message=message)


def fail(code: int | None = 1, reason: str = "Error") -> Step:
    return lambda run: run.failed(exit_code=code, reason=reason)


def evict(run: Run) -> None:
    run.evicted()


def vanish(run: Run) -> None:
    run.vanish()


def spec_change(**fields: Any) -> Step:
    return lambda run: run.set_spec(**fields)


@dataclass(frozen=True)
class Outcome:
    condition: tuple[str, str]  # Succeeded condition (status, reason)
    phase: str
    attempts: dict[str, int]  # stage -> attemptCount
    charged: dict[str, int] | None = None  # stage -> chargedFailures
    live_pods: int = 0


SCENARIOS = [
    pytest.param(
        spec_of(),
        [D, R, D, tick(5), ok(), D],
        Outcome(("True", "Succeeded"), "Succeeded", {"work": 1}, {"work": 0}),
        id="a one-stage job whose pod succeeds ends Succeeded with 1 attempt",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(2))),
        [D, R, D, fail(), D, tick(1), D, R, D, fail(), D, tick(2), D, R, D, ok(), D],
        Outcome(("True", "Succeeded"), "Succeeded", {"work": 3}, {"work": 2}),
        id="a stage failing twice with limit 2 then succeeding ends Succeeded with 3 attempts",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(2))),
        [D, fail(), D, tick(1), D, fail(), D, tick(2), D, fail(), D],
        Outcome(("False", "BackoffLimitExceeded"), "Failed", {"work": 3}, {"work": 3}),
        id="a stage failing three times with limit 2 ends Failed with BackoffLimitExceeded",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(0))),
        [D, R, D, fail(), D],
        Outcome(("False", "BackoffLimitExceeded"), "Failed", {"work": 1}, {"work": 1}),
        id="limit 0 means the first failure ends the job",
    ),
    pytest.param(
        spec_of(),
        [D, R, D, fail(2), D],
        Outcome(("False", "StageFailed"), "Failed", {"work": 1}, {"work": 0}),
        id="exit code 2 fails the job at once under the default rules",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(0))),
        [D, R, D, evict, D, tick(1), D, R, D, ok(), D],
        Outcome(("True", "Succeeded"), "Succeeded", {"work": 2}, {"work": 0}),
        id="an eviction is retried without charge even with limit 0",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(1, rules=[{"onReasons": ["OOMKilled"], "action": "FailJob"}]))),
        [D, R, D, fail(137, "OOMKilled"), D],
        Outcome(("False", "StageFailed"), "Failed", {"work": 1}, {"work": 0}),
        id="a FailJob rule on OOMKilled fails the job at the first OOM kill",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(1, rules=[{"onExitCodes": [75], "action": "Ignore"}]))),
        [D, fail(75), D, tick(1), D, fail(75), D, tick(1), D, fail(75), D, tick(1), D, ok(), D],
        Outcome(("True", "Succeeded"), "Succeeded", {"work": 4}, {"work": 0}),
        id="failures an Ignore rule matches never use up the limit",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(1))),
        [D, R, D, vanish, D, tick(1), D, R, D, vanish, D],
        Outcome(("False", "BackoffLimitExceeded"), "Failed", {"work": 2}, {"work": 2}),
        id="pods deleted by hand are charged failures under the default rules",
    ),
    pytest.param(
        spec_of(image_stage("a"), image_stage("b"), image_stage("c")),
        [D, R, D, ok(), D, R, D, ok(), D, ok(), D],
        Outcome(("True", "Succeeded"), "Succeeded", {"a": 1, "b": 1, "c": 1}),
        id="three stages run one after another",
    ),
    pytest.param(
        spec_of(image_stage("a"), image_stage("b", retry=quick(0))),
        [D, ok(), D, fail(), D],
        Outcome(("False", "BackoffLimitExceeded"), "Failed", {"a": 1, "b": 1}),
        id="a failing second stage fails the job after the first succeeded",
    ),
    pytest.param(
        spec_of(image_stage(timeoutSeconds=60, retry=quick(0))),
        [D, R, D, tick(60), D],
        Outcome(("False", "BackoffLimitExceeded"), "Failed", {"work": 1}, {"work": 1}),
        id="an attempt running past timeoutSeconds fails as DeadlineExceeded and is charged",
    ),
    pytest.param(
        spec_of(image_stage(startupTimeoutSeconds=30, retry=quick(1))),
        [D, tick(30), D, tick(1), D, R, D, ok(), D],
        Outcome(("True", "Succeeded"), "Succeeded", {"work": 2}, {"work": 1}),
        id="an attempt stuck pending past its startup timeout is retried",
    ),
    pytest.param(
        spec_of(activeDeadlineSeconds=100),
        [D, R, D, tick(100), D],
        Outcome(("False", "DeadlineExceeded"), "Failed", {"work": 1}, {"work": 0}),
        id="a job running past activeDeadlineSeconds fails with DeadlineExceeded",
    ),
    pytest.param(
        spec_of(),
        [D, R, D, spec_change(suspend=True), D, tick(60), D],
        Outcome(("Unknown", "Suspended"), "Suspended", {"work": 1}, {"work": 0}),
        id="a suspended job stops its attempt and waits",
    ),
    pytest.param(
        spec_of(),
        [D, R, D, spec_change(suspend=True), D, spec_change(suspend=False), D, R, D, ok(), D],
        Outcome(("True", "Succeeded"), "Succeeded", {"work": 2}, {"work": 0}),
        id="a resumed job starts a new attempt and can succeed",
    ),
    pytest.param(
        spec_of(),
        [D, R, D, spec_change(cancel=True), D],
        Outcome(("False", "Cancelled"), "Cancelled", {"work": 1}, {"work": 0}),
        id="cancelling a running job ends it Cancelled",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(3))),
        [D, fail(), D, spec_change(cancel=True), D],
        Outcome(("False", "Cancelled"), "Cancelled", {"work": 1}, {"work": 1}),
        id="cancelling a job waiting for a retry ends it Cancelled",
    ),
    pytest.param(
        spec_of(),
        [D, R, D, tick(1), D, tick(1), D],
        Outcome(("Unknown", "Running"), "Running", {"work": 1}, {"work": 0}, live_pods=1),
        id="a running pod keeps the job Running",
    ),
    pytest.param(
        spec_of(image_stage(retry=quick(2))),
        [D, R, D, fail(), D],
        Outcome(("Unknown", "BackoffWaiting"), "Retrying", {"work": 1}, {"work": 1}),
        id="a job waiting for a retry is Retrying",
    ),
]


@pytest.mark.parametrize(("spec", "steps", "outcome"), SCENARIOS)
def test_scenario(spec: dict[str, Any], steps: list[Step], outcome: Outcome) -> None:
    run = Run(spec)
    for step in steps:
        step(run)
    status = run.parsed
    assert run.succeeded_condition == outcome.condition
    assert status.phase == outcome.phase
    assert {s.name: s.attempt_count for s in status.stages} == outcome.attempts
    if outcome.charged is not None:
        assert {s.name: s.charged_failures for s in status.stages} == outcome.charged
    assert sum(p.live for p in run.pods.values()) == outcome.live_pods
    seqs = [t.seq for d in run.decisions for t in d.transitions]
    assert seqs == list(range(1, len(seqs) + 1))


# ------------------------------------------------------------------------------------------------
# The first passes


def test_the_first_pass_records_the_start_and_creates_attempt_1() -> None:
    run = Run()
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobCreated", "JobStarted", "StageStarted", "AttemptStarted"]
    assert [t.seq for t in decision.transitions] == [1, 2, 3, 4]
    assert [(c.stage, c.attempt, c.name) for c in decision.create] == [("work", 1, POD1)]
    assert decision.create[0].manifest["metadata"]["name"] == POD1
    assert decision.delete == ()
    assert decision.requeue_at == NOW + timedelta(seconds=300)  # the default startup timeout
    assert decision.finalizer is None
    assert decision.events == (  # one Event for the pass, naming the job's transition
        Event(EventType.NORMAL, "Started", "job started; stage work started; stage work attempt 1 started"),
    )
    status = run.parsed
    assert status.start_time == NOW
    assert status.current_stage == "work"
    assert status.progress == "1/1"
    assert status.attempts == 1
    assert status.phase == "Running"
    assert status.observed_generation == 1
    assert status.message == "stage work (1/1) attempt 1 pending"
    (stage,) = status.stages
    assert stage.state == "Running"
    assert stage.start_time == NOW
    (attempt,) = stage.attempts
    assert attempt.model_dump(exclude_none=True) == {
        "attempt": 1,
        "pod_name": POD1,
        "state": "Pending",
        "create_time": NOW,
    }


def test_a_pod_seen_running_makes_the_attempt_running() -> None:
    run = Run()
    run.decide()
    run.tick(3)
    run.running()
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptRunning"]
    assert decision.events == ()  # AttemptRunning is audited, not posted
    assert (decision.create, decision.delete) == ((), ())
    attempt = run.stage().attempts[-1]
    assert (attempt.state, attempt.pod_uid, attempt.start_time) == ("Running", "pod-uid-1", NOW + timedelta(seconds=3))
    assert run.parsed.message == "stage work (1/1) attempt 1 running"
    assert run.decide().transitions == ()  # still running: nothing new happens


def test_success_starts_the_next_stage_in_the_same_pass_with_outputs_templated() -> None:
    fetch = {
        "name": "fetch",
        "uses": "fetch",
        "with": {"url": "https://example.org/{{ job.name }}.jpg", "bucket": "media", "key": "raw/{{ job.name }}.jpg"},
    }
    resize = image_stage(
        "resize",
        args=["--key={{ stages.fetch.outputs.key }}", "--size={{ stages.fetch.outputs.size }}"],
        env=[{"name": "INPUT_KEY", "value": "{{ stages.fetch.outputs.key }}"}],
    )
    run = Run(spec_of(fetch, resize))
    run.decide()
    run.running()
    run.decide()
    run.tick(10)
    run.succeeded(message=json.dumps({"key": "raw/thumbs.jpg", "size": 18231}))
    decision = run.decide()
    assert [t.type for t in decision.transitions] == [
        "AttemptSucceeded",
        "StageSucceeded",
        "StageStarted",
        "AttemptStarted",
    ]
    assert decision.transitions[0].detail == {"outputs": {"key": "raw/thumbs.jpg", "size": 18231}}
    (create,) = decision.create
    assert (create.stage, create.attempt) == ("resize", 1)
    assert create.manifest["spec"]["containers"][0]["args"] == ["--key=raw/thumbs.jpg", "--size=18231"]
    assert env_of(create.manifest)["INPUT_KEY"] == "raw/thumbs.jpg"
    assert run.stage("fetch").outputs == {"key": "raw/thumbs.jpg", "size": 18231}
    assert run.stage("fetch").state == "Succeeded"
    assert run.stage("fetch").completion_time == run.now
    assert run.parsed.current_stage == "resize"
    assert run.parsed.progress == "2/2"
    assert run.parsed.attempts == 2


# ------------------------------------------------------------------------------------------------
# Retries and backoff


def test_retries_wait_for_the_backoff_and_requeue_at_the_due_time() -> None:
    run = Run(spec_of(image_stage(retry=quick(2))))
    run.decide()
    run.running()
    run.decide()
    run.tick(7)
    run.failed(exit_code=1)
    finished = run.now
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptFailed", "RetryScheduled"]
    assert decision.create == ()
    assert decision.requeue_at == finished + timedelta(seconds=1)
    stage = run.stage()
    assert stage.state == "BackoffWaiting"
    assert stage.next_attempt_time == finished + timedelta(seconds=1)
    assert stage.last_retry_decision is not None
    assert stage.last_retry_decision.to_api() == {
        "rule": "default",
        "action": "Retry",
        "failureReason": "Error",
        "exitCode": 1,
        "delaySeconds": 1.0,
        "retriesLeft": 1,
    }
    failed = stage.attempts[-1]
    assert (failed.state, failed.exit_code, failed.reason, failed.charged) == ("Failed", 1, "Error", True)
    assert decision.transitions[1].detail["nextAttemptTime"] == (finished + timedelta(seconds=1)).isoformat()
    due_text = (finished + timedelta(seconds=1)).isoformat()
    assert run.parsed.message == f"stage work (1/1) attempt 1 failed: Error (exit 1); attempt 2 at {due_text}"

    run.tick(0.5)
    early = run.decide()
    assert early.create == ()
    assert early.transitions == ()
    assert early.requeue_at == finished + timedelta(seconds=1)

    run.tick(0.5)
    due = run.decide()
    assert [(c.attempt, c.name) for c in due.create] == [(2, POD2)]
    assert [t.type for t in due.transitions] == ["AttemptStarted"]  # StageStarted only once

    run.running()
    run.decide()
    run.tick(3)
    run.failed(exit_code=1)
    second_finish = run.now
    decision = run.decide()
    assert decision.requeue_at == second_finish + timedelta(seconds=2)  # the second retry waits 2s
    run.tick(1.999)
    assert run.decide().create == ()
    run.tick(0.001)
    assert [c.attempt for c in run.decide().create] == [3]
    run.succeeded()
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")
    assert [a.attempt for a in run.stage().attempts] == [1, 2, 3]


def test_a_zero_delay_retry_starts_the_next_attempt_in_the_same_pass() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 1, "delaysSeconds": [0]})))
    run.decide()
    run.failed(exit_code=1)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == [
        "AttemptRunning",
        "AttemptFailed",
        "RetryScheduled",
        "AttemptStarted",
    ]
    assert [c.attempt for c in decision.create] == [2]


def test_explicit_delays_are_used_in_order_and_the_last_repeats() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 5, "delaysSeconds": [1, 4, 8]})))
    run.decide()
    waits = []
    for _ in range(4):
        run.failed(exit_code=1)
        decision = run.decide()
        assert decision.requeue_at is not None
        waits.append((decision.requeue_at - run.now).total_seconds())
        run.now = decision.requeue_at
        run.decide()
    assert waits == [1, 4, 8, 8]


def test_exhausting_the_retries_fails_the_job_with_rule_limit() -> None:
    run = Run(spec_of(image_stage(retry=quick(1))))
    run.decide()
    run.failed(exit_code=3)
    run.decide()
    run.tick(1)
    run.decide()
    run.failed(exit_code=3)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptRunning", "AttemptFailed", "StageFailed", "JobFailed"]
    assert decision.create == ()
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    stage = run.stage()
    assert stage.state == "Failed"
    assert stage.message == "stage work failed 2 times (exit 3); retry limit 1 reached"
    assert stage.last_retry_decision is not None
    assert stage.last_retry_decision.to_api() == {
        "rule": "limit",
        "action": "Retry",
        "failureReason": "Error",
        "exitCode": 3,
        "retriesLeft": 0,
    }
    status = run.parsed
    assert status.completion_time == run.now
    assert status.duration == "1s"
    assert status.current_stage is None
    assert [(e.type, e.reason) for e in decision.events] == [(EventType.WARNING, "JobFailed")]


def test_a_fail_job_rule_fails_the_stage_and_the_job_at_once() -> None:
    run = Run(spec_of(image_stage(retry=quick(5))))
    run.decide()
    run.running()
    run.decide()
    run.failed(exit_code=2)
    decision = run.decide()
    assert run.succeeded_condition == ("False", "StageFailed")
    assert run.parsed.message == "stage work failed (exit 2): defaultRules[0] says FailJob"
    decision_record = run.stage().last_retry_decision
    assert decision_record is not None
    assert (decision_record.rule, decision_record.action, decision_record.retries_left) == (
        "defaultRules[0]",
        "FailJob",
        5,
    )
    assert decision.create == ()
    assert run.stage().attempts[-1].charged is False


def test_an_ignore_rule_retries_without_charging_and_waits_like_the_next_charged_retry() -> None:
    spec = spec_of(image_stage(retry=quick(1, rules=[{"onReasons": ["Evicted", "PodDeleted"], "action": "Ignore"}])))
    run = Run(spec)
    run.decide()
    run.running()
    run.decide()
    run.failed(exit_code=1)
    run.decide()  # charged: retry 1 after 1s
    assert run.stage().charged_failures == 1
    run.tick(1)
    run.decide()
    run.running()
    run.decide()
    run.evicted()
    decision = run.decide()
    stage = run.stage()
    assert stage.charged_failures == 1
    assert stage.attempts[-1].charged is False
    assert stage.attempts[-1].reason == "Evicted"
    assert stage.last_retry_decision is not None
    assert (stage.last_retry_decision.rule, stage.last_retry_decision.action) == ("rules[0]", "Ignore")
    assert stage.last_retry_decision.retries_left == 0
    assert decision.requeue_at == run.now + timedelta(seconds=2)  # as long as retry 2 would wait
    run.tick(2)
    run.decide()
    run.running()
    run.decide()
    run.vanish()
    run.decide()
    assert run.stage().attempts[-1].reason == "PodDeleted"
    assert run.stage().charged_failures == 1
    assert run.stage().state == "BackoffWaiting"


def test_jittered_delays_are_deterministic_and_at_least_the_schedule() -> None:
    retry = {"limit": 3, "backoff": {"initialSeconds": 10, "factor": 2, "maxSeconds": 60, "jitter": 0.5}}
    delays = []
    for _ in range(2):
        run = Run(spec_of(image_stage(retry=retry)))
        run.decide()
        run.failed(exit_code=1)
        run.decide()
        decision = run.stage().last_retry_decision
        assert decision is not None
        assert decision.delay_seconds is not None
        delays.append(decision.delay_seconds)
    assert delays[0] == delays[1]
    assert 10 <= delays[0] <= 15


# ------------------------------------------------------------------------------------------------
# Timeouts and deadlines


def test_an_attempt_past_timeout_seconds_is_deleted_and_fails_as_deadline_exceeded() -> None:
    run = Run(spec_of(image_stage(timeoutSeconds=60, retry=quick(1))))
    run.decide()
    run.tick(5)
    run.running()
    started = run.now
    decision = run.decide()
    assert decision.requeue_at == started + timedelta(seconds=60)
    run.tick(59)
    assert run.decide().delete == ()
    run.tick(1)
    decision = run.decide()
    assert decision.delete == (DeletePod(POD1, "pod-uid-1", "attempt timeout"),)
    failed = run.stage().attempts[-1]
    assert (failed.state, failed.reason, failed.exit_code, failed.charged) == ("Failed", "DeadlineExceeded", None, True)
    assert failed.message == "attempt ran longer than timeoutSeconds (60s)"
    assert run.stage().state == "BackoffWaiting"


def test_a_pod_stuck_in_image_pull_back_off_fails_with_startup_timeout() -> None:
    run = Run(spec_of(image_stage(startupTimeoutSeconds=120, retry=quick(1))))
    run.decide()
    run.tick(10)
    run.change(waiting_reason="ImagePullBackOff", waiting_message='Back-off pulling image "nope:1"')
    decision = run.decide()
    assert decision.transitions == ()
    assert run.stage().attempts[-1].message == 'ImagePullBackOff: Back-off pulling image "nope:1"'
    assert run.parsed.message == 'stage work (1/1) attempt 1 pending: ImagePullBackOff: Back-off pulling image "nope:1"'
    assert decision.requeue_at == NOW + timedelta(seconds=120)
    run.tick(110)
    decision = run.decide()
    assert decision.delete == (DeletePod(POD1, "pod-uid-1", "startup timeout"),)
    failed = run.stage().attempts[-1]
    assert (failed.reason, failed.charged) == ("StartupTimeout", True)
    assert failed.message == (
        'pod not running after startupTimeoutSeconds (120s): ImagePullBackOff: Back-off pulling image "nope:1"'
    )


def test_an_unschedulable_pod_says_why_and_times_out_like_a_pending_one() -> None:
    run = Run(spec_of(image_stage(startupTimeoutSeconds=30, retry=quick(0))))
    run.decide()
    run.change(unschedulable="0/3 nodes are available: 3 Insufficient memory. " * 40)
    run.decide()
    message = run.stage().attempts[-1].message
    assert message is not None
    assert message.startswith("Unschedulable: 0/3 nodes are available")
    assert len(message) == 1024  # a long scheduler message is cut to the field's bound
    run.change(unschedulable=None)
    run.decide()
    assert run.stage().attempts[-1].message is None
    run.tick(30)
    run.decide()
    assert run.stage().attempts[-1].message == "pod not running after startupTimeoutSeconds (30s)"
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")


def test_a_pod_never_created_within_the_startup_timeout_fails_the_attempt() -> None:
    run = Run(spec_of(image_stage(startupTimeoutSeconds=60, retry=quick(1))))
    run.decide(apply=False)  # the controller crashed before creating the pod
    run.tick(60)
    decision = run.decide()
    assert decision.create == ()
    failed = run.stage().attempts[-1]
    assert (failed.state, failed.reason) == ("Failed", "StartupTimeout")
    assert failed.message == "pod not created within startupTimeoutSeconds (60s)"


def test_a_job_past_its_active_deadline_fails_and_its_pods_are_deleted() -> None:
    run = Run(spec_of(activeDeadlineSeconds=600))
    first = run.decide()
    assert first.requeue_at == NOW + timedelta(seconds=300)  # startup timeout comes first
    run.running()
    decision = run.decide()
    assert decision.requeue_at == NOW + timedelta(seconds=600)
    run.tick(600)
    decision = run.decide()
    assert [d.name for d in decision.delete] == [POD1]
    assert run.succeeded_condition == ("False", "DeadlineExceeded")
    assert run.parsed.message == "job ran past activeDeadlineSeconds (600s)"
    assert [t.type for t in decision.transitions] == ["AttemptFailed", "JobFailed"]
    attempt = run.stage().attempts[-1]
    assert (attempt.state, attempt.reason, attempt.charged) == ("Failed", "DeadlineExceeded", False)
    assert run.stage().state == "Failed"
    assert run.parsed.duration == "10m00s"


def test_a_job_past_its_deadline_while_waiting_for_a_retry_fails() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 3, "delaysSeconds": [50]}), activeDeadlineSeconds=60))
    run.decide()
    run.tick(5)
    run.failed()
    run.decide()
    assert run.stage().state == "BackoffWaiting"
    run.tick(55)
    decision = run.decide()
    assert run.succeeded_condition == ("False", "DeadlineExceeded")
    assert run.stage().state == "Failed"
    assert run.stage().next_attempt_time is None
    assert decision.create == ()


def test_a_retry_whose_wait_ends_past_the_deadline_fails_at_once() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 3, "delaysSeconds": [60]}), activeDeadlineSeconds=30))
    run.decide()
    run.running()
    run.decide()
    run.tick(5)
    run.failed()
    decision = run.decide()
    assert run.succeeded_condition == ("False", "DeadlineExceeded")
    assert run.parsed.message == "stage work: the retry in 60s would start after the job's deadline"
    assert [t.type for t in decision.transitions] == ["AttemptFailed", "StageFailed", "JobFailed"]
    stage_decision = run.stage().last_retry_decision
    assert stage_decision is not None
    assert stage_decision.delay_seconds == 60


# ------------------------------------------------------------------------------------------------
# Suspend, resume, cancel, queue


def test_suspend_stops_the_running_attempt_without_charge_and_resume_starts_a_new_one() -> None:
    run = Run()
    run.decide()
    run.running()
    run.decide()
    run.tick(10)
    run.set_spec(suspend=True)
    pod = run.pods[POD1]
    decision = run.decide()
    assert decision.delete == (DeletePod(POD1, pod.uid, "Suspended"),)
    assert decision.create == ()
    assert [t.type for t in decision.transitions] == ["JobSuspended", "AttemptStopped"]
    stopped = run.stage().attempts[-1]
    assert (stopped.state, stopped.reason, stopped.charged, stopped.finish_time) == (
        "Stopped",
        "Suspended",
        False,
        run.now,
    )
    assert run.stage().state == "Suspended"
    assert run.stage().charged_failures == 0
    conditions = {c.type: (c.status, c.reason) for c in run.parsed.conditions}
    assert conditions == {"Succeeded": ("Unknown", "Suspended"), "Suspended": ("True", "Suspended")}
    assert run.parsed.phase == "Suspended"
    assert run.parsed.observed_generation == 2

    run.tick(3600)
    quiet = run.decide()
    assert (quiet.transitions, quiet.create, quiet.delete) == ((), (), ())

    run.set_spec(suspend=False)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobResumed", "AttemptStarted"]
    assert [c.attempt for c in decision.create] == [2]
    assert decision.events == (Event(EventType.NORMAL, "Resumed", "job resumed; stage work attempt 2 started"),)
    suspended = next(c for c in run.parsed.conditions if c.type == "Suspended")
    assert (suspended.status, suspended.reason, suspended.last_transition_time) == ("False", "Resumed", run.now)
    assert run.succeeded_condition == ("Unknown", "Running")
    assert run.stage().charged_failures == 0
    assert run.decide().transitions == ()  # JobResumed is recorded once


def test_suspend_while_waiting_for_a_retry_keeps_the_wait_and_resume_honours_it() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 2, "delaysSeconds": [100]})))
    run.decide()
    run.failed()
    run.decide()
    due = run.stage().next_attempt_time
    run.set_spec(suspend=True)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobSuspended"]
    assert run.stage().state == "BackoffWaiting"
    run.set_spec(suspend=False)
    run.tick(10)
    decision = run.decide()
    assert decision.create == ()
    assert decision.requeue_at == due


def test_a_job_created_suspended_neither_starts_nor_holds_a_slot_until_resumed() -> None:
    run = Run(spec_of(suspend=True), admitted=False)
    decision = run.decide()
    assert decision.create == ()
    assert [t.type for t in decision.transitions] == ["JobCreated", "JobSuspended"]
    assert run.parsed.phase == "Suspended"
    assert run.parsed.start_time is None
    run.set_spec(suspend=False)
    run.admitted = True
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobStarted", "JobResumed", "StageStarted", "AttemptStarted"]
    assert run.parsed.start_time == run.now
    assert len(decision.create) == 1


def failed_for_good(run: Run) -> None:
    run.decide()
    run.failed(exit_code=1)
    run.decide()
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")


def test_a_retry_request_reruns_a_failed_job_from_its_failed_stage_with_a_fresh_budget() -> None:
    run = Run(spec_of(image_stage("first"), image_stage("work"), retry={"limit": 0}))
    run.decide()
    run.succeeded(run.live_pod)
    run.decide()
    run.failed(exit_code=1)
    run.decide()
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    run.tick(60)
    run.annotations = {"procjob.dev/retry": "2026-01-01T00:01:00Z"}
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobRetried", "AttemptStarted"]
    assert decision.events == (
        Event(EventType.NORMAL, "Retried", f"{decision.transitions[0].message}; stage work attempt 2 started"),
    )
    assert run.parsed.last_retry_request == "2026-01-01T00:01:00Z"
    assert run.parsed.start_time == run.now  # the deadline clock restarts
    assert run.parsed.completion_time is None
    assert [(c.stage, c.attempt) for c in decision.create] == [("work", 2)]
    assert run.stage("first").attempt_count == 1  # the stage that succeeded is not repeated
    assert run.stage("work").charged_failures == 0
    run.succeeded(run.live_pod)
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")
    assert run.stage("work").attempt_count == 2
    # the same value again changes nothing
    assert run.decide().transitions == ()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param("running", None, id="a retry request on a running job is acknowledged and ignored"),
        pytest.param("succeeded", ("True", "Succeeded"), id="a retry request on a succeeded job is ignored"),
        pytest.param("cancelled", ("False", "Cancelled"), id="a retry request on a cancelled job is ignored"),
    ],
)
def test_retry_requests_only_rerun_failed_jobs(setup: str, expected: tuple[str, str] | None) -> None:
    run = Run()
    run.decide()
    if setup == "succeeded":
        run.succeeded(run.live_pod)
        run.decide()
    elif setup == "cancelled":
        run.set_spec(cancel=True)
        run.decide()
    run.annotations = {"procjob.dev/retry": "2026-01-01T00:00:00Z"}
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["RetryIgnored"]
    assert decision.events[0].type == EventType.WARNING
    assert decision.create == ()
    assert run.parsed.last_retry_request == "2026-01-01T00:00:00Z"
    if expected is not None:
        assert run.succeeded_condition == expected


def test_a_running_attempt_whose_node_stops_reporting_keeps_running_until_its_timeout() -> None:
    run = Run(spec_of(image_stage(timeoutSeconds=30), retry={"limit": 0}))
    run.decide()
    run.running()
    run.decide()
    run.change(phase="Unknown")
    run.tick(10)
    decision = run.decide()
    assert decision.transitions == ()
    assert decision.requeue_at == NOW + timedelta(seconds=30)
    run.tick(25)
    run.decide()
    assert run.stage().attempts[-1].reason == "DeadlineExceeded"


def test_an_unknown_pod_that_never_ran_is_held_to_the_startup_timeout() -> None:
    run = Run(spec_of(image_stage(startupTimeoutSeconds=5), retry={"limit": 0}))
    run.decide()
    run.change(phase="Unknown")
    run.tick(6)
    run.decide()
    assert run.stage().attempts[-1].reason == "StartupTimeout"


def test_cancel_while_running_deletes_the_pod_and_ends_cancelled() -> None:
    run = Run()
    run.decide()
    run.running()
    run.decide()
    run.set_spec(cancel=True)
    decision = run.decide()
    assert [d.name for d in decision.delete] == [POD1]
    assert [t.type for t in decision.transitions] == ["AttemptStopped", "JobCancelled"]
    assert decision.events == (
        Event(EventType.NORMAL, "Cancelled", "stage work attempt 1 stopped: Cancelled; cancelled"),
    )
    assert run.succeeded_condition == ("False", "Cancelled")
    assert run.parsed.phase == "Cancelled"
    assert run.stage().state == "Cancelled"
    assert run.stage().attempts[-1].state == "Stopped"
    assert run.stage().charged_failures == 0


def test_cancel_while_waiting_for_a_retry_ends_cancelled_without_a_new_pod() -> None:
    run = Run(spec_of(image_stage(retry=quick(3))))
    run.decide()
    run.failed()
    run.decide()
    run.set_spec(cancel=True)
    run.tick(60)
    decision = run.decide()
    assert decision.create == ()
    assert [t.type for t in decision.transitions] == ["JobCancelled"]
    assert run.stage().state == "Cancelled"
    assert run.stage().next_attempt_time is None


def test_cancel_while_queued_ends_cancelled_without_starting() -> None:
    run = Run(admitted=False)
    run.decide()
    run.set_spec(cancel=True)
    decision = run.decide()
    assert (decision.create, decision.delete) == ((), ())
    assert [t.type for t in decision.transitions] == ["JobCancelled"]
    status = run.parsed
    assert (status.phase, status.start_time, status.duration) == ("Cancelled", None, None)
    assert run.stage().state == "Pending"


def test_a_job_not_admitted_is_queued_and_records_it_once() -> None:
    run = Run(admitted=False)
    decision = run.decide()
    assert decision.create == ()
    assert [t.type for t in decision.transitions] == ["JobCreated", "JobQueued"]
    assert decision.events == (Event(EventType.NORMAL, "Queued", "waiting for a free slot"),)
    status = run.parsed
    assert (status.phase, status.start_time, status.progress, status.current_stage) == ("Queued", None, "0/1", "work")
    assert run.succeeded_condition == ("Unknown", "Queued")
    assert decision.requeue_at is None
    run.tick(30)
    assert run.decide().transitions == ()
    run.admitted = True
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobStarted", "StageStarted", "AttemptStarted"]
    assert run.parsed.start_time == run.now


def test_admission_is_asked_only_before_the_start() -> None:
    run = Run()
    run.decide()
    run.admitted = False
    run.running()
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptRunning"]
    assert run.succeeded_condition == ("Unknown", "Running")


# ------------------------------------------------------------------------------------------------
# Pods that are not where the status says


def test_a_pod_deleted_by_hand_is_a_pod_deleted_failure() -> None:
    run = Run(spec_of(image_stage(retry=quick(2))))
    run.decide()
    run.running()
    run.decide()
    assert run.stage().attempts[-1].pod_uid == "pod-uid-1"
    run.vanish()
    run.decide()
    failed = run.stage().attempts[-1]
    assert (failed.state, failed.reason, failed.message, failed.charged) == (
        "Failed",
        "PodDeleted",
        "the pod was deleted",
        True,
    )


def test_a_pod_being_deleted_by_someone_else_is_waited_for() -> None:
    run = Run(spec_of(image_stage(startupTimeoutSeconds=10)))
    run.decide()
    run.running()
    run.decide()
    run.change(deleting=True)
    run.tick(3600)
    decision = run.decide()
    assert (decision.transitions, decision.delete, decision.create) == ((), (), ())
    run.vanish(POD1)
    run.decide()
    assert run.stage().attempts[-1].reason == "PodDeleted"


def test_a_recorded_attempt_whose_pod_was_never_seen_is_created_again_with_the_same_name() -> None:
    run = Run()
    first = run.decide(apply=False)
    run.tick(5)
    again = run.decide()
    assert [(c.name, c.attempt) for c in again.create] == [(POD1, 1)]
    assert again.create[0].manifest == first.create[0].manifest
    assert again.transitions == ()
    assert again.requeue_at == NOW + timedelta(seconds=300)
    assert run.stage().attempt_count == 1
    run.running()
    run.decide()
    assert run.stage().attempts[-1].pod_uid == "pod-uid-1"


def test_a_pod_with_our_name_but_another_uid_is_deleted_and_the_attempt_fails() -> None:
    run = Run(spec_of(image_stage(retry=quick(1))))
    run.decide()
    run.running()
    run.decide()
    run.change(POD1, uid="impostor", deleting=False)
    decision = run.decide()
    assert decision.delete == (DeletePod(POD1, "impostor", "not the pod this attempt created"),)
    assert run.stage().attempts[-1].reason == "PodDeleted"


def test_an_impostor_already_being_deleted_is_not_deleted_again() -> None:
    run = Run(spec_of(image_stage(retry=quick(1))))
    run.decide()
    run.running()
    run.decide()
    run.change(POD1, uid="impostor", deleting=True)
    decision = run.decide()
    assert decision.delete == ()
    assert run.stage().attempts[-1].reason == "PodDeleted"


def test_stray_live_pods_of_the_job_are_deleted() -> None:
    run = Run()
    run.decide()
    run.pods["stray"] = make_pod("stray", uid="s1", phase="Running")
    run.pods["orphan"] = make_pod("orphan", uid="s2", owner_uid=None)
    run.pods["finished"] = make_pod("finished", uid="s3", phase="Succeeded")
    run.pods["going"] = make_pod("going", uid="s4", phase="Running", deleting=True)
    run.pods["nameless-uid"] = make_pod("nameless-uid", uid="")
    decision = run.decide()
    assert sorted(decision.delete, key=lambda d: d.name) == [
        DeletePod("nameless-uid", None, "not the current attempt"),
        DeletePod("stray", "s1", "not the current attempt"),
    ]  # the orphan (no controller) is not the job's: never deleted, never counted


def test_a_look_alike_pod_in_another_namespace_or_without_the_controller_reference_never_counts() -> None:
    run = Run()
    run.decide()
    real = run.pods[POD1]
    impostors = [
        dataclasses.replace(real, uid="i1", namespace="tenant-b", phase="Failed", exit_code=1),
        dataclasses.replace(real, uid="i2", owner_uid=None, phase="Succeeded", termination_message='{"k": "v"}'),
    ]
    for impostor in impostors:
        run.pods[POD1] = impostor
        decision = run.decide(apply=False)
        assert [t.type for t in decision.transitions] == []
        assert decision.delete == ()
        assert [c.name for c in decision.create] == [POD1]  # its own pod is missing: create (409 adopts)


def test_pods_of_other_jobs_are_ignored() -> None:
    run = Run()
    run.pods["other-label"] = make_pod(POD1, uid="x1", job_uid=OTHER_UID, owner_uid=OTHER_UID, phase="Running")
    run.pods["other-owner"] = make_pod("other-owner", uid="x2", owner_uid=OTHER_UID, phase="Running")
    run.pods["no-label"] = make_pod("no-label", uid="x3", job_uid=None, phase="Running")
    decision = run.decide()
    assert decision.delete == ()
    assert [c.name for c in decision.create] == [POD1]  # a same-named pod of another job is not ours
    run.pods = {name: pod for name, pod in run.pods.items() if name != POD1}
    run.pods[POD1] = make_pod(POD1, uid="theirs", owner_uid=OTHER_UID, phase="Failed", exit_code=1)
    assert run.decide().transitions == ()


# ------------------------------------------------------------------------------------------------
# Terminal jobs and pod GC


def test_a_terminal_job_absorbs_later_passes() -> None:
    run = Run(spec_of(podGC="Never"))
    run.decide()
    run.succeeded()
    run.decide()
    settled = run.parsed
    run.tick(3600)
    run.set_spec(suspend=True, cancel=True)
    run.pods["late"] = make_pod("late", uid="l1", phase="Running")
    decision = run.decide()
    assert decision.create == ()
    assert decision.transitions == ()
    assert decision.delete == (DeletePod("late", "l1", "job finished"),)
    later = run.parsed
    assert later.conditions == settled.conditions
    assert later.stages == settled.stages
    assert later.phase == "Succeeded"
    assert later.observed_generation == 2


@pytest.mark.parametrize(
    ("gc", "finish", "collected"),
    [
        pytest.param("Never", ok(), False, id="podGC Never keeps the pods of a succeeded job"),
        pytest.param("OnSuccess", ok(), True, id="podGC OnSuccess deletes the pods of a succeeded job"),
        pytest.param("OnSuccess", fail(2), False, id="podGC OnSuccess keeps the pods of a failed job"),
        pytest.param("OnCompletion", ok(), True, id="podGC OnCompletion deletes the pods of a succeeded job"),
        pytest.param("OnCompletion", fail(2), True, id="podGC OnCompletion deletes the pods of a failed job"),
    ],
)
def test_pod_gc(gc: str, finish: Step, collected: bool) -> None:
    run = Run(spec_of(image_stage("a"), image_stage("b"), podGC=gc))
    run.decide()
    run.succeeded()
    run.decide()
    finish(run)
    decision = run.decide(apply=False)
    assert run.parsed.completion_time == run.now
    expected = {pod_name(JOB_NAME, JOB_UID, s, 1) for s in "ab"} if collected else set()
    assert decision.delete == ()  # every pod goes at once: one request (Decision.collect)
    assert {d.name for d in decision.collect} == expected
    assert all(d.why == "podGC" for d in decision.collect)
    assert {d.name for d in run.decide(apply=False).collect} == expected  # repeated until the pods are gone
    for name in expected:
        run.change(name, deleting=True)
    assert (run.decide().delete, run.decide().collect) == ((), ())


# ------------------------------------------------------------------------------------------------
# Invalid specs


def test_a_stored_spec_that_does_not_parse_fails_the_job_as_invalid() -> None:
    run = Run({"stages": [{"name": "Bad_Name", "image": "x"}], "retry": {"limit": -1}})
    decision = run.decide()
    message = (
        "spec.stages[0].name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'; "
        "spec.retry.limit: Input should be greater than or equal to 0"
    )
    assert decision.create == ()
    assert [t.type for t in decision.transitions] == ["JobCreated", "InvalidSpec", "JobFailed"]
    assert decision.events[0] == Event(EventType.WARNING, "InvalidSpec", message)
    assert run.succeeded_condition == ("False", "InvalidSpec")
    status = run.parsed
    assert (status.phase, status.message, status.stages, status.observed_generation) == ("Failed", message, [], 1)
    again = run.decide()
    assert (again.transitions, again.create) == ((), ())


@pytest.mark.parametrize(
    ("spec", "config", "message"),
    [
        pytest.param(
            spec_of(image_stage(args=["{{ stages.fetch.outputs.key }}"])),
            CoreConfig(),
            "spec.stages[0].args[0]: {{ stages.fetch.outputs.key }} names stage 'fetch', which does not exist",
            id="a template naming an unknown stage is an invalid spec",
        ),
        pytest.param(
            spec_of(serviceAccountName="admin"),
            CoreConfig(),
            "spec.serviceAccountName: 'admin' is not allowed by the operator (allowed: none)",
            id="a service account is refused when the operator allows none",
        ),
        pytest.param(
            spec_of(serviceAccountName="admin"),
            CoreConfig(allowed_service_accounts=frozenset({"reader", "uploader"})),
            "spec.serviceAccountName: 'admin' is not allowed by the operator (allowed: reader, uploader)",
            id="a service account the operator does not allow is refused, naming the allowed ones",
        ),
    ],
)
def test_problems_the_schema_cannot_see_are_invalid_specs(
    spec: dict[str, Any], config: CoreConfig, message: str
) -> None:
    run = Run(spec, config=config)
    decision = run.decide()
    assert decision.create == ()
    assert run.succeeded_condition == ("False", "InvalidSpec")
    assert run.parsed.message == message
    assert decision.events == (Event(EventType.WARNING, "InvalidSpec", message),)  # JobFailed says the same
    assert [s.state for s in run.parsed.stages] == ["Pending"]


def test_an_allowed_service_account_runs() -> None:
    run = Run(spec_of(serviceAccountName="reader"), config=CoreConfig(allowed_service_accounts=frozenset({"reader"})))
    decision = run.decide()
    assert decision.create[0].manifest["spec"]["serviceAccountName"] == "reader"


def test_a_later_stage_needing_an_output_that_was_not_written_fails_the_job() -> None:
    run = Run(spec_of(image_stage("a"), image_stage("b", args=["{{ stages.a.outputs.key }}"])))
    run.decide()
    run.succeeded(message="all done")
    decision = run.decide()
    assert decision.create == ()
    assert run.succeeded_condition == ("False", "StageFailed")
    assert run.parsed.message == "stage b: {{ stages.a.outputs.key }}: stage 'a' wrote no outputs"
    assert run.stage("b").state == "Failed"
    assert [t.type for t in decision.transitions][-2:] == ["StageFailed", "JobFailed"]


def test_a_recreate_that_cannot_render_fails_the_attempt_and_the_job() -> None:
    """Only a status edited by hand gets here: the outputs an attempt was rendered from are gone."""
    run = Run(spec_of(image_stage("a"), image_stage("b", args=["{{ stages.a.outputs.key }}"])))
    run.decide()
    run.succeeded(message='{"key": "k"}')
    run.decide(apply=False)  # stage b's attempt 1 is recorded, its pod not created
    stages = run.status["stages"]
    run.status = {**run.status, "stages": [{**stages[0], "outputs": {"other": 1}}, stages[1]]}
    decision = run.decide()
    assert decision.create == ()
    assert run.succeeded_condition == ("False", "StageFailed")
    attempt = run.stage("b").attempts[-1]
    assert (attempt.state, attempt.reason, attempt.charged) == ("Failed", "TemplateError", False)


# ------------------------------------------------------------------------------------------------
# Outputs


@pytest.mark.parametrize(
    ("message", "outputs", "attempt_message", "stage_message"),
    [
        pytest.param('{"key": "k", "n": 1}', {"key": "k", "n": 1}, None, None, id="a JSON object becomes the outputs"),
        pytest.param("done: 3 files", None, "done: 3 files", None, id="plain text is kept as the message, not outputs"),
        pytest.param("[1, 2]", None, "[1, 2]", None, id="JSON that is not an object is kept as the message"),
        pytest.param(None, None, None, None, id="no termination message means no outputs"),
        pytest.param(
            json.dumps({"blob": "x" * 5000}),
            None,
            "termination message over 4096 bytes: outputs not kept",
            "termination message over 4096 bytes: outputs not kept",
            id="a termination message over 4 KiB is not kept and the stage says so",
        ),
    ],
)
def test_outputs_from_the_termination_message(
    message: str | None, outputs: dict[str, Any] | None, attempt_message: str | None, stage_message: str | None
) -> None:
    run = Run()
    run.decide()
    run.succeeded(message=message)
    run.decide()
    stage = run.stage()
    assert stage.outputs == outputs
    assert stage.attempts[-1].message == attempt_message
    assert stage.message == stage_message
    assert run.succeeded_condition == ("True", "Succeeded")


# ------------------------------------------------------------------------------------------------
# Audit outbox, finalizer, deletion


def test_audit_sequence_numbers_are_contiguous_across_passes() -> None:
    run = Run(spec_of(image_stage(retry=quick(2))), config=AUDITED)
    for step in [D, R, D, fail(), D, tick(1), D, R, D, ok(), D]:
        step(run)
    entries = run.parsed.audit.pending
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [e.type for e in entries] == run.transitions()
    assert run.parsed.audit.last_seq == len(entries)
    assert run.parsed.audit.flushed_seq == 0


def test_without_audit_the_outbox_only_counts() -> None:
    run = Run()
    run.decide()
    run.succeeded()
    run.decide()
    audit = run.parsed.audit
    assert audit.pending == []
    assert audit.last_seq == audit.flushed_seq == len(run.transitions())


def test_the_pending_list_shrinks_when_the_relay_trims_it_and_seq_continues() -> None:
    run = Run(config=AUDITED)
    run.decide()
    run.trim_audit()
    run.running()
    run.decide()
    audit = run.parsed.audit
    assert [(e.seq, e.type) for e in audit.pending] == [(5, "AttemptRunning")]
    assert (audit.last_seq, audit.flushed_seq) == (5, 4)


def test_a_full_audit_backlog_holds_new_attempts_until_it_is_trimmed() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 3, "delaysSeconds": [0]})), config=AUDITED)
    run.decide()
    filler = [
        {"seq": n, "type": "JobQueued", "time": iso(NOW)} for n in range(5, AUDIT_BACKLOG_LIMIT + 1)
    ]  # as if PostgreSQL had been down for a while
    audit = run.status["audit"]
    run.status["audit"] = {**audit, "pending": [*audit["pending"], *filler], "lastSeq": AUDIT_BACKLOG_LIMIT}
    run.running()
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptRunning"]  # running attempts are still recorded
    run.failed()
    decision = run.decide()
    assert decision.create == ()
    assert [t.type for t in decision.transitions] == ["AttemptFailed", "RetryScheduled"]
    assert run.succeeded_condition == ("Unknown", "AuditBacklogFull")
    assert run.parsed.phase == "Running"
    assert len(run.parsed.audit.pending) == AUDIT_BACKLOG_LIMIT + 3
    assert run.decide().create == ()
    run.trim_audit()
    decision = run.decide()
    assert [c.attempt for c in decision.create] == [2]
    assert decision.transitions[0].seq == AUDIT_BACKLOG_LIMIT + 4
    assert run.succeeded_condition == ("Unknown", "Running")


def test_the_finalizer_is_added_when_audit_is_enabled_and_missing() -> None:
    assert Run(config=AUDITED).decide().finalizer == FinalizerAction.ADD
    run = Run(config=AUDITED)
    run.finalizers = (FINALIZER,)
    assert run.decide().finalizer is None
    assert Run().decide().finalizer is None


def test_a_terminal_job_still_gets_its_finalizer() -> None:
    run = Run()
    run.decide()
    run.succeeded()
    run.decide()
    run.config = AUDITED
    assert run.decide().finalizer == FinalizerAction.ADD


def test_deletion_stops_pods_records_once_and_releases_the_finalizer_when_flushed() -> None:
    run = Run(config=AUDITED)
    run.finalizers = (FINALIZER,)
    run.decide()
    run.running()
    run.decide()
    run.pods["done"] = make_pod("done", uid="d1", phase="Succeeded")
    run.deletion_time = run.now
    settled = run.parsed
    decision = run.decide()
    assert decision.delete == (DeletePod(POD1, "pod-uid-1", "job deleted"),)
    assert [t.type for t in decision.transitions] == ["JobDeleted"]
    assert decision.finalizer is None
    assert decision.create == ()
    assert run.parsed.audit.deletion_recorded
    assert run.parsed.conditions == settled.conditions  # the status is not summarized again
    again = run.decide()
    assert again.transitions == ()
    assert again.finalizer is None
    run.trim_audit()
    assert run.decide().finalizer == FinalizerAction.REMOVE


def test_deletion_without_audit_removes_a_leftover_finalizer_at_once() -> None:
    run = Run()
    run.decide()
    run.finalizers = (FINALIZER,)
    run.deletion_time = run.now
    decision = run.decide()
    assert decision.finalizer == FinalizerAction.REMOVE
    assert decision.transitions == ()
    run.finalizers = ()
    assert run.decide().finalizer is None


# ------------------------------------------------------------------------------------------------
# Events, bounds, determinism


def event_type(entry: AuditEntry) -> EventType:
    return EventType.WARNING if entry.type.meaning.warning else EventType.NORMAL


def test_events_mirror_every_posted_transition_one_event_per_type_and_pass() -> None:
    run = Run(spec_of(image_stage(retry=quick(1))))
    for step in [D, R, D, fail(), D, tick(1), D, R, D, fail(), D]:
        step(run)
    for decision in run.decisions:
        posted = [t for t in decision.transitions if t.type.meaning.event_reason is not None]
        assert len(decision.events) == len({event_type(t) for t in posted})
        for type_ in EventType:
            group = [t for t in posted if event_type(t) == type_]
            event = next((e for e in decision.events if e.type == type_), None)
            assert (event is None) == (not group)
            if event is not None:
                assert event.message == "; ".join(dict.fromkeys(t.message for t in group))
                assert event.reason in {t.type.meaning.event_reason for t in group}
    events = [(e.type, e.reason) for d in run.decisions for e in d.events]
    assert events == [
        (EventType.NORMAL, "Started"),
        (EventType.WARNING, "AttemptFailed"),
        (EventType.NORMAL, "RetryScheduled"),
        (EventType.NORMAL, "AttemptStarted"),
        (EventType.WARNING, "JobFailed"),  # AttemptFailed, StageFailed, JobFailed: the job's reason leads
    ]
    assert "AttemptRunning" in run.transitions()
    assert all("running" not in e.message for d in run.decisions for e in d.events)


def test_the_job_reason_leads_a_pass_that_ends_a_stage_and_the_job() -> None:
    run = Run(spec_of(image_stage("a"), image_stage("b")))
    for step in [D, R, D, ok(), D, R, D, ok(), D]:
        step(run)
    events = [(e.reason, e.message) for d in run.decisions for e in d.events]
    assert events[:2] == [
        ("Started", "job started; stage a started; stage a attempt 1 started"),
        ("StageSucceeded", "stage a succeeded; stage b started; stage b attempt 1 started"),
    ]
    assert events[2][0] == "JobSucceeded"
    assert events[2][1].startswith("stage b succeeded; ")
    assert len(events) == 3


def test_important_events_only_leave_out_a_stages_routine_start_and_success() -> None:
    def messages(config: CoreConfig) -> list[str]:
        run = Run(spec_of(image_stage("a", retry=quick(1)), image_stage("b")), config=config)
        for step in [D, R, D, fail(), D, tick(1), D, R, D, ok(), D, R, D, ok(), D]:
            step(run)
        assert run.transitions()[-1] == "JobSucceeded"
        return [m for d in run.decisions for e in d.events for m in e.message.split("; ")]

    everything = messages(CoreConfig())
    important = messages(CoreConfig(routine_events=False))
    routine = {"stage a started", "stage a attempt 1 started", "stage a attempt 2 started", "stage a succeeded"}
    routine |= {"stage b started", "stage b attempt 1 started", "stage b succeeded"}
    assert routine <= set(everything)
    assert important == [m for m in everything if m not in routine]
    assert len(important) == 4, important  # job started, attempt 1 failed, retry scheduled, job succeeded


def test_the_status_stays_bounded_after_many_ignored_failures() -> None:
    spec = spec_of(
        image_stage(retry={"limit": 1, "delaysSeconds": [0], "rules": [{"onExitCodes": [1], "action": "Ignore"}]})
    )
    run = Run(spec)
    run.decide()
    for _ in range(30):
        run.failed()
        run.decide()
    stage = run.stage()
    assert stage.attempt_count == 31
    assert stage.charged_failures == 0
    assert len(stage.attempts) == MAX_ATTEMPTS_KEPT
    assert [a.attempt for a in stage.attempts] == list(range(22, 32))
    assert run.parsed.attempts == 31


def test_a_stage_stops_at_the_hard_attempt_limit_whatever_the_rules() -> None:
    spec = spec_of(
        image_stage(retry={"limit": 1, "delaysSeconds": [0], "rules": [{"onExitCodes": [1], "action": "Ignore"}]})
    )
    run = Run(spec)
    run.decide()
    for _ in range(MAX_ATTEMPTS_PER_STAGE):
        run.failed()
        run.decide()
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    assert run.parsed.message == f"stage work reached {MAX_ATTEMPTS_PER_STAGE} attempts"
    decision = run.stage().last_retry_decision
    assert decision is not None
    assert decision.rule == "maxAttempts"
    assert run.stage().attempt_count == MAX_ATTEMPTS_PER_STAGE


def test_decide_is_deterministic_and_takes_a_default_config() -> None:
    job = make_job(spec_of(image_stage("a"), image_stage("b")))
    pods = [make_pod("stray", phase="Running")]
    first, second = decide(job, pods, NOW), decide(job, pods, NOW)
    assert first == second
    assert [c.manifest for c in first.create] == [c.manifest for c in second.create]


def test_a_new_generation_is_observed() -> None:
    run = Run()
    run.decide()
    run.set_spec(priority=5)
    run.decide()
    assert run.parsed.observed_generation == 2
    assert next(c for c in run.parsed.conditions if c.type == "Succeeded").observed_generation == 2


@pytest.mark.parametrize(
    ("change", "condition"),
    [
        pytest.param({"suspend": True}, ("Unknown", "Suspended"), id="a success seen only after suspend is kept"),
        pytest.param({"cancel": True}, ("False", "Cancelled"), id="a success seen only after cancel is kept"),
    ],
)
def test_an_attempt_that_already_succeeded_is_not_stopped(change: dict[str, bool], condition: tuple[str, str]) -> None:
    run = Run(spec_of(image_stage("a"), image_stage("b")))
    run.decide()
    run.running()
    run.decide()
    run.succeeded(message='{"k": 1}')
    run.set_spec(**change)
    decision = run.decide()
    assert decision.delete == ()
    types = [t.type for t in decision.transitions]
    assert "AttemptStopped" not in types
    assert types[types.index("AttemptSucceeded") + 1] == "StageSucceeded"
    assert run.stage("a").state == "Succeeded"
    assert run.stage("a").outputs == {"k": 1}
    assert run.stage("a").attempts[-1].state == "Succeeded"
    assert run.succeeded_condition == condition


def test_a_resumed_job_goes_on_with_the_stage_after_one_that_succeeded_while_suspending() -> None:
    run = Run(spec_of(image_stage("a"), image_stage("b")))
    run.decide()
    run.succeeded()
    run.set_spec(suspend=True)
    run.decide()
    run.set_spec(suspend=False)
    decision = run.decide()
    assert [(c.stage, c.attempt) for c in decision.create] == [("b", 1)]
    assert run.stage("a").attempt_count == 1


def test_a_success_seen_only_after_the_deadline_still_counts_for_its_stage() -> None:
    run = Run(spec_of(image_stage("a"), image_stage("b"), activeDeadlineSeconds=60))
    run.decide()
    run.tick(30)
    run.succeeded()
    run.tick(30)
    run.decide()
    assert run.stage("a").state == "Succeeded"
    assert run.stage("b").state == "Pending"
    assert run.succeeded_condition == ("False", "DeadlineExceeded")


# ------------------------------------------------------------------------------------------------
# status.durationSeconds: a number a program can read, refreshed only by writes that happen anyway.


def test_duration_seconds_counts_from_the_start_while_running_and_to_the_end_once_finished() -> None:
    run = Run()
    run.decide()
    assert (run.parsed.start_time, run.parsed.duration_seconds) == (NOW, 0)
    run.tick(5)
    run.running()
    run.decide()  # AttemptRunning: the status is written anyway, and the value comes along
    assert run.parsed.duration_seconds == 5
    assert run.parsed.duration is None  # the human form is only set at the end
    run.tick(40.9)
    run.succeeded()
    run.decide()
    assert run.parsed.completion_time == NOW + timedelta(seconds=45.9)
    assert (run.parsed.duration_seconds, run.parsed.duration) == (45, "45s")
    run.tick(3600)
    run.decide()
    assert run.parsed.duration_seconds == 45  # the end is fixed: later passes do not move it


def test_a_pass_where_only_time_moved_keeps_duration_seconds_so_the_status_is_not_rewritten() -> None:
    run = Run()
    run.decide()
    run.running()
    run.decide()
    stored = run.parsed
    run.tick(300)
    quiet = run.decide()
    assert quiet.transitions == ()
    assert quiet.status == stored  # nothing to write: the controller skips the PUT
    assert run.parsed.duration_seconds == 0
    run.set_spec(priority=5)  # any other change writes the status, and refreshes the value
    changed = run.decide()
    assert changed.transitions == ()
    assert run.parsed.observed_generation == 2
    assert run.parsed.duration_seconds == 300


def test_duration_seconds_is_unset_while_queued_and_again_when_a_retried_job_queues() -> None:
    run = Run(admitted=False)
    run.decide()
    assert (run.parsed.phase, run.parsed.duration_seconds) == ("Queued", None)
    run.admitted = True
    run.decide()
    run.tick(7)
    run.failed(exit_code=2)
    run.set_spec(retry={"limit": 0})
    run.decide()
    assert (run.parsed.phase, run.parsed.duration_seconds) == ("Failed", 7)
    run.admitted = False
    run.annotations = {"procjob.dev/retry": "2026-01-01T00:01:00Z"}
    run.decide()
    assert (run.parsed.phase, run.parsed.start_time, run.parsed.duration_seconds) == ("Queued", None, None)
