"""A pod gone before a reconcile saw how it ended is judged by its last observation: evicted (a
DisruptionTarget condition) is a Disruption, retried without charge; succeeded is a success (with
its outputs); failed is that failure; only a pod that was still running is a charged PodDeleted.

Found by the chaos suite (quick profile): on the rig an evicted pod is gone the moment it is
evicted (seed 42: both evictions charged as PodDeleted), and a pod force-deleted 0.1 s after it
succeeded was charged as PodDeleted and run again (seed 20261202, disrupt-00021)."""

from __future__ import annotations

import dataclasses

from procjob.core.decide import decide
from procjob.core.naming import pod_name
from procjob.core.observe import PodObservation
from procjob.models.status import ProcessingJobStatus
from tests.unit.core.builders import JOB_NAME, JOB_UID, Run, image_stage, spec_of

POD1 = pod_name(JOB_NAME, JOB_UID, "work", 1)
RETRY = {"limit": 1, "delaysSeconds": [5]}


def gone(change: dict[str, object]) -> tuple[Run, PodObservation]:
    """A running attempt whose pod then changed as `change` says, and went before the next pass."""
    run = Run(spec_of(image_stage(retry=RETRY)))
    run.decide()
    run.running()
    run.decide()
    last = dataclasses.replace(run.pods[POD1], **change)  # type: ignore[arg-type]
    run.vanish()
    return run, last


def status_after(run: Run, last: PodObservation) -> ProcessingJobStatus:
    return decide(run.job(), [], run.now, run.config, gone={POD1: last.uid}, vanished={POD1: last}).status


def test_an_evicted_pod_gone_at_once_is_retried_without_charge() -> None:
    run, last = gone({"disruption": "EvictionByEvictionAPI", "deleting": True, "deletion_time": None})
    stage = status_after(run, last).stages[0]
    failed = stage.attempts[-1]
    assert (failed.state, failed.reason, failed.charged) == ("Failed", "Disruption", False)
    assert stage.charged_failures == 0
    assert stage.last_retry_decision is not None
    assert (stage.last_retry_decision.action, stage.last_retry_decision.delay_seconds) == ("Ignore", 5.0)


def test_a_pod_deleted_right_after_it_succeeded_counts_as_the_success_it_was() -> None:
    run, last = gone({"phase": "Succeeded", "exit_code": 0, "finished": None, "termination_message": '{"k": "v"}'})
    status = status_after(run, last)
    stage = status.stages[0]
    assert (stage.state, stage.attempts[-1].state, stage.attempts[-1].pod_uid) == ("Succeeded", "Succeeded", last.uid)
    assert stage.outputs == {"k": "v"}
    assert status.conditions[0].reason == "Succeeded"


def test_a_pod_deleted_right_after_it_failed_counts_as_that_failure() -> None:
    run, last = gone({"phase": "Failed", "exit_code": 2, "terminated_reason": "Error"})
    stage = status_after(run, last).stages[0]
    failed = stage.attempts[-1]
    assert (failed.state, failed.reason, failed.exit_code, failed.charged) == ("Failed", "Error", 2, False)
    assert stage.state == "Failed"  # exit 2: the default rule FailJob


def test_a_pod_that_was_running_when_deleted_is_still_a_charged_deletion() -> None:
    run = Run(spec_of(image_stage(retry=RETRY)))
    run.decide()
    run.running()
    run.decide()
    run.vanish()
    failed = (
        decide(run.job(), [], run.now, run.config, gone={POD1: "pod-uid-1"}, vanished={}).status.stages[0].attempts[-1]
    )
    assert (failed.state, failed.reason, failed.charged) == ("Failed", "PodDeleted", True)


def test_the_last_sight_of_another_pod_of_that_name_does_not_count() -> None:
    run, last = gone({"phase": "Succeeded", "exit_code": 0, "uid": "an-impostor"})
    failed = status_after(run, last).stages[0].attempts[-1]
    assert (failed.state, failed.reason) == ("Failed", "PodDeleted")
