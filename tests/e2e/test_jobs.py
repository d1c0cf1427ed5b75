"""ProcessingJob scenarios end to end: the operator process, the rig's API server, kwok pods.

Each test runs its own operator scoped to a fresh namespace, creates jobs through the API server,
and asserts what the API server shows (status, pods, Events), never the operator's internals.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.jobs import job, stage, stage_status, when
from tests.support.kube import ApiFailure, Kube, condition, finished, wait_for

pytestmark = pytest.mark.rig


def run_to_end(kube: Kube, namespace: str, manifest: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    kube.create_job(namespace, manifest)
    name = manifest["metadata"]["name"]
    return wait_for(f"job {name} to finish", finished(kube, namespace, name), timeout=timeout)


def test_three_stages_succeed_and_pass_outputs_on(kube: Kube, namespace: str, operator: Any, rig: Any) -> None:
    operator(namespace)
    manifest = job(
        "three",
        stage("fetch", rig={"termination_message": '{"key": "raw/three.jpg", "size": 18231}'}),
        stage(
            "resize",
            env=[{"name": "INPUT_KEY", "value": "{{ stages.fetch.outputs.key }}"}],
            args=["--size={{ stages.fetch.outputs.size }}", "--job={{ job.name }}"],
        ),
        stage("publish"),
        podGC="Never",
    )
    done = run_to_end(kube, namespace, manifest)
    assert condition(done)["status"] == "True"
    assert condition(done)["reason"] == "Succeeded"
    status = done["status"]
    assert status["phase"] == "Succeeded"
    assert status["progress"] == "3/3"
    assert status["attempts"] == 3
    assert stage_status(done, "fetch")["outputs"] == {"key": "raw/three.jpg", "size": 18231}

    pods = {p["metadata"]["labels"]["procjob.dev/stage"]: p for p in kube.pods(namespace)}
    assert set(pods) == {"fetch", "resize", "publish"}
    resize = pods["resize"]["spec"]["containers"][0]
    assert {"name": "INPUT_KEY", "value": "raw/three.jpg"} in resize["env"]
    assert resize["args"] == ["--size=18231", "--job=three"]
    security = pods["resize"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert resize["securityContext"]["allowPrivilegeEscalation"] is False
    assert resize["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pods["resize"]["spec"]["automountServiceAccountToken"] is False
    owner = pods["resize"]["metadata"]["ownerReferences"][0]
    assert owner["uid"] == done["metadata"]["uid"]
    assert owner["controller"] is True

    table = rig.kubectl("get", "pj", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "STAGE", "ATTEMPTS", "DURATION", "AGE"]
    assert table[1].split()[:4] == ["three", "Succeeded", "3/3", "3"]
    wide = rig.kubectl("get", "processingjobs", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-1] == "MESSAGE"
    assert "all 3 stages succeeded" in wide[1]

    # The Events mirror every transition, a pass's in one Event, a job's progress gathered into its
    # next Event (the audit keeps each one as a record).
    def all_posted() -> list[dict[str, Any]] | None:
        events = kube.events(namespace, "three")
        return events if any(e["reason"] == "JobSucceeded" for e in events) else None

    events = wait_for("the JobSucceeded Event", all_posted)
    assert "JobSucceeded" in {e["reason"] for e in events}
    mirrored = "; ".join(e["message"] for e in events).split("; ")
    for name in ("fetch", "resize", "publish"):
        for what in ("started", "attempt 1 started", "succeeded"):
            assert f"stage {name} {what}" in mirrored


def test_a_stage_failing_twice_then_succeeding_respects_the_backoff(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job(
        "flaky",
        stage("work", rig={"fail_attempts": 2, "exit_code": 1}),
        retry={"limit": 3, "delaysSeconds": [1, 2]},
        podGC="Never",
    )
    done = run_to_end(kube, namespace, manifest)
    assert condition(done)["reason"] == "Succeeded"
    work = stage_status(done, "work")
    attempts = work["attempts"]
    assert [a["state"] for a in attempts] == ["Failed", "Failed", "Succeeded"]
    assert [a.get("exitCode") for a in attempts] == [1, 1, 0]
    assert work["chargedFailures"] == 2
    for previous, following, delay in zip(attempts[:-1], attempts[1:], [1, 2], strict=True):
        gap = (when(following["createTime"]) - when(previous["finishTime"])).total_seconds()
        assert gap >= delay - 0.001, f"attempt {following['attempt']} started {gap:.3f}s after, wanted >= {delay}"
    assert work["lastRetryDecision"]["rule"] == "default"
    names = [p["metadata"]["name"] for p in kube.pods(namespace)]
    assert len(names) == len(set(names)) == 3


def test_exhausting_retries_fails_with_backoff_limit_exceeded(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job("hopeless", stage("work", rig={"exit_code": 3}), retry={"limit": 1, "delaysSeconds": [0]})
    done = run_to_end(kube, namespace, manifest)
    assert condition(done)["status"] == "False"
    assert condition(done)["reason"] == "BackoffLimitExceeded"
    assert done["status"]["phase"] == "Failed"
    work = stage_status(done, "work")
    assert work["attemptCount"] == 2
    assert work["lastRetryDecision"]["rule"] == "limit"
    assert work["lastRetryDecision"]["retriesLeft"] == 0


def test_a_fail_job_rule_fails_at_once(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    # exit code 2 is the worker contract's permanent failure; the default rules make it FailJob
    done = run_to_end(kube, namespace, job("permanent", stage("work", rig={"exit_code": 2}), retry={"limit": 5}))
    assert condition(done)["reason"] == "StageFailed"
    work = stage_status(done, "work")
    assert work["attemptCount"] == 1
    assert work["lastRetryDecision"]["action"] == "FailJob"
    warnings = wait_for(
        "the JobFailed Event", lambda: [e for e in kube.events(namespace, "permanent") if e["type"] == "Warning"]
    )
    assert [e["reason"] for e in warnings] == ["JobFailed"]  # one Event for the failed attempt, stage and job
    assert "stage work attempt 1 failed: Error (exit 2)" in warnings[0]["message"]


def test_an_ignore_rule_retries_without_charging(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job(
        "disrupted",
        stage("work", rig={"fail_attempts": 2, "exit_code": 7}),
        retry={"limit": 0, "delaysSeconds": [0], "rules": [{"onExitCodes": [7], "action": "Ignore"}]},
    )
    done = run_to_end(kube, namespace, manifest)
    assert condition(done)["reason"] == "Succeeded"
    work = stage_status(done, "work")
    assert work["attemptCount"] == 3
    assert work["chargedFailures"] == 0
    assert [a.get("charged") for a in work["attempts"]] == [False, False, None]


def test_an_attempt_past_its_timeout_is_stopped(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job("slow", stage("work", rig={"run_seconds": 120}, timeoutSeconds=2), retry={"limit": 0})
    done = run_to_end(kube, namespace, manifest)
    assert condition(done)["reason"] == "BackoffLimitExceeded"
    attempt = stage_status(done, "work")["attempts"][0]
    assert attempt["reason"] == "DeadlineExceeded"
    wait_for("the timed-out pod to go", lambda: not kube.pods(namespace), timeout=30)


def test_a_pod_stuck_pending_fails_at_its_startup_timeout(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job(
        "stuck",
        stage("work", rig={"waiting_reason": "ImagePullBackOff"}, startupTimeoutSeconds=2),
        retry={"limit": 0},
    )
    done = run_to_end(kube, namespace, manifest)
    attempt = stage_status(done, "work")["attempts"][0]
    assert attempt["reason"] == "StartupTimeout"
    assert "ImagePullBackOff" in attempt["message"]


def test_the_job_deadline_ends_the_job(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job("late", stage("work", rig={"run_seconds": 120}), activeDeadlineSeconds=3)
    done = run_to_end(kube, namespace, manifest)
    assert condition(done)["reason"] == "DeadlineExceeded"
    wait_for("the pod to go", lambda: not kube.pods(namespace), timeout=30)


def test_a_retry_that_would_end_past_the_deadline_fails_at_once(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job(
        "nofit",
        stage("work", rig={"exit_code": 1}),
        activeDeadlineSeconds=60,
        retry={"limit": 3, "delaysSeconds": [600]},
    )
    done = run_to_end(kube, namespace, manifest, timeout=30)
    assert condition(done)["reason"] == "DeadlineExceeded"
    assert stage_status(done, "work")["attemptCount"] == 1


def test_suspend_stops_the_attempt_and_resume_starts_a_new_one(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    kube.create_job(namespace, job("pausable", stage("work", rig={"run_seconds": 4}), podGC="Never"))

    def running() -> bool:
        return any(p.get("status", {}).get("phase") == "Running" for p in kube.pods(namespace))

    wait_for("the first attempt to run", running)
    kube.patch_job(namespace, "pausable", {"spec": {"suspend": True}})
    suspended = wait_for(
        "the job to be suspended",
        lambda: (j := kube.job(namespace, "pausable")) and condition(j, "Suspended").get("status") == "True" and j,
    )
    assert suspended["status"]["phase"] == "Suspended"
    wait_for(
        "the running pod to be stopped",
        lambda: (
            not any(
                p["status"].get("phase") in ("Pending", "Running") and not p["metadata"].get("deletionTimestamp")
                for p in kube.pods(namespace)
            )
        ),
    )
    kube.patch_job(namespace, "pausable", {"spec": {"suspend": False}})
    done = wait_for("the job to finish", finished(kube, namespace, "pausable"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"
    assert condition(done, "Suspended")["status"] == "False"
    work = stage_status(done, "work")
    assert [a["state"] for a in work["attempts"]] == ["Stopped", "Succeeded"]
    assert work["chargedFailures"] == 0
    reasons = [e["reason"] for e in kube.events(namespace, "pausable")]
    assert "Suspended" in reasons
    assert "Resumed" in reasons


@pytest.mark.parametrize("moment", ["running", "waiting for a retry"])
def test_cancel_ends_the_job_and_removes_its_pods(kube: Kube, namespace: str, operator: Any, moment: str) -> None:
    operator(namespace)
    if moment == "running":
        manifest = job("doomed", stage("work", rig={"run_seconds": 120}))
    else:
        manifest = job("doomed", stage("work", rig={"exit_code": 1}), retry={"limit": 3, "delaysSeconds": [300]})
    kube.create_job(namespace, manifest)
    state = "Running" if moment == "running" else "BackoffWaiting"
    wait_for(
        f"stage state {state}",
        lambda: (
            (j := kube.job(namespace, "doomed"))
            and j.get("status", {}).get("stages")
            and stage_status(j, "work")["state"] == state
        ),
    )
    kube.patch_job(namespace, "doomed", {"spec": {"cancel": True}})
    done = wait_for("the job to end", finished(kube, namespace, "doomed"), timeout=30)
    assert condition(done)["reason"] == "Cancelled"
    assert done["status"]["phase"] == "Cancelled"
    wait_for(
        "no live pods",
        lambda: not [p for p in kube.pods(namespace) if p["status"].get("phase") in ("Pending", "Running")],
        timeout=30,
    )
    with pytest.raises(ApiFailure) as refused:
        kube.patch_job(namespace, "doomed", {"spec": {"cancel": False}})
    assert "cancel cannot be undone" in refused.value.text


def test_deleting_a_job_removes_its_pods(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    kube.create_job(namespace, job("short-lived", stage("work", rig={"run_seconds": 120})))
    wait_for("a pod", lambda: kube.pods(namespace))
    kube.delete_job(namespace, "short-lived")
    wait_for("the job to go", lambda: kube.job(namespace, "short-lived") is None, timeout=30)
    wait_for("its pods to go", lambda: not kube.pods(namespace), timeout=60)


def test_a_pod_deleted_by_hand_is_recorded_and_retried(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    kube.create_job(namespace, job("poked", stage("work", rig={"run_seconds": 3}), retry={"delaysSeconds": [0]}))

    def running_pod() -> str | None:
        for pod in kube.pods(namespace):
            if pod["status"].get("phase") == "Running":
                return str(pod["metadata"]["name"])
        return None

    name = wait_for("a running pod", running_pod)
    kube.delete_pod(namespace, name, force=True)
    done = wait_for("the job to finish", finished(kube, namespace, "poked"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"
    attempts = stage_status(done, "work")["attempts"]
    assert attempts[0]["reason"] == "PodDeleted"
    assert attempts[0]["charged"] is True
    assert attempts[-1]["state"] == "Succeeded"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"stages": [{"name": "a", "image": "x", "uses": "fetch"}]}, "exactly one of image or uses"),
        ({"stages": [{"name": "Bad_Name", "image": "x"}]}, "spec.stages[0].name"),
        ({"stages": [{"name": "a", "image": "x"}], "retry": {"limit": -1}}, "spec.retry.limit"),
        ({"stages": [{"name": f"s{i}", "image": "x"} for i in range(33)]}, "spec.stages"),
        ({"stages": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}, "stage names must be unique"),
        ({"stages": []}, "spec.stages"),
    ],
    ids=["image and uses", "bad stage name", "negative limit", "too many stages", "duplicate names", "no stages"],
)
def test_the_api_server_refuses_malformed_jobs(kube: Kube, namespace: str, crd: Any, spec: Any, field: str) -> None:
    with pytest.raises(ApiFailure) as refused:
        kube.create_job(namespace, {"metadata": {"name": "bad"}, "spec": spec})
    assert refused.value.status == 422
    assert field in refused.value.text


def test_stages_are_immutable_once_created(kube: Kube, namespace: str, crd: Any) -> None:
    kube.create_job(namespace, job("fixed", stage("a"), priority=1))
    kube.patch_job(namespace, "fixed", {"spec": {"priority": 5, "suspend": True}})
    with pytest.raises(ApiFailure) as refused:
        kube.patch_job(namespace, "fixed", {"spec": {"stages": [{"name": "b", "image": "x"}]}})
    assert "stages are immutable" in refused.value.text


def test_an_unusable_job_gets_invalid_spec_and_no_pod(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job("confused", stage("a", args=["{{ stages.nowhere.outputs.key }}"]))
    done = run_to_end(kube, namespace, manifest)
    assert condition(done)["reason"] == "InvalidSpec"
    assert "spec.stages[0].args[0]" in condition(done)["message"]
    assert "nowhere" in condition(done)["message"]
    assert not kube.pods(namespace)
    events = [e for e in kube.events(namespace, "confused") if e["reason"] == "InvalidSpec"]
    assert events
    assert events[0]["type"] == "Warning"


def test_metrics_and_probes_are_served(kube: Kube, namespace: str, operator: Any) -> None:
    op = operator(namespace)
    run_to_end(kube, namespace, job("counted", stage("a")))
    assert op.get("/healthz").status_code == 200
    assert op.get("/readyz").status_code == 200
    text = wait_for(
        "job metrics", lambda: (t := op.metrics()) and 'procjob_jobs_finished_total{outcome="Succeeded"' in t and t
    )
    for name in (
        "procjob_attempts_started_total",
        "procjob_reconcile_duration_seconds_bucket",
        "procjob_workqueue_depth",
        "procjob_api_requests_total",
        "procjob_job_duration_seconds_bucket",
    ):
        assert name in text
