"""When an attempt is recorded Running (core.attempts.RUNNING_RECORD_DELAY): with the status write
that records its pod's UID, else once its pod has run RUNNING_RECORD_DELAY, else with its end — in
every case once, at the pod's own start time, so a short attempt costs no status write for running."""

from __future__ import annotations

import json
from datetime import timedelta

from procjob.core.attempts import RUNNING_RECORD_DELAY
from procjob.core.config import CoreConfig
from procjob.core.naming import pod_name
from procjob.models.status import AUDIT_BACKLOG_LIMIT
from tests.unit.core.builders import JOB_NAME, JOB_UID, NOW, Run, image_stage, spec_of

POD1 = pod_name(JOB_NAME, JOB_UID, "work", 1)
AUDITED = CoreConfig(audit_enabled=True)


def uid_recorded(run: Run) -> None:
    """Create the attempt's pod and let a pass see it Pending (which records its UID)."""
    run.decide()
    run.tick(1)
    decision = run.decide()
    assert decision.transitions == ()
    assert run.stage().attempts[-1].pod_uid == "pod-uid-1"


def test_a_pod_first_seen_finished_is_recorded_running_at_its_start_then_its_end() -> None:
    run = Run()
    run.decide()
    run.tick(1)
    run.running()
    started = run.now
    run.tick(3)
    run.succeeded()
    decision = run.decide()
    types = [t.type for t in decision.transitions]
    assert types == ["AttemptRunning", "AttemptSucceeded", "StageSucceeded", "JobSucceeded"]
    assert decision.transitions[0].time == started  # the pod's own start, not when it was seen
    assert decision.transitions[1].reason == "Completed"  # what `procjob history` shows for the attempt
    attempt = run.stage().attempts[-1]
    assert (attempt.state, attempt.start_time, attempt.finish_time, attempt.exit_code, attempt.reason) == (
        "Succeeded",
        started,
        run.now,
        0,
        "Completed",
    )


def test_a_running_pod_whose_uid_is_recorded_costs_no_write_until_it_has_run_the_delay() -> None:
    run = Run()
    uid_recorded(run)
    run.tick(1)
    run.running()
    started = run.now
    stored = run.job().status
    decision = run.decide()
    assert decision.transitions == ()
    assert decision.status == stored  # nothing to write
    assert decision.requeue_at == started + RUNNING_RECORD_DELAY
    run.tick(RUNNING_RECORD_DELAY.total_seconds())
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptRunning"]
    assert decision.transitions[0].time == started
    attempt = run.stage().attempts[-1]
    assert (attempt.state, attempt.start_time) == ("Running", started)
    assert run.decide().transitions == ()  # recorded once


def test_a_running_pod_that_ends_within_the_delay_is_recorded_running_once_with_its_end() -> None:
    run = Run()
    uid_recorded(run)
    run.running()
    started = run.now
    run.decide()
    run.tick(2)
    run.failed(exit_code=1)
    decision = run.decide()
    assert [t.type for t in decision.transitions][:2] == ["AttemptRunning", "AttemptFailed"]
    assert decision.transitions[0].time == started
    assert run.transitions().count("AttemptRunning") == 1


def test_a_running_pod_without_a_start_time_is_recorded_at_once() -> None:
    run = Run()
    uid_recorded(run)
    run.change(phase="Running", started=None)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptRunning"]
    assert (decision.transitions[0].time, run.stage().attempts[-1].start_time) == (run.now, run.now)


def test_an_attempt_timed_out_before_it_was_recorded_running_is_recorded_running_then_failed() -> None:
    timeout = RUNNING_RECORD_DELAY.total_seconds() / 2
    run = Run(spec_of(image_stage(timeoutSeconds=int(timeout), retry={"limit": 0})))
    uid_recorded(run)
    run.running()
    started = run.now
    assert run.decide().requeue_at == started + timedelta(seconds=int(timeout))
    run.tick(int(timeout))
    decision = run.decide()
    assert [t.type for t in decision.transitions][:2] == ["AttemptRunning", "AttemptFailed"]
    failed = run.stage().attempts[-1]
    assert (failed.reason, failed.start_time) == ("DeadlineExceeded", started)


def test_a_start_time_before_the_attempt_was_created_is_clamped_to_its_creation() -> None:
    run = Run()
    uid_recorded(run)
    run.tick(1)
    run.change(phase="Succeeded", started=NOW - timedelta(hours=1), finished=run.now, exit_code=0)
    decision = run.decide()
    assert decision.transitions[0].type == "AttemptRunning"
    assert decision.transitions[0].time == NOW  # a node's clock behind ours: never before the attempt
    assert run.stage().attempts[-1].start_time == NOW


def test_a_pod_that_failed_without_running_is_not_recorded_running() -> None:
    run = Run(spec_of(image_stage(retry={"limit": 0})))
    uid_recorded(run)
    run.failed(exit_code=None, reason="ContainerCannotRun")
    decision = run.decide()
    assert "AttemptRunning" not in [t.type for t in decision.transitions]


def test_with_a_full_outbox_an_end_is_recorded_without_its_running_step() -> None:
    run = Run(config=AUDITED)
    uid_recorded(run)
    audit = dict(run.status["audit"])
    filler = audit["pending"][-1]
    last = audit["lastSeq"]
    audit["pending"] = [{**filler, "seq": last + i + 1} for i in range(AUDIT_BACKLOG_LIMIT)]
    audit["lastSeq"] = last + AUDIT_BACKLOG_LIMIT
    run.status = {**run.status, "audit": audit}
    run.succeeded()
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptSucceeded", "StageSucceeded", "JobSucceeded"]
    json.dumps(decision.status.to_api())
