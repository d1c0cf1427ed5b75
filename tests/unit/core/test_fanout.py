"""`decide` with fanned-out stages (forEach): items, parallelism, failure policies, outputs, pod caps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from procjob.core.naming import pod_name
from procjob.core.observe import PodObservation
from procjob.models.fanout import MAX_FANOUT_OUTPUT_BYTES, MAX_IN_FLIGHT
from tests.unit.core.builders import JOB_NAME, JOB_UID, Run, image_stage, spec_of


def p(stage: str, item: int | None, attempt: int = 1) -> str:
    return pod_name(JOB_NAME, JOB_UID, stage, attempt, item)


def live(run: Run) -> list[str]:
    return sorted(name for name, pod in run.pods.items() if pod.live)


def created(run: Run) -> list[str]:
    return [c.name for c in run.decisions[-1].create]


def args_of(run: Run) -> dict[str, list[str]]:
    return {c.name: c.manifest["spec"]["containers"][0].get("args") for c in run.decisions[-1].create}


def fan(**stage: Any) -> dict[str, Any]:
    return image_stage("fan", **{"forEach": ["a", "b", "c", "d", "e"], "args": ["{{ item }}"], **stage})


def items(run: Run, name: str = "fan") -> Any:
    return run.stage(name).items


def test_each_item_runs_as_its_own_pod_with_its_value_at_most_parallelism_at_once() -> None:
    run = Run(spec_of(fan(parallelism=2)))
    first = run.decide()
    assert created(run) == [p("fan", 0), p("fan", 1)]
    assert args_of(run) == {p("fan", 0): ["a"], p("fan", 1): ["b"]}
    labels = first.create[0].manifest["metadata"]["labels"]
    assert (labels["procjob.dev/stage"], labels["procjob.dev/item"], labels["procjob.dev/attempt"]) == ("fan", "0", "1")
    assert [t.type for t in first.transitions][:4] == ["JobCreated", "JobStarted", "StageStarted", "AttemptStarted"]
    assert first.transitions[3].detail == {"item": 0}
    assert run.parsed.progress == "1/1 0/5"
    assert run.parsed.message == "stage fan (1/1) items 0/5 done: 2 running, 0 waiting to retry"
    run.succeeded(p("fan", 0))
    run.decide()
    assert created(run) == [p("fan", 2)]  # a place is free: the next item in order
    assert live(run) == [p("fan", 1), p("fan", 2)]


def test_outputs_come_back_as_lists_in_item_order_with_nulls_for_items_that_wrote_none() -> None:
    spec = spec_of(fan(parallelism=5), image_stage("after", args=["{{ stages.fan.outputs.n }}"]))
    run = Run(spec)
    run.decide()
    for index in (4, 2, 0, 3):  # in any order
        run.succeeded(p("fan", index), message=f'{{"n": {index}, "tag": "t{index}"}}' if index != 3 else "no json")
        run.decide()
    run.succeeded(p("fan", 1), message='{"n": 1}')
    run.decide()
    done = run.stage("fan")
    assert done.state == "Succeeded"
    assert done.outputs == {"n": [0, 1, 2, None, 4], "tag": ["t0", None, "t2", None, "t4"]}
    assert done.message == "5 of 5 items succeeded"
    assert items(run).outputs is None  # moved to the stage's outputs
    assert args_of(run) == {p("after", None): ["[0,1,2,null,4]"]}


def test_items_may_come_from_an_upstream_list_output_and_be_objects() -> None:
    spec = spec_of(
        image_stage("list"),
        image_stage(
            "fan", forEach="{{ stages.list.outputs.files }}", parallelism=3, args=["{{ item.key }}", "{{ item }}"]
        ),
    )
    run = Run(spec)
    run.decide()
    run.succeeded(p("list", None), message='{"files": [{"key": "a.jpg", "n": 1}, {"key": "b.jpg", "n": 2}]}')
    run.decide()
    assert args_of(run) == {
        p("fan", 0): ["a.jpg", '{"key":"a.jpg","n":1}'],
        p("fan", 1): ["b.jpg", '{"key":"b.jpg","n":2}'],
    }
    assert items(run).total == 2


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        pytest.param('{"other": 1}', "forEach: stage 'list' has no output 'files'", id="a missing output"),
        pytest.param("plain", "forEach: stage 'list' has no output 'files'", id="no outputs at all"),
        pytest.param('{"files": "a,b"}', "forEach: output 'files' of stage 'list' is not a list", id="not a list"),
        pytest.param(
            '{"files": [[1]]}',
            "forEach: output 'files' of stage 'list': item 0: an item is a string, number, boolean, null, or an "
            "object of at most 16 such values",
            id="an item of the wrong shape",
        ),
    ],
)
def test_items_that_cannot_be_read_fail_the_stage_naming_why(message: str, problem: str) -> None:
    spec = spec_of(image_stage("list"), image_stage("fan", forEach="{{ stages.list.outputs.files }}"))
    run = Run(spec)
    run.decide()
    run.succeeded(p("list", None), message=message)
    decision = run.decide()
    assert run.succeeded_condition == ("False", "StageFailed")
    assert run.stage("fan").message == problem
    assert [t.reason for t in decision.transitions if t.type == "StageFailed"] == ["InvalidItems"]
    assert decision.create == ()


def test_an_empty_list_succeeds_at_once() -> None:
    run = Run(spec_of(fan(forEach=[]), image_stage("after")))
    run.decide()
    assert run.stage("fan").state == "Succeeded"
    assert run.stage("fan").outputs is None
    assert created(run) == [p("after", None)]


def test_a_failing_item_is_retried_with_backoff_while_its_siblings_go_on_and_keeps_its_place() -> None:
    run = Run(spec_of(fan(parallelism=2, retry={"limit": 2, "delaysSeconds": [10]})))
    run.decide()
    run.failed(p("fan", 0))
    run.decide()
    assert created(run) == []  # item 0 waits for its retry in its place: still 2 in flight
    assert [i.state for i in items(run).in_flight] == ["BackoffWaiting", "Running"]
    assert run.parsed.message == "stage fan (1/1) items 0/5 done: 1 running, 1 waiting to retry"
    run.succeeded(p("fan", 1))
    run.decide()
    assert created(run) == [p("fan", 2)]
    run.tick(9)
    run.decide()
    assert created(run) == []
    run.tick(1)
    run.decide()
    assert created(run) == [p("fan", 0, 2)]
    retry = [t for d in run.decisions for t in d.transitions if t.type == "RetryScheduled"]
    assert retry[0].message == "stage fan item 0 attempt 2 in 10s (default: Retry, 1 retry left)"
    assert retry[0].detail["item"] == 0


def finish(run: Run, fail: set[int] = frozenset(), passes: int = 20) -> None:  # type: ignore[assignment]
    for _ in range(passes):
        for name in live(run):
            pod = run.pods[name]
            if pod.item in fail:
                run.failed(name)
            else:
                run.succeeded(name)
        run.decide()
        run.tick(30)


def test_fail_fast_fails_the_stage_at_the_first_item_past_the_tolerance_and_stops_the_others() -> None:
    run = Run(spec_of(fan(parallelism=3, retry={"limit": 0}, failurePolicy={"toleratedFailures": 1})))
    run.decide()
    run.failed(p("fan", 0))
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptRunning", "AttemptFailed", "ItemFailed", "AttemptStarted"]
    assert decision.transitions[2].detail["item"] == 0
    assert run.succeeded_condition == ("Unknown", "Running")  # one failure is tolerated
    run.failed(p("fan", 1))
    decision = run.decide()
    types = [t.type for t in decision.transitions]
    assert types == [
        "AttemptRunning",
        "AttemptFailed",
        "ItemFailed",
        "AttemptStopped",
        "AttemptStopped",
        "StageFailed",
        "JobFailed",
    ]
    assert run.succeeded_condition == ("False", "StageFailed")
    assert run.parsed.message == "stage fan: 2 of 5 items failed (1 tolerated)"
    assert items(run).failed_indexes == "0-1"
    assert live(run) == []


def test_all_items_runs_every_item_and_fails_at_the_end_past_the_tolerance() -> None:
    run = Run(
        spec_of(fan(parallelism=2, retry={"limit": 0}, failurePolicy={"mode": "AllItems", "toleratedFailures": 1}))
    )
    run.decide()
    finish(run, fail={1, 3})
    assert items(run).succeeded == 3
    assert items(run).failed_indexes == "1,3"
    assert run.succeeded_condition == ("False", "StageFailed")
    assert run.parsed.message == "stage fan: 2 of 5 items failed (1 tolerated)"


def test_tolerated_failures_let_the_stage_succeed_with_null_outputs_for_them() -> None:
    policy = {"mode": "AllItems", "toleratedFailures": 2}
    run = Run(spec_of(fan(parallelism=5, retry={"limit": 0}, failurePolicy=policy)))
    run.decide()
    run.failed(p("fan", 2))
    for index in (0, 1, 3, 4):
        run.succeeded(p("fan", index), message=f'{{"n": {index}}}')
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")
    assert run.stage("fan").outputs == {"n": [0, 1, None, 3, 4]}
    assert run.stage("fan").message == "4 of 5 items succeeded, 1 failed (2 tolerated)"


def test_an_item_whose_template_cannot_render_fails_for_good() -> None:
    items_ = [{"k": 1}, {"x": 2}]
    run = Run(
        spec_of(fan(forEach=items_, parallelism=2, args=["{{ item.k }}"], failurePolicy={"toleratedFailures": 1}))
    )
    decision = run.decide()
    assert created(run) == [p("fan", 0)]
    failed = [t for t in decision.transitions if t.type == "ItemFailed"]
    assert [(t.reason, t.message) for t in failed] == [
        ("TemplateError", "stage fan item 1: {{ item.k }}: the item has no field 'k'")
    ]
    run.succeeded(p("fan", 0))
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")


def test_a_scalar_item_has_no_fields() -> None:
    run = Run(spec_of(fan(forEach=[1], args=["{{ item.k }}"])))
    run.decide()
    assert run.stage("fan").message == "stage fan: 1 of 1 items failed (0 tolerated)"
    failed = [t.message for d in run.decisions for t in d.transitions if t.type == "ItemFailed"]
    assert failed == ["stage fan item 0: {{ item.k }}: the item is not an object"]


def test_no_pod_left_means_no_new_item_and_a_starved_decision() -> None:
    run = Run(spec_of(fan(parallelism=5)))
    run.pods_left = 2
    decision = run.decide()
    assert created(run) == [p("fan", 0), p("fan", 1)]
    assert decision.starved
    assert len(items(run).in_flight) == 2  # no place is taken without a pod
    run.pods_left = 0
    assert run.decide().starved
    run.pods_left = None
    run.decide()
    assert created(run) == [p("fan", 2), p("fan", 3), p("fan", 4)]
    assert not run.decisions[-1].starved


def test_a_due_retry_without_a_pod_left_waits_starved() -> None:
    run = Run(spec_of(fan(forEach=["a"], retry={"limit": 1, "delaysSeconds": [0]})))
    run.decide()
    run.failed(p("fan", 0))
    run.pods_left = 0
    decision = run.decide()
    assert decision.create == ()
    assert decision.starved
    run.pods_left = 1
    run.decide()
    assert created(run) == [p("fan", 0, 2)]


def test_a_plain_stage_waits_for_a_pod_too() -> None:
    run = Run(spec_of(image_stage("work")))
    run.pods_left = 0
    decision = run.decide()
    assert decision.create == ()
    assert decision.starved
    assert run.stage("work").state == "Pending"


def test_suspend_stops_the_items_in_flight_and_resume_runs_them_again() -> None:
    run = Run(spec_of(fan(parallelism=2, retry={"limit": 2, "delaysSeconds": [100]})))
    run.decide()
    run.failed(p("fan", 1))
    run.decide()
    run.set_spec(suspend=True)
    run.decide()
    assert run.stage("fan").state == "Suspended"
    assert [i.state for i in items(run).in_flight] == ["Suspended", "BackoffWaiting"]
    assert live(run) == []
    run.set_spec(suspend=False)
    run.decide()
    assert created(run) == [p("fan", 0, 2)]  # item 1 still waits for its retry
    assert run.stage("fan").state == "Running"


def test_cancel_stops_the_items_and_the_job_ends_cancelled() -> None:
    run = Run(spec_of(fan(parallelism=3)))
    run.decide()
    run.set_spec(cancel=True)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptStopped"] * 3 + ["JobCancelled"]
    assert run.stage("fan").state == "Cancelled"
    assert live(run) == []


def test_a_retried_job_runs_the_failed_and_stopped_items_again_numbering_on() -> None:
    run = Run(spec_of(fan(parallelism=2, retry={"limit": 0})))
    run.decide()
    run.succeeded(p("fan", 0))
    run.decide()
    run.failed(p("fan", 1))
    run.decide()  # item 1 fails: the stage fails, item 2 is stopped
    assert items(run).failed_indexes == "1"
    run.annotations["procjob.dev/retry"] = "2025-03-14T10:00:00Z"
    run.decide()
    assert created(run) == [p("fan", 1, 2), p("fan", 2, 2)]  # no pod name is used twice
    assert items(run).rerun == ""
    assert items(run).next == 3
    finish(run)
    assert run.succeeded_condition == ("True", "Succeeded")
    assert created(run) == []
    assert items(run).succeeded == 5
    names = {c.name for d in run.decisions for c in d.create}
    assert p("fan", 3, 2) in names  # items started after a retry number on from its base too


def test_outputs_over_the_bound_are_not_kept_and_the_stage_says_so() -> None:
    big = "x" * 3000
    run = Run(spec_of(fan(forEach=list(range(12)), parallelism=12)))
    run.decide()
    for index in range(12):
        run.succeeded(p("fan", index), message=f'{{"v": "{big}"}}')
    run.decide()
    assert MAX_FANOUT_OUTPUT_BYTES < 12 * 3000
    assert run.stage("fan").outputs is None
    assert run.stage("fan").message == "12 of 12 items succeeded; outputs not kept: over 32 KiB"


def test_outputs_whose_lists_would_be_too_large_are_not_kept() -> None:
    run = Run(spec_of(fan(forEach=list(range(10000)), parallelism=1)))
    run.decide()
    run.succeeded(p("fan", 0), message='{"a": 1, "b": 2}')
    run.decide()
    fan_status = items(run)
    run.status["stages"][0]["items"] = {**fan_status.to_api(), "next": 10000, "succeeded": 10000, "inFlight": []}
    run.pods.clear()
    run.decide()
    assert run.stage("fan").outputs is None
    assert run.stage("fan").message == "10000 of 10000 items succeeded; outputs not kept: over 64 KiB as lists"


def test_a_job_has_at_most_max_in_flight_items_whatever_the_parallelism() -> None:
    spec = spec_of(
        image_stage("x", dependsOn=[], forEach=list(range(400)), parallelism=400),
        image_stage("y", dependsOn=[], forEach=list(range(400)), parallelism=400),
    )
    run = Run(spec)
    run.decide()
    assert len(run.decisions[-1].create) == MAX_IN_FLIGHT
    assert len(items(run, "x").in_flight) + len(items(run, "y").in_flight) == MAX_IN_FLIGHT


def test_a_lost_item_pod_is_created_again_under_the_same_name() -> None:
    run = Run(spec_of(fan(parallelism=2)))
    run.decide()
    del run.pods[p("fan", 1)]  # the create never reached the API server (a crash after the status write)
    run.decide()
    assert created(run) == [p("fan", 1)]
    assert run.decisions[-1].transitions == ()


def test_a_leftover_pod_of_an_item_on_its_way_out_delays_only_that_item() -> None:
    run = Run(spec_of(fan(forEach=["a", "b"], parallelism=2)))
    run.pods["old"] = PodObservation(
        "old",
        "u-old",
        job_uid=JOB_UID,
        owner_uid=JOB_UID,
        stage="fan",
        item=1,
        attempt=1,
        phase="Running",
        deleting=True,
    )
    run.decide()
    assert created(run) == [p("fan", 0)]
    assert [i.index for i in items(run).in_flight] == [0, 1]  # item 1 holds its place, waiting for the old pod
    del run.pods["old"]
    run.decide()
    assert created(run) == [p("fan", 1)]


def test_a_fanned_out_finally_stage_runs_again_on_retry_numbering_on() -> None:
    spec = spec_of(
        image_stage("work", retry={"limit": 0}),
        **{"finally": [image_stage("notify", forEach=["x", "y"], parallelism=2)]},
    )
    run = Run(spec)
    run.decide()
    run.failed(p("work", None))
    run.decide()
    assert created(run) == [p("notify", 0), p("notify", 1)]
    finish(run, passes=2)
    assert run.succeeded_condition == ("False", "BackoffLimitExceeded")
    run.annotations["procjob.dev/retry"] = "2025-03-14T10:00:00Z"
    run.decide()
    run.succeeded(p("work", None, 2))
    run.decide()
    assert created(run) == [p("notify", 0, 2), p("notify", 1, 2)]


def test_an_item_past_its_attempts_bound_or_stopped_by_the_deadline_is_recorded() -> None:
    run = Run(spec_of(fan(forEach=["a"], timeoutSeconds=5), activeDeadlineSeconds=20))
    run.decide()
    run.running(p("fan", 0))
    run.decide()
    run.tick(20)
    decision = run.decide()
    assert [t.type for t in decision.transitions] == ["AttemptFailed", "JobFailed"]
    assert run.succeeded_condition == ("False", "DeadlineExceeded")
    assert decision.transitions[0].detail == {"item": 0}
    assert run.now - timedelta(seconds=20) == run.parsed.start_time


def test_cancel_ends_the_wait_of_an_item_waiting_for_its_retry() -> None:
    run = Run(spec_of(fan(forEach=["a", "b"], parallelism=2, retry={"limit": 2, "delaysSeconds": [100]})))
    run.decide()
    run.failed(p("fan", 0))
    run.decide()
    run.set_spec(cancel=True)
    run.decide()
    assert [(i.index, i.state, i.next_attempt_time) for i in items(run).in_flight] == [
        (0, "Cancelled", None),
        (1, "Cancelled", None),
    ]


def test_fail_fast_past_an_item_waiting_for_its_retry_and_one_whose_pod_is_gone() -> None:
    retry = {"limit": 2, "delaysSeconds": [100], "rules": [{"onExitCodes": [2], "action": "FailJob"}]}
    run = Run(spec_of(fan(forEach=["a", "b", "c"], parallelism=3, retry=retry)))
    run.decide()
    run.failed(p("fan", 0))  # waits for its retry
    del run.pods[p("fan", 1)]  # never reached the API server: created again below
    run.failed(p("fan", 2), exit_code=2)  # fails for good: FailFast
    decision = run.decide()
    assert [t.type for t in decision.transitions][-3:] == ["AttemptStopped", "StageFailed", "JobFailed"]
    assert decision.create == ()
    assert [i.state for i in items(run).in_flight] == ["Cancelled", "Cancelled"]


def test_a_long_message_of_an_item_attempt_is_cut_in_the_status_not_in_the_audit() -> None:
    run = Run(spec_of(fan(forEach=["a"])))
    run.decide()
    run.change(p("fan", 0), waiting_reason="ImagePullBackOff", waiting_message="m" * 900)
    decision = run.decide()
    attempt = items(run).in_flight[0].attempt
    assert attempt is not None
    assert len(attempt.message or "") == 256
    assert decision.transitions == ()


def test_a_job_retried_after_its_items_could_not_be_read_reads_them_again() -> None:
    spec = spec_of(image_stage("list"), image_stage("fan", forEach="{{ stages.list.outputs.files }}"))
    run = Run(spec)
    run.decide()
    run.succeeded(p("list", None), message='{"files": "nope"}')
    run.decide()
    assert run.succeeded_condition == ("False", "StageFailed")
    run.annotations["procjob.dev/retry"] = "2025-03-14T10:00:00Z"
    run.decide()
    assert run.succeeded_condition == ("False", "StageFailed")  # the same output: the same problem
    assert run.stage("fan").message == "forEach: output 'files' of stage 'list' is not a list"
