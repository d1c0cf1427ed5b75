"""A hostile job or pod is that job's problem: decide never raises, ends what it must with a reason
naming the cause, and keeps the status within its bounds (issue: hardening).

Each case is named by a sentence; the property tests at the end feed random hostile input through
decide and the status serialisation.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.config import CoreConfig
from procjob.core.decide import MAX_RETRY_REQUEST, TERMINATING_PATIENCE, decide, needs_admission, retry_ack
from procjob.core.decision import DeletePod
from procjob.core.failsafe import fail_unprocessable
from procjob.core.naming import pod_name
from procjob.core.observe import PodObservation
from procjob.models.status import AUDIT_BACKLOG_LIMIT, AUDIT_OUTBOX_HARD_LIMIT, ProcessingJobStatus
from tests.unit.core.builders import JOB_NAME, JOB_UID, NOW, Run, image_stage, spec_of

POD1 = pod_name(JOB_NAME, JOB_UID, "work", 1)
POD2 = pod_name(JOB_NAME, JOB_UID, "work", 2)
AUDITED = CoreConfig(audit_enabled=True)


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        pytest.param('{"k":"\\ud800"}', "not valid UTF-8", id="a lone surrogate escape"),
        pytest.param('{"k":"a\\u0000b"}', "NUL", id="a NUL character"),
        pytest.param('{"k":' * 9 + "1" + "}" * 9, "deeper than 8 levels", id="nine levels"),
        pytest.param('{"k":' + "[" * 1500 + "]" * 1500 + "}", "deeper than 8 levels", id="1,500 levels"),
    ],
)
def test_outputs_that_cannot_be_kept_fail_the_attempt_with_the_cause(message: str, cause: str) -> None:
    run = Run(spec_of(retry={"limit": 0}))
    run.decide()
    run.succeeded(message=message)
    decision = run.decide()
    assert [t.type for t in decision.transitions][:2] == ["AttemptRunning", "AttemptFailed"]
    attempt = run.stage().attempts[-1]
    assert (attempt.state, attempt.reason) == ("Failed", "InvalidOutputs")
    assert cause in (attempt.message or "")
    assert run.stage().outputs is None
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    json.dumps(decision.status.to_api())  # the status still serialises


def test_outputs_just_within_the_bounds_are_kept() -> None:
    run = Run()
    run.decide()
    deep = '{"a":' * 8 + '"é"' + "}" * 8
    run.succeeded(message=deep)
    run.decide()
    assert run.stage().state == "Succeeded"
    assert run.stage().outputs is not None


def test_a_pod_the_api_server_refuses_fails_the_stage_at_once_with_its_message() -> None:
    run = Run(spec_of(retry={"limit": 5}))
    decision = decide(run.job(), [], NOW, run.config)
    run.status = ProcessingJobStatus.model_validate(decision.status.to_api()).to_api()
    refused = 'Pod "x" is invalid: spec.containers[0].resources.requests: Invalid value: "2": must be <= limit'
    decision = decide(run.job(), [], NOW, run.config, rejected={POD1: refused})
    assert [t.type for t in decision.transitions] == ["AttemptFailed", "StageFailed", "JobFailed"]
    assert decision.create == ()
    failed = decision.transitions[0]
    assert failed.reason == "PodRejected"
    assert refused in failed.message
    status = decision.status
    assert status.stages[0].last_retry_decision is not None
    assert status.stages[0].last_retry_decision.rule == "podRejected"
    succeeded = next(c for c in status.conditions if c.type == "Succeeded")
    assert (succeeded.status, succeeded.reason) == ("False", "StageFailed")
    assert refused in succeeded.message
    assert any(e.type.value == "Warning" for e in decision.events)


def test_a_pod_seen_deleted_before_its_uid_was_recorded_is_a_failed_attempt_not_a_silent_recreate() -> None:
    run = Run(spec_of(retry={"limit": 2, "delaysSeconds": [0]}))
    run.decide()
    uid = run.pods[POD1].uid
    run.vanish(POD1)
    decision = decide(run.job(), [], run.now, run.config, gone={POD1: uid})
    assert [t.type for t in decision.transitions][:2] == ["AttemptFailed", "RetryScheduled"]
    assert decision.transitions[0].reason == "PodDeleted"
    assert [c.name for c in decision.create] == [POD2]  # a new attempt, a new name


def test_a_pod_never_seen_and_not_known_gone_is_created_again_under_its_name() -> None:
    run = Run()
    run.decide()
    run.vanish(POD1)
    decision = run.decide()
    assert decision.transitions == ()
    assert [c.name for c in decision.create] == [POD1]


def test_a_new_attempt_waits_for_the_previous_pod_to_terminate_then_forces_a_stuck_one() -> None:
    run = Run(spec_of(retry={"limit": 2, "delaysSeconds": [1]}))
    run.decide()
    run.running()
    run.decide()
    run.failed()
    run.decide()  # attempt 1 failed; retry in 1 s
    ends = run.now + timedelta(seconds=30)
    run.pods[POD1] = dataclasses.replace(run.pods[POD1], phase="Running", deleting=True, deletion_time=ends)
    run.tick(5)
    decision = run.decide(apply=False)
    assert decision.create == ()
    assert decision.requeue_at == ends + TERMINATING_PATIENCE
    run.now = ends + TERMINATING_PATIENCE
    decision = run.decide(apply=False)
    assert decision.delete == (DeletePod(POD1, run.pods[POD1].uid, "stuck terminating", force=True),)
    assert decision.create == ()
    del run.pods[POD1]
    assert [c.name for c in run.decide().create] == [POD2]


def test_a_current_attempt_stuck_terminating_is_forced_out_and_then_recorded() -> None:
    run = Run()
    run.decide()
    run.running()
    run.decide()
    run.change(deleting=True, deletion_time=run.now)
    run.tick(TERMINATING_PATIENCE.total_seconds())
    decision = run.decide(apply=False)
    assert [d.force for d in decision.delete] == [True]


def test_a_retry_value_longer_than_the_status_field_is_ignored_once_and_the_status_still_fits() -> None:
    run = Run(spec_of(retry={"limit": 0}))
    run.decide()
    run.failed()
    run.decide()
    request = "x" * 300
    run.annotations = {"procjob.dev/retry": request}
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["RetryIgnored"]
    assert "300 characters" in decision.transitions[0].message
    assert run.parsed.last_retry_request == retry_ack(request)
    assert len(retry_ack(request)) <= MAX_RETRY_REQUEST
    assert not needs_admission(run.job())
    assert run.decide().transitions == ()


def test_a_retried_job_queues_like_a_new_one() -> None:
    run = Run(spec_of(retry={"limit": 0}))
    run.decide()
    run.failed()
    run.decide()
    run.annotations = {"procjob.dev/retry": "2026-01-01T00:00:00Z"}
    assert needs_admission(run.job())
    run.admitted = False
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobRetried", "JobQueued"]
    assert decision.create == ()
    assert run.parsed.start_time is None
    assert run.succeeded_condition == ("Unknown", "Queued")
    assert needs_admission(run.job())
    run.admitted = True
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobStarted", "AttemptStarted"]
    assert run.parsed.start_time == run.now


def test_suspending_a_started_job_gives_its_slot_back_and_resuming_queues_it() -> None:
    run = Run()
    run.decide()
    run.running()
    run.decide()
    assert not needs_admission(run.job())
    run.set_spec(suspend=True)
    run.decide()
    assert run.parsed.start_time is None
    run.set_spec(suspend=False)
    assert needs_admission(run.job())
    run.admitted = False
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobQueued"]
    assert decision.create == ()
    assert run.parsed.phase == "Queued"
    run.admitted = True
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["JobResumed", "AttemptStarted"]


def test_cancelled_and_deleted_jobs_never_ask_for_a_slot() -> None:
    run = Run(spec_of(cancel=True))
    assert not needs_admission(run.job())
    run = Run()
    run.deletion_time = NOW
    assert not needs_admission(run.job())


def test_a_full_outbox_defers_suspend_resume_and_retry_requests() -> None:
    run = Run(config=AUDITED)
    run.decide()
    run.running()
    run.decide()
    audit = dict(run.status["audit"])
    filler = audit["pending"][-1]
    last = audit["lastSeq"]
    audit["pending"] = [{**filler, "seq": last + i + 1} for i in range(AUDIT_BACKLOG_LIMIT)]
    audit["lastSeq"] = last + AUDIT_BACKLOG_LIMIT
    run.status = {**run.status, "audit": audit}
    run.set_spec(suspend=True)
    decision = run.decide()
    assert decision.transitions == ()
    assert decision.delete == ()  # the running attempt goes on; the suspension waits for the audit
    assert run.succeeded_condition == ("Unknown", "AuditBacklogFull")  # why the suspension waits
    run.trim_audit()
    assert [t.type for t in run.decide().transitions] == ["JobSuspended", "AttemptStopped"]


# ------------------------------------------------------------------------------------------------
# Properties


WORLD = st.sampled_from(["tick", "run", "succeed", "fail", "bad-outputs", "suspend", "resume", "retry", "vanish"])


@settings(max_examples=150, deadline=None)
@given(events=st.lists(WORLD, min_size=1, max_size=60), limit=st.integers(0, 3))
def test_with_postgresql_down_the_outbox_never_passes_its_hard_bound(events: list[str], limit: int) -> None:
    run = Run(spec_of(image_stage("a"), image_stage("b"), retry={"limit": limit, "delaysSeconds": [0]}), config=AUDITED)
    run.finalizers = ("procjob.dev/audit",)
    retries = 0
    for event in events:
        live = [p.name for p in run.pods.values() if p.live]
        if event == "tick":
            run.tick(7)
        elif event in ("run", "succeed", "fail", "bad-outputs", "vanish") and live:
            _world(run, event, live[0])
        elif event in ("suspend", "resume"):
            run.set_spec(suspend=event == "suspend")
        elif event == "retry":
            retries += 1
            run.annotations = {"procjob.dev/retry": f"r{retries}"}
        decision = run.decide()
        assert len(decision.status.audit.pending) <= AUDIT_OUTBOX_HARD_LIMIT
        json.dumps(decision.status.to_api())


def _world(run: Run, event: str, name: str) -> None:
    if event == "run":
        run.running(name)
    elif event == "succeed":
        run.succeeded(name, message='{"k": "v"}')
    elif event == "fail":
        run.failed(name)
    elif event == "bad-outputs":
        run.succeeded(name, message='{"k":"\\ud800"}')
    else:
        run.vanish(name)


HOSTILE_TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=64)
JSONISH: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE_TEXT, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(outputs=JSONISH, raw=HOSTILE_TEXT, exit_code=st.integers(0, 255))
def test_hostile_termination_messages_never_escape_decide(outputs: Any, raw: str, exit_code: int) -> None:
    for message in (json.dumps(outputs), raw, json.dumps({"k": outputs})):
        run = Run(spec_of(image_stage("a"), image_stage("b", args=["{{ stages.a.outputs.k }}"])))
        run.decide()
        if exit_code:
            run.failed(exit_code=exit_code, termination_message=message)
        else:
            run.succeeded(message=message)
        decision = run.decide()
        text = json.dumps(decision.status.to_api())
        assert len(text.encode("utf-8", "replace")) < 64 * 1024


def test_text_that_merely_starts_with_a_brace_is_a_message_not_outputs() -> None:
    run = Run()
    run.decide()
    run.succeeded(message="{not json: kept as text")
    run.decide()
    assert run.stage().state == "Succeeded"
    assert run.stage().outputs is None
    assert run.stage().attempts[-1].message == "{not json: kept as text"


def test_a_job_the_operator_cannot_process_ends_failed_with_the_cause_in_status_and_audit() -> None:
    run = Run(config=AUDITED)
    run.decide()
    run.succeeded(message='{"k": "v"}')
    run.decide()
    job = run.job()
    status = fail_unprocessable(job, "RecursionError: too deep", NOW, audit=True)
    succeeded = next(c for c in status.conditions if c.type == "Succeeded")
    assert (succeeded.status, succeeded.reason) == ("False", "ReconcileError")
    assert "RecursionError: too deep" in succeeded.message
    assert status.phase == "Failed"
    assert all(s.outputs is None for s in status.stages)
    entry = status.audit.pending[-1]
    assert (entry.seq, entry.type, entry.reason) == (job.status.audit.last_seq + 1, "JobFailed", "ReconcileError")
    quiet = fail_unprocessable(job, "x", NOW, audit=False)
    assert quiet.audit.pending == []
    assert quiet.audit.flushed_seq == quiet.audit.last_seq
    # the failed job is terminal: the next pass absorbs it
    run.status = ProcessingJobStatus.model_validate(status.to_api()).to_api()
    assert run.decide().transitions == ()


MAX_STATUS_BYTES = 1024 * 1024  # what the README promises for status (etcd's object limit is 1.5 MiB)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(HOSTILE_TEXT | st.text(min_size=60, max_size=400), min_size=1, max_size=6),
    suspend=st.booleans(),
    failed=st.booleans(),
)
def test_hostile_retry_annotations_never_escape_decide_and_the_status_stays_bounded(
    values: list[str], suspend: bool, failed: bool
) -> None:
    run = Run(spec_of(retry={"limit": 0}), config=AUDITED)
    run.decide()
    if failed:
        run.failed()
        run.decide()
    for value in values:
        run.annotations = {"procjob.dev/retry": value}
        run.set_spec(suspend=suspend)
        decision = run.decide()
        if value:  # every new value is acknowledged (an empty one is no request)
            assert run.parsed.last_retry_request == retry_ack(value)
        text = json.dumps(decision.status.to_api())
        assert len(text.encode("utf-8", "replace")) < MAX_STATUS_BYTES


@settings(max_examples=60, deadline=None)
@given(
    args=st.lists(st.sampled_from(["{{ stages.a.outputs.k }}", "{{ job.name }}", "x" * 500]), max_size=40),
    size=st.integers(0, 4000),
)
def test_templated_specs_never_escape_decide(args: list[str], size: int) -> None:
    refs = "".join(args)[:4096]
    run = Run(spec_of(image_stage("a"), image_stage("b", args=[refs] * 64, env=[{"name": "E", "value": refs}])))
    run.decide()
    run.succeeded(message=json.dumps({"k": "y" * size}))
    decision = run.decide()
    assert run.stage("a").state == "Succeeded"
    assert run.stage("b").state in ("Running", "Failed")
    assert len(json.dumps(decision.status.to_api())) < MAX_STATUS_BYTES


def test_pod_text_enters_the_core_as_valid_unicode() -> None:
    pod = PodObservation(name="p", uid="u", termination_message="a\ud800b\x00", waiting_message="ok")
    assert pod.termination_message == "a\ufffdb\ufffd"
    assert pod.waiting_message == "ok"
