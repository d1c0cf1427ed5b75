"""A pod that vanished with a DisruptionTarget condition (evicted, or removed with its node) ends
its attempt as a Disruption, retried without charge, like one seen failed with that condition.

Found by the chaos suite (seed 42, quick profile): on the rig an evicted pod is gone the moment
it is evicted, so the reconcile never saw it failed and charged the eviction as PodDeleted."""

from __future__ import annotations

from procjob.core.decide import decide
from procjob.core.naming import pod_name
from tests.unit.core.builders import JOB_NAME, JOB_UID, Run, image_stage, spec_of

POD1 = pod_name(JOB_NAME, JOB_UID, "work", 1)
RETRY = {"limit": 1, "delaysSeconds": [5]}


def running() -> Run:
    run = Run(spec_of(image_stage(retry=RETRY)))
    run.decide()
    run.running()
    run.decide()
    run.vanish()
    return run


def test_a_vanished_pod_that_was_disrupted_is_retried_without_charge() -> None:
    run = running()
    decision = decide(
        run.job(), [], run.now, run.config, gone={POD1: "pod-uid-1"}, disrupted={POD1: "EvictionByEvictionAPI"}
    )
    stage = decision.status.stages[0]
    failed = stage.attempts[-1]
    assert (failed.state, failed.reason, failed.charged) == ("Failed", "Disruption", False)
    assert failed.message == "the pod was deleted: EvictionByEvictionAPI"
    assert stage.charged_failures == 0
    assert stage.last_retry_decision is not None
    assert (stage.last_retry_decision.action, stage.last_retry_decision.delay_seconds) == ("Ignore", 5.0)


def test_a_vanished_pod_without_a_disruption_is_still_a_charged_deletion() -> None:
    run = running()
    decision = decide(run.job(), [], run.now, run.config, gone={POD1: "pod-uid-1"}, disrupted={})
    failed = decision.status.stages[0].attempts[-1]
    assert (failed.state, failed.reason, failed.charged) == ("Failed", "PodDeleted", True)
