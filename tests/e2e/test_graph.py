"""Stages as a graph (dependsOn) and finally stages, end to end: the operator process, the rig's API
server, kwok pods. Overlap and order are judged from an independent watch of the pods (when each was
seen Running and finished), not from the operator's own status.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from tests.e2e.jobs import job, stage, stage_status, when
from tests.support.kube import Kube, Seen, Watcher, condition, finished, wait_for

pytestmark = pytest.mark.rig


def pod_watch(kube: Kube, namespace: str) -> Watcher:
    return Watcher(kube, f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": "procjob.dev/job-uid"}).start()


def lifetimes(events: list[Seen]) -> dict[str, tuple[float, float]]:
    """Stage -> (first seen Running, first seen Succeeded or Failed), by the watcher's clock."""
    running: dict[str, float] = {}
    ended: dict[str, float] = {}
    for seen in events:
        stage_name = seen.object["metadata"]["labels"]["procjob.dev/stage"]
        phase = (seen.object.get("status") or {}).get("phase")
        if phase == "Running":
            running.setdefault(stage_name, seen.at)
        elif phase in ("Succeeded", "Failed"):
            ended.setdefault(stage_name, seen.at)
    return {name: (running[name], ended[name]) for name in running if name in ended}


def created(events: list[Seen]) -> dict[str, str]:
    """Pod name -> its creationTimestamp (the API server's clock)."""
    return {s.object["metadata"]["name"]: s.object["metadata"]["creationTimestamp"] for s in events}


def test_a_diamond_runs_its_middle_stages_at_the_same_time(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    pods = pod_watch(kube, namespace)
    manifest = job(
        "diamond",
        stage("a", dependsOn=[], rig={"termination_message": '{"n": 1}'}),
        stage("b", dependsOn=["a"], rig={"run_seconds": 3, "termination_message": '{"k": "from-b"}'}),
        stage("c", dependsOn=["a"], rig={"run_seconds": 3, "termination_message": '{"k": "from-c"}'}),
        stage("d", dependsOn=["b", "c"], args=["{{ stages.b.outputs.k }}", "{{ stages.c.outputs.k }}"]),
        podGC="Never",
    )
    kube.create_job(namespace, manifest)
    done = wait_for("the diamond to finish", finished(kube, namespace, "diamond"), timeout=90)
    events = pods.stop()
    assert condition(done)["reason"] == "Succeeded", condition(done)

    seen = lifetimes(events)
    assert set(seen) == {"a", "b", "c", "d"}, seen
    (b_start, b_end), (c_start, c_end) = seen["b"], seen["c"]
    assert max(b_start, c_start) < min(b_end, c_end), f"b {seen['b']} and c {seen['c']} did not overlap"
    assert seen["a"][1] <= min(b_start, c_start), "b or c ran before a ended"
    assert max(b_end, c_end) <= seen["d"][0], "d ran before b and c ended"

    d_pod = next(p for p in kube.pods(namespace) if p["metadata"]["labels"]["procjob.dev/stage"] == "d")
    assert d_pod["spec"]["containers"][0]["args"] == ["from-b", "from-c"]
    for name in "bc":
        assert stage_status(done, name)["attemptCount"] == 1
    assert when(stage_status(done, "d")["startTime"]) >= max(
        when(stage_status(done, "b")["completionTime"]), when(stage_status(done, "c")["completionTime"])
    )


def with_finally(name: str, *stages: dict[str, Any], **spec: Any) -> dict[str, Any]:
    cleanup = stage("cleanup", args=["{{ job.status }}", "{{ job.reason }}"])
    return job(name, *stages, podGC="Never", **{"finally": [cleanup], **spec})


def cleanup_args(kube: Kube, namespace: str) -> list[str]:
    pod = next(p for p in kube.pods(namespace) if p["metadata"]["labels"]["procjob.dev/stage"] == "cleanup")
    return list(pod["spec"]["containers"][0]["args"])


def test_finally_runs_after_a_failure_and_the_job_stays_failed(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    pods = pod_watch(kube, namespace)
    manifest = with_finally(
        "fails", stage("work", rig={"exit_code": 1}), stage("never"), retry={"limit": 1, "delaysSeconds": [1]}
    )
    kube.create_job(namespace, manifest)
    done = wait_for("the job to finish", finished(kube, namespace, "fails"), timeout=90)
    events = pods.stop()
    assert condition(done)["status"] == "False"
    assert condition(done)["reason"] == "BackoffLimitExceeded"
    assert condition(done)["message"].endswith("; the finally stages succeeded")
    assert done["status"]["finally"]["outcome"] == "Failed"
    assert stage_status(done, "cleanup")["state"] == "Succeeded"
    assert stage_status(done, "never")["state"] == "Pending"
    assert cleanup_args(kube, namespace) == ["Failed", "BackoffLimitExceeded"]
    born = created(events)
    work_ends = max(when(a["finishTime"]) for a in stage_status(done, "work")["attempts"])
    cleanup_pod = stage_status(done, "cleanup")["attempts"][0]["podName"]
    assert when(born[cleanup_pod]) >= work_ends.replace(microsecond=0)
    posted = wait_for(
        "the FinallyStarted Event",
        lambda: [e for e in kube.events(namespace, "fails") if e["reason"] == "FinallyStarted"] or None,
    )
    assert "running the finally stages" in posted[0]["message"]


def test_finally_runs_after_a_cancel_and_the_job_ends_cancelled(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = with_finally("cancelled", stage("long", rig={"run_seconds": 300}))
    kube.create_job(namespace, manifest)

    def running() -> bool:
        body = kube.job(namespace, "cancelled") or {}
        attempts = stage_status(body, "long")["attempts"] if (body.get("status") or {}).get("stages") else []
        return bool(attempts) and attempts[-1]["state"] == "Running"

    wait_for("the long stage to run", running, timeout=60)
    kube.patch_job(namespace, "cancelled", {"spec": {"cancel": True}})
    done = wait_for("the job to finish", finished(kube, namespace, "cancelled"), timeout=60)
    assert condition(done)["reason"] == "Cancelled"
    assert stage_status(done, "long")["attempts"][-1]["state"] == "Stopped"
    assert stage_status(done, "cleanup")["state"] == "Succeeded"
    assert cleanup_args(kube, namespace) == ["Cancelled", "Cancelled"]
    long_pods = [p for p in kube.pods(namespace) if p["metadata"]["labels"]["procjob.dev/stage"] == "long"]
    assert all(p["metadata"].get("deletionTimestamp") for p in long_pods) or not long_pods


JOBS = 4
DELAYS = [2, 3]


def test_sigkill_mid_graph_loses_nothing_and_duplicates_nothing(kube: Kube, namespace: str, operator: Any) -> None:
    """Graphs whose parallel stages fail and retry with backoff, then finally: the operator is killed
    while stages wait for their retries and again while others run; every job ends as it should, with
    one pod per (stage, attempt), every attempt kept and every backoff waited in full."""
    op = operator(namespace)
    pods = pod_watch(kube, namespace)
    for i in range(JOBS):
        kube.create_job(
            namespace,
            job(
                f"graph-{i}",
                stage("root", dependsOn=[]),
                stage("flaky", dependsOn=["root"], rig={"fail_attempts": 2, "exit_code": 1}),
                stage("steady", dependsOn=["root"], rig={"run_seconds": 2}),
                stage("join", dependsOn=["flaky", "steady"]),
                retry={"limit": 3, "delaysSeconds": DELAYS},
                podGC="Never",
                **{"finally": [stage("cleanup", rig={"run_seconds": 1})]},
            ),
        )

    def some_stage(state: str) -> bool:
        return any(
            item.get("state") == state
            for b in kube.jobs(namespace)
            for item in (b.get("status") or {}).get("stages") or []
        )

    wait_for("a stage waiting for its retry", lambda: some_stage("BackoffWaiting"), timeout=60)
    op.kill()
    op.start()
    wait_for("a job in its finally stage", lambda: some_stage("Running") and _finalizing(kube, namespace), timeout=90)
    op.kill()
    op.start()

    def all_done() -> list[dict[str, Any]] | None:
        bodies = kube.jobs(namespace)
        return bodies if sum(condition(b).get("status") in ("True", "False") for b in bodies) == JOBS else None

    bodies = wait_for("every job to finish", all_done, timeout=180)
    events = pods.stop()
    uids: dict[str, set[str]] = defaultdict(set)
    for seen in events:
        uids[seen.object["metadata"]["name"]].add(seen.object["metadata"]["uid"])
    assert not {n: u for n, u in uids.items() if len(u) > 1}, "more than one pod for an attempt"
    for body in bodies:
        name = body["metadata"]["name"]
        assert condition(body)["reason"] == "Succeeded", (name, condition(body))
        flaky = stage_status(body, "flaky")
        assert [a["state"] for a in flaky["attempts"]] == ["Failed", "Failed", "Succeeded"], (name, flaky)
        for previous, following, delay in zip(flaky["attempts"], flaky["attempts"][1:], DELAYS, strict=False):
            gap = (when(following["createTime"]) - when(previous["finishTime"])).total_seconds()
            assert gap >= delay - 0.001, f"{name}: backoff reset ({gap:.3f}s < {delay}s)"
        for other in ("root", "steady", "join", "cleanup"):
            assert stage_status(body, other)["attemptCount"] == 1, (name, other)
        uid8 = body["metadata"]["uid"].replace("-", "")[:8]
        assert len([n for n in uids if uid8 in n]) == 7, f"{name}: pods {sorted(n for n in uids if uid8 in n)}"
    assert op.starts == 3


def _finalizing(kube: Kube, namespace: str) -> bool:
    return any(condition(b).get("reason") == "Finalizing" for b in kube.jobs(namespace))
