"""`decide` with stages in a graph (dependsOn) and finally stages: whole scenarios, pass by pass.

Pods are named by stage and attempt (`p(stage, attempt)`); several may be live at once, one per stage.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from procjob.core.config import CoreConfig
from procjob.core.naming import pod_name
from tests.unit.core.builders import JOB_NAME, JOB_UID, NOW, Run, image_stage, make_pod, spec_of


def p(stage: str, attempt: int = 1) -> str:
    return pod_name(JOB_NAME, JOB_UID, stage, attempt)


def env_of(manifest: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in manifest["spec"]["containers"][0]["env"]}


def diamond(**spec: Any) -> dict[str, Any]:
    """a -> (b, c) -> d."""
    return spec_of(
        image_stage("a", dependsOn=[]),
        image_stage("b", dependsOn=["a"]),
        image_stage("c", dependsOn=["a"]),
        image_stage("d", dependsOn=["b", "c"], args=["{{ stages.b.outputs.k }}", "{{ stages.c.outputs.k }}"]),
        **spec,
    )


def states(run: Run) -> dict[str, str]:
    return {s.name: s.state.value for s in run.parsed.stages}


def created(run: Run) -> list[str]:
    return [c.name for c in run.decisions[-1].create]


def live(run: Run) -> set[str]:
    return {name for name, pod in run.pods.items() if pod.live}


# ------------------------------------------------------------------------------------------------
# The graph


def test_a_diamond_runs_b_and_c_together_and_d_after_both() -> None:
    run = Run(diamond())
    run.decide()
    assert created(run) == [p("a")]
    run.succeeded(p("a"))
    run.decide()
    assert created(run) == [p("b"), p("c")]  # both start in the pass that sees a succeed
    assert live(run) == {p("b"), p("c")}
    assert run.parsed.message == "stage b (2/4) attempt 1 pending (+1 more stage in progress)"
    run.running(p("b"))
    run.running(p("c"))
    run.decide()
    run.succeeded(p("b"), message='{"k": "from-b"}')
    run.decide()
    assert created(run) == []  # d waits for c
    assert states(run) == {"a": "Succeeded", "b": "Succeeded", "c": "Running", "d": "Pending"}
    assert run.parsed.current_stage == "c"
    run.succeeded(p("c"), message='{"k": "from-c"}')
    run.decide()
    (create,) = run.decisions[-1].create
    assert create.name == p("d")
    assert create.manifest["spec"]["containers"][0]["args"] == ["from-b", "from-c"]
    run.succeeded(p("d"))
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")
    assert run.parsed.message == "all 4 stages succeeded"
    assert run.parsed.progress == "4/4"


def test_independent_stages_start_together_and_the_job_waits_for_all() -> None:
    run = Run(spec_of(image_stage("x", dependsOn=[]), image_stage("y", dependsOn=[])))
    first = run.decide()
    assert created(run) == [p("x"), p("y")]
    types = [t.type for t in first.transitions]
    assert types == [
        "JobCreated",
        "JobStarted",
        "StageStarted",
        "AttemptStarted",
        "StageStarted",
        "AttemptStarted",
    ]
    run.succeeded(p("y"))
    run.decide()
    assert run.succeeded_condition == ("Unknown", "Running")
    run.succeeded(p("x"))
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")


def test_a_stage_listed_before_its_upstream_waits_for_it() -> None:
    run = Run(spec_of(image_stage("late", dependsOn=["early"]), image_stage("early", dependsOn=[])))
    run.decide()
    assert created(run) == [p("early")]
    run.succeeded(p("early"))
    run.decide()
    assert created(run) == [p("late")]


def test_a_failing_stage_stops_its_running_siblings_and_fails_the_job() -> None:
    run = Run(diamond(retry={"limit": 0}))
    run.decide()
    run.succeeded(p("a"))
    run.decide()
    run.running(p("b"))
    run.running(p("c"))
    run.decide()
    run.failed(p("b"))
    decision = run.decide()
    assert [t.type for t in decision.transitions] == [
        "AttemptFailed",
        "StageFailed",
        "AttemptStopped",
        "JobFailed",
    ]
    assert decision.transitions[2].message == "stage c attempt 1 stopped: StageFailed"
    assert [d.name for d in decision.delete] == [p("c")]
    assert states(run) == {"a": "Succeeded", "b": "Failed", "c": "Cancelled", "d": "Pending"}
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    assert run.stage("c").attempts[-1].charged is False


def test_a_sibling_waiting_for_its_retry_is_cancelled_when_another_fails() -> None:
    spec = spec_of(
        image_stage("x", dependsOn=[], retry={"limit": 2, "delaysSeconds": [30]}),
        image_stage("y", dependsOn=[], retry={"limit": 0}),
    )
    run = Run(spec)
    run.decide()
    run.failed(p("x"))
    run.decide()
    assert states(run)["x"] == "BackoffWaiting"
    run.failed(p("y"))
    run.decide()
    assert states(run) == {"x": "Cancelled", "y": "Failed"}
    assert run.stage("x").next_attempt_time is None


def test_a_stage_whose_template_fails_stops_the_stages_started_in_the_same_pass_without_their_pods() -> None:
    spec = spec_of(
        image_stage("a", dependsOn=[]),
        image_stage("b", dependsOn=["a"]),
        image_stage("c", dependsOn=["a"], args=["{{ stages.a.outputs.missing }}"]),
    )
    run = Run(spec)
    run.decide()
    run.succeeded(p("a"), message='{"k": 1}')
    decision = run.decide()
    types = [(t.type, t.stage) for t in decision.transitions]
    assert types == [
        ("AttemptRunning", "a"),
        ("AttemptSucceeded", "a"),
        ("StageSucceeded", "a"),
        ("StageStarted", "b"),
        ("AttemptStarted", "b"),
        ("StageFailed", "c"),
        ("AttemptStopped", "b"),
        ("JobFailed", None),
    ]
    assert decision.create == ()  # b's attempt was stopped before its pod was ever created
    assert run.succeeded_condition == ("False", "StageFailed")


def test_a_new_attempt_waits_only_for_a_terminating_pod_of_its_own_stage() -> None:
    spec = spec_of(
        image_stage("x", dependsOn=[], retry={"limit": 2, "delaysSeconds": [0]}),
        image_stage("y", dependsOn=[]),
    )
    run = Run(spec)
    run.decide()
    run.change(p("y"), deleting=True, phase="Running")  # y's pod is on its way out (someone deleted it)
    run.failed(p("x"))
    run.decide()
    assert created(run) == [p("x", 2)]  # x retries at once: y's leaving pod is not x's
    run.pods["x-leftover"] = make_pod("x-leftover", uid="u-x", stage="x", attempt=1, phase="Running", deleting=True)
    run.failed(p("x", 2))
    run.decide()
    assert created(run) == []  # a pod of x may still run: x's next attempt waits for it to go
    assert run.stage("x").state == "BackoffWaiting"
    del run.pods["x-leftover"]
    run.decide()
    assert created(run) == [p("x", 3)]


# ------------------------------------------------------------------------------------------------
# Finally


def with_finally(*main: dict[str, Any], **spec: Any) -> dict[str, Any]:
    cleanup = image_stage("cleanup", args=["{{ job.status }}", "{{ job.reason }}", "{{ job.name }}"])
    return spec_of(*(main or (image_stage("work"),)), **{"finally": [cleanup], **spec})


def test_finally_runs_after_the_stages_succeed_and_the_job_succeeds_after_it() -> None:
    run = Run(with_finally())
    run.decide()
    run.succeeded(p("work"))
    decision = run.decide()
    assert [t.type for t in decision.transitions] == [
        "AttemptRunning",
        "AttemptSucceeded",
        "StageSucceeded",
        "FinallyStarted",
        "StageStarted",
        "AttemptStarted",
    ]
    (create,) = decision.create
    assert create.manifest["spec"]["containers"][0]["args"] == ["Succeeded", "Succeeded", JOB_NAME]
    assert run.succeeded_condition == ("Unknown", "Finalizing")
    assert run.parsed.phase == "Running"
    assert run.parsed.message == "stages ended Succeeded (Succeeded); finally: stage cleanup (2/2) attempt 1 pending"
    assert run.parsed.finally_ is not None
    assert run.parsed.current_stage == "cleanup"
    run.succeeded(p("cleanup"))
    last = run.decide()
    assert [t.type for t in last.transitions][-1] == "JobSucceeded"
    assert run.succeeded_condition == ("True", "Succeeded")
    assert run.parsed.message == "the stage succeeded; the finally stages succeeded"


def test_finally_runs_after_a_failure_and_the_job_stays_failed_with_its_reason() -> None:
    run = Run(with_finally(image_stage("work", retry={"limit": 0})))
    run.decide()
    run.failed(p("work"))
    run.decide()
    assert run.succeeded_condition == ("Unknown", "Finalizing")
    assert run.decisions[-1].create[0].manifest["spec"]["containers"][0]["args"][:2] == [
        "Failed",
        "BackoffLimitExceeded",
    ]
    run.succeeded(p("cleanup"))
    run.decide()
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    assert run.parsed.message.endswith("; the finally stages succeeded")
    assert [t.type for t in run.decisions[-1].transitions][-1] == "JobFailed"


def test_a_failing_finally_stage_fails_a_succeeded_job_but_never_rescues_a_failed_one() -> None:
    run = Run(with_finally(retry={"limit": 0}))
    run.decide()
    run.succeeded(p("work"))
    run.decide()
    run.failed(p("cleanup"))
    run.decide()
    assert run.succeeded_condition == ("False", "FinallyFailed")
    assert run.parsed.message == "the stage succeeded; finally stage cleanup did not succeed"

    failed = Run(with_finally(retry={"limit": 0}))
    failed.decide()
    failed.failed(p("work"), exit_code=2)
    failed.decide()
    failed.failed(p("cleanup"))
    failed.decide()
    assert failed.succeeded_condition == ("False", "StageFailed")


def test_finally_runs_after_cancel_and_the_job_ends_cancelled() -> None:
    run = Run(with_finally())
    run.decide()
    run.running(p("work"))
    run.decide()
    run.set_spec(cancel=True)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == [
        "AttemptStopped",
        "FinallyStarted",
        "StageStarted",
        "AttemptStarted",
    ]
    assert [d.name for d in decision.delete] == [p("work")]
    assert decision.create[0].manifest["spec"]["containers"][0]["args"][:2] == ["Cancelled", "Cancelled"]
    run.decide()  # cancel stays set: the finally stage is not cancelled
    assert live(run) == {p("cleanup")}
    run.succeeded(p("cleanup"))
    run.decide()
    assert run.succeeded_condition == ("False", "Cancelled")
    assert [t.type for t in run.decisions[-1].transitions][-1] == "JobCancelled"


def test_a_job_cancelled_while_queued_ends_without_its_finally_stages() -> None:
    run = Run(with_finally(), admitted=False)
    run.decide()
    run.set_spec(cancel=True)
    decision = run.decide()
    assert decision.create == ()
    assert run.succeeded_condition == ("False", "Cancelled")
    assert run.parsed.finally_ is None


def test_finally_runs_after_the_job_deadline_with_its_own_deadline() -> None:
    run = Run(with_finally(activeDeadlineSeconds=100, finallyDeadlineSeconds=50))
    run.decide()
    run.running(p("work"))
    run.decide()
    run.tick(100)
    decision = run.decide()
    assert [t.type for t in decision.transitions][:2] == ["AttemptFailed", "FinallyStarted"]
    assert decision.requeue_at == run.now + timedelta(seconds=50)  # the finally deadline (startup is 300 s)
    assert run.succeeded_condition == ("Unknown", "Finalizing")
    run.running(p("cleanup"))
    run.decide()
    run.tick(49)
    run.decide()
    assert run.succeeded_condition == ("Unknown", "Finalizing")  # the job's deadline no longer applies
    run.tick(1)
    last = run.decide()
    assert [t.type for t in last.transitions] == ["AttemptFailed", "JobFailed"]
    assert run.succeeded_condition == ("False", "DeadlineExceeded")
    assert run.parsed.message == (
        "job ran past activeDeadlineSeconds (100s); the finally stages ran past finallyDeadlineSeconds (50s)"
    )
    assert live(run) == set()


def test_finally_past_its_deadline_after_a_success_fails_the_job() -> None:
    run = Run(with_finally())
    run.decide()
    run.succeeded(p("work"))
    run.decide()
    run.tick(600)  # the default finallyDeadlineSeconds
    run.decide()
    assert run.succeeded_condition == ("False", "FinallyFailed")


def test_finally_stages_form_their_own_graph_and_one_failing_does_not_stop_the_others() -> None:
    spec = spec_of(
        image_stage("work"),
        **{
            "finally": [
                image_stage("notify", dependsOn=[], retry={"limit": 0}),
                image_stage("archive", dependsOn=[]),
                image_stage("report", dependsOn=["notify"]),
            ]
        },
    )
    run = Run(spec)
    run.decide()
    run.succeeded(p("work"))
    run.decide()
    assert created(run) == [p("notify"), p("archive")]
    run.failed(p("notify"))
    run.decide()
    assert live(run) == {p("archive")}  # not stopped
    assert run.succeeded_condition == ("Unknown", "Finalizing")
    run.succeeded(p("archive"))
    run.decide()
    assert run.succeeded_condition == ("False", "FinallyFailed")  # report never ran: it waits for notify
    assert states(run)["report"] == "Pending"
    assert run.parsed.message == "the stage succeeded; finally stages notify, report did not succeed"


def test_finally_stages_may_use_the_outputs_of_any_stage() -> None:
    spec = spec_of(
        image_stage("work"),
        **{"finally": [image_stage("cleanup", env=[{"name": "K", "value": "{{ stages.work.outputs.k }}"}])]},
    )
    run = Run(spec)
    run.decide()
    run.succeeded(p("work"), message='{"k": "v"}')
    run.decide()
    assert env_of(run.decisions[-1].create[0].manifest)["K"] == "v"


def test_suspend_while_finalizing_stops_the_finally_attempt_and_resume_runs_it_again() -> None:
    run = Run(with_finally())
    run.decide()
    run.succeeded(p("work"))
    run.decide()
    run.running(p("cleanup"))
    run.decide()
    run.set_spec(suspend=True)
    run.decide()
    assert run.succeeded_condition == ("Unknown", "Suspended")
    assert live(run) == set()
    run.set_spec(suspend=False)
    run.decide()
    assert created(run) == [p("cleanup", 2)]
    assert run.succeeded_condition == ("Unknown", "Finalizing")
    run.succeeded(p("cleanup", 2))
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")


def test_a_retried_job_runs_its_failed_stage_its_stopped_siblings_and_its_finally_stages_again() -> None:
    spec = spec_of(
        image_stage("x", dependsOn=[], retry={"limit": 0}),
        image_stage("y", dependsOn=[]),
        **{"finally": [image_stage("cleanup")]},
    )
    run = Run(spec, config=CoreConfig())
    run.decide()
    run.failed(p("x"))
    run.decide()
    run.succeeded(p("cleanup"))
    run.decide()
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    assert states(run) == {"x": "Failed", "y": "Cancelled", "cleanup": "Succeeded"}
    run.annotations["procjob.dev/retry"] = "2025-03-14T10:00:00Z"
    decision = run.decide()
    assert next(t.type for t in decision.transitions) == "JobRetried"
    assert run.parsed.finally_ is None
    assert states(run) == {"x": "Running", "y": "Running", "cleanup": "Pending"}
    assert created(run) == [p("x", 2), p("y", 2)]  # numbering goes on: no pod name is reused
    assert run.stage("cleanup").attempt_count == 1
    run.succeeded(p("x", 2))
    run.succeeded(p("y", 2))
    run.decide()
    assert created(run) == [p("cleanup", 2)]
    run.succeeded(p("cleanup", 2))
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")


def test_the_finally_deadline_also_bounds_a_finally_retry() -> None:
    spec = with_finally(finallyDeadlineSeconds=10, retry={"limit": 3, "delaysSeconds": [30]})
    run = Run(spec)
    run.decide()
    run.succeeded(p("work"))
    run.decide()
    run.failed(p("cleanup"))
    run.decide()
    assert run.succeeded_condition == ("False", "FinallyFailed")
    assert "would start after the job's deadline" in run.stage("cleanup").message


def test_a_pod_of_a_finally_stage_is_labelled_with_its_stage() -> None:
    run = Run(with_finally())
    run.decide()
    run.succeeded(p("work"))
    run.decide()
    labels = run.decisions[-1].create[0].manifest["metadata"]["labels"]
    assert labels["procjob.dev/stage"] == "cleanup"
    assert dataclasses.asdict(run.pods[p("cleanup")])["stage"] == "cleanup"


def test_an_invalid_graph_fails_the_job_before_any_pod_naming_the_stages() -> None:
    run = Run(spec_of(image_stage("a", dependsOn=["b"]), image_stage("b", dependsOn=["a"])))
    decision = run.decide()
    assert decision.create == ()
    assert run.succeeded_condition == ("False", "InvalidSpec")
    assert "spec.stages[0].dependsOn: stage 'a' is on a dependency cycle" in run.parsed.message


def test_the_first_pass_of_a_job_with_finally_shows_the_finally_stage_pending() -> None:
    run = Run(with_finally())
    run.decide()
    assert [s.name for s in run.parsed.stages] == ["work", "cleanup"]
    assert run.parsed.progress == "1/2"
    assert run.parsed.stages[1].state == "Pending"
    assert run.now == NOW
