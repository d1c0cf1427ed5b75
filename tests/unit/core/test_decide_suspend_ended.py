"""A suspension seen after the attempt's pod had ended records that end, not a stop: a failure keeps
its charge and its retry decision (the resumed job waits for the backoff), a failure past the limit
fails the job, and a pod gone after its end was seen counts the same.

Found by the chaos suite (seed 20261202, quick): exhaust-00079 s2/3 — the pod failed (rv 14087),
the 10 Hz writer's suspend landed just after (14088); the leader's status write for the failure met
409, it re-read the job, saw spec.suspend and recorded the attempt Stopped/Suspended, uncharged,
and the resumed job ran the attempt again."""

from __future__ import annotations

import dataclasses

from procjob.core.decide import decide
from procjob.core.naming import pod_name
from procjob.models.status import ProcessingJobStatus
from tests.unit.core.builders import JOB_NAME, JOB_UID, Run, image_stage, spec_of

POD1 = pod_name(JOB_NAME, JOB_UID, "work", 1)


def failed_then_suspended(retry: dict[str, object]) -> Run:
    run = Run(spec_of(image_stage(retry=retry)))
    run.decide()
    run.running()
    run.decide()
    run.tick(2)
    run.failed(exit_code=1)
    run.tick(0.05)
    run.set_spec(suspend=True)
    return run


def test_a_failure_seen_with_the_suspension_keeps_its_charge_and_its_backoff() -> None:
    run = failed_then_suspended({"limit": 2, "delaysSeconds": [100]})
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptFailed", "RetryScheduled", "JobSuspended"]
    assert decision.delete == ()
    stage = run.stage()
    failed = stage.attempts[-1]
    assert (failed.state, failed.reason, failed.exit_code, failed.charged) == ("Failed", "Error", 1, True)
    assert (stage.state, stage.charged_failures) == ("BackoffWaiting", 1)
    due = stage.next_attempt_time
    assert run.succeeded_condition == ("Unknown", "Suspended")

    run.set_spec(suspend=False)
    run.tick(10)
    decision = run.decide()
    assert decision.create == ()  # the backoff still runs
    assert decision.requeue_at == due
    assert run.stage().charged_failures == 1


def test_a_failure_past_the_limit_seen_with_the_suspension_fails_the_job() -> None:
    run = failed_then_suspended({"limit": 0})
    decision = run.decide()
    types = [t.type for t in decision.transitions]
    assert types == ["AttemptFailed", "StageFailed", "JobFailed"]
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    assert all(c.type != "Suspended" for c in run.parsed.conditions)


def test_a_pod_gone_after_it_failed_counts_as_that_failure_when_the_suspension_comes() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 2, "delaysSeconds": [100]})))
    run.decide()
    run.running()
    run.decide()
    run.failed(exit_code=1)
    last = run.pods[POD1]
    run.vanish(POD1)
    run.set_spec(suspend=True)
    status = decide(run.job(), [], run.now, run.config, gone={POD1: last.uid}, vanished={POD1: last}).status
    stage = ProcessingJobStatus.model_validate(status.to_api()).stages[0]
    failed = stage.attempts[-1]
    assert (failed.state, failed.reason, failed.charged) == ("Failed", "Error", True)
    assert (stage.state, stage.charged_failures) == ("BackoffWaiting", 1)


def test_a_pod_still_running_is_stopped_and_another_pod_of_that_name_is_not_taken_for_it() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 2})))
    run.decide()
    run.running()
    run.decide()
    impostor = dataclasses.replace(run.pods[POD1], phase="Failed", exit_code=1, uid="an-impostor")
    run.vanish(POD1)
    run.set_spec(suspend=True)
    status = decide(run.job(), [], run.now, run.config, gone={POD1: "pod-uid-1"}, vanished={POD1: impostor}).status
    stopped = ProcessingJobStatus.model_validate(status.to_api()).stages[0].attempts[-1]
    assert (stopped.state, stopped.reason, stopped.charged) == ("Stopped", "Suspended", False)
