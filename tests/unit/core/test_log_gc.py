"""podGC waits for the log archive: a finished pod is deleted once its attempt's log is archived,
or once `log_archive_wait_seconds` have passed since the attempt ended, never later; without an
archive (no database) nothing waits. A finished job's ended pods go together, in one request
(Decision.collect), once the last may go. ttlSecondsAfterFinished waits the same way, since deleting
the job deletes its pods."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from procjob.core.config import CoreConfig
from procjob.core.naming import pod_name
from tests.unit.core.builders import JOB_NAME, JOB_UID, NOW, Run, image_stage, make_pod, spec_of

WAIT = 300
ARCHIVING = CoreConfig(audit_enabled=True, log_archive_wait_seconds=WAIT)
A1 = pod_name(JOB_NAME, JOB_UID, "a", 1)
B1 = pod_name(JOB_NAME, JOB_UID, "b", 1)
B2 = pod_name(JOB_NAME, JOB_UID, "b", 2)


def two_stages(config: CoreConfig = ARCHIVING, **spec: object) -> Run:
    """Stage a succeeds at NOW, b fails once at NOW+10s and succeeds at NOW+20s: the job succeeds."""
    run = Run(
        spec_of(image_stage("a"), image_stage("b"), retry={"limit": 1, "delaysSeconds": [0]}, **spec),
        config=config,
    )
    run.decide()
    run.succeeded()
    run.decide()
    run.tick(10)
    run.failed()
    run.decide()
    run.decide()
    run.tick(10)
    run.succeeded()
    return run


def archived(run: Run, *names: str) -> None:
    for name in names:
        run.pods[name] = dataclasses.replace(run.pods[name], log_archived=True)


def test_without_an_archive_podgc_deletes_at_once() -> None:
    run = two_stages(CoreConfig(audit_enabled=True))
    decision = run.decide(apply=False)
    assert run.succeeded_condition == ("True", "Succeeded")
    assert {d.name for d in decision.collect} == {A1, B1, B2}  # all of them: one request
    assert decision.delete == ()
    assert decision.requeue_at is None


def test_archived_pods_wait_for_the_others_and_all_go_together() -> None:
    run = two_stages()
    archived(run, A1)
    decision = run.decide(apply=False)
    assert run.succeeded_condition == ("True", "Succeeded")
    assert (decision.delete, decision.collect) == ((), ())
    # The earliest bound of the pods still waiting: b's first attempt ended at NOW+10s.
    assert decision.requeue_at == NOW + timedelta(seconds=10 + WAIT)
    archived(run, B1, B2)
    decision = run.decide(apply=False)
    assert [(d.name, d.why) for d in decision.collect] == [(A1, "podGC"), (B1, "podGC"), (B2, "podGC")]
    assert decision.delete == ()


def test_beside_a_pod_still_stopping_the_others_go_one_by_one() -> None:
    run = two_stages()
    run.decide()  # the job has succeeded
    archived(run, A1, B1, B2)
    run.pods["late"] = make_pod("late", uid="l1", phase="Running")
    decision = run.decide(apply=False)
    assert {(d.name, d.why) for d in decision.delete} == {
        (A1, "podGC"),
        (B1, "podGC"),
        (B2, "podGC"),
        ("late", "job finished"),
    }
    assert decision.collect == ()


def test_a_single_pod_goes_by_its_own_delete() -> None:
    run = two_stages()
    for name in (A1, B1):
        del run.pods[name]
    archived(run, B2)
    decision = run.decide(apply=False)
    assert [(d.name, d.why) for d in decision.delete] == [(B2, "podGC")]
    assert decision.collect == ()


def test_a_pod_whose_log_is_never_archived_goes_once_the_bound_has_passed() -> None:
    run = two_stages()
    run.decide(apply=False)
    run.tick(WAIT - 10)  # NOW + WAIT + 10: a (ended at NOW) and b1 (NOW+10s) are past the bound
    decision = run.decide(apply=False)
    assert (decision.delete, decision.collect) == ((), ())  # a and b1 may go; they wait for b2
    assert decision.requeue_at == NOW + timedelta(seconds=20 + WAIT)
    run.tick(10)
    assert {d.name for d in run.decide(apply=False).collect} == {A1, B1, B2}


def test_without_a_finish_time_the_bound_counts_from_the_jobs_end() -> None:
    run = two_stages()
    run.decide(apply=False)
    run.pods[B2] = dataclasses.replace(run.pods[B2], finished=None)
    ended = run.parsed.completion_time
    assert ended is not None
    archived(run, A1, B1)
    assert run.decide(apply=False).requeue_at == ended + timedelta(seconds=WAIT)


def test_a_finished_pod_without_any_end_time_is_not_kept() -> None:
    run = two_stages()
    run.decide(apply=False)
    run.status = {**run.status, "completionTime": None}
    for name in (A1, B1, B2):
        run.pods[name] = dataclasses.replace(run.pods[name], finished=None)
    assert {d.name for d in run.decide(apply=False).collect} == {A1, B1, B2}


@pytest.mark.parametrize("gc", ["Never", "OnSuccess"])
def test_pods_podgc_keeps_anyway_set_no_timer(gc: str) -> None:
    run = Run(spec_of(podGC=gc, retry={"limit": 0}), config=ARCHIVING)
    run.decide()
    run.failed()
    decision = run.decide()
    assert run.succeeded_condition[0] == "False"
    assert decision.delete == ()
    assert decision.requeue_at is None


def test_the_ttl_waits_for_the_archive_of_the_jobs_pods() -> None:
    run = two_stages(ttlSecondsAfterFinished=0, podGC="Never")
    run.decide()  # the pass that ends the job; the next one looks at the TTL
    decision = run.decide()
    assert not decision.delete_job
    assert decision.requeue_at == NOW + timedelta(seconds=WAIT)  # a ended first
    archived(run, A1, B1, B2)
    assert run.decide().delete_job


def test_the_ttl_waits_no_longer_than_the_bound() -> None:
    run = two_stages(ttlSecondsAfterFinished=0, podGC="Never")
    run.decide()
    assert not run.decide().delete_job
    run.tick(WAIT)
    assert run.decide().delete_job


def test_a_pod_on_its_way_out_does_not_hold_the_ttl() -> None:
    run = two_stages(ttlSecondsAfterFinished=0, podGC="Never")
    run.decide()
    archived(run, A1, B1, B2)
    run.pods["late"] = dataclasses.replace(run.pods[A1], name="late", uid="late", phase="Running", deleting=True)
    assert run.decide().delete_job
