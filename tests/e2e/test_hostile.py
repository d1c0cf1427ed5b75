"""Hostile jobs and pods on the rig: each is its own job's problem.

One operator with the audit on serves a well-behaved job and a set of hostile ones side by side.
The hostile ones end with a reason naming their cause; the well-behaved job finishes and every
job's audit rows reach PostgreSQL (seq 1..N, none lost); the operator stays live and its audit up.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from procjob.core.naming import pod_name
from tests.e2e.jobs import job, stage, stage_status
from tests.e2e.test_audit import drained, migrate, rows
from tests.support.kube import Kube, condition, finished, wait_for
from tests.support.rig import Rig

pytestmark = [pytest.mark.rig, pytest.mark.postgres]

LIMIT_RANGE = {
    "apiVersion": "v1",
    "kind": "LimitRange",
    "metadata": {"name": "small"},
    "spec": {"limits": [{"type": "Container", "max": {"cpu": "100m"}}]},
}
SQUATTER_SPEC = {"containers": [{"name": "main", "image": "registry.example/squatter:1"}]}
OUTPUT_4K = '{"k": "' + "x" * 4000 + '"}'


def hostile_jobs() -> dict[str, dict[str, Any]]:
    return {
        "well-behaved": job("well-behaved", stage("a", rig={"run_seconds": 1}), stage("b")),
        "lone-surrogate": job(
            "lone-surrogate", stage("a", rig={"termination_message": '{"k":"\\ud800"}'}), retry={"limit": 0}
        ),
        "deep-outputs": job(
            "deep-outputs",
            stage("a", rig={"termination_message": '{"k":' + "[" * 900 + "]" * 900 + "}"}),
            retry={"limit": 0},
        ),
        "template-bomb": job(
            "template-bomb",
            stage("a", rig={"termination_message": OUTPUT_4K}),
            stage("b", args=["{{ stages.a.outputs.k }}" * 140] * 256),
        ),
        # over the namespace's LimitRange (below): the API server's admission refuses it (403)
        "over-limit-range": job("over-limit-range", stage("a", resources={"limits": {"cpu": "1"}}), retry={"limit": 3}),
        # its first pod's name is taken (below) by a pod it does not own
        "squatted": job("squatted", stage("a"), retry={"limit": 3}, suspend=True),
    }


EXPECTED = {
    "lone-surrogate": ("False", "BackoffLimitExceeded", "InvalidOutputs"),
    "deep-outputs": ("False", "BackoffLimitExceeded", "InvalidOutputs"),
    "template-bomb": ("False", "StageFailed", "the rendered pod would exceed 256 KiB"),
    "squatted": ("False", "StageFailed", "PodRejected"),
    "over-limit-range": ("False", "StageFailed", "maximum cpu usage per Container is 100m"),
}


def test_hostile_jobs_fail_alone_while_a_well_behaved_job_finishes_and_everything_is_audited(
    kube: Kube, rig: Rig, namespace: str, operator: Any, database: str
) -> None:
    migrate(database)
    op = operator(namespace, env={"PROCJOB_DATABASE_URL": database})
    manifests = hostile_jobs()
    rig.apply(LIMIT_RANGE, namespace=namespace)
    for manifest in manifests.values():
        kube.create_job(namespace, manifest)
    squatted = kube.job(namespace, "squatted")
    assert squatted is not None
    taken = pod_name("squatted", squatted["metadata"]["uid"], "a", 1)
    squatter = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": taken}, "spec": SQUATTER_SPEC}
    rig.apply(squatter, namespace=namespace)
    kube.patch_job(namespace, "squatted", {"spec": {"suspend": False}})
    done = {name: wait_for(f"job {name} to finish", finished(kube, namespace, name), timeout=90) for name in manifests}

    assert condition(done["well-behaved"])["reason"] == "Succeeded"
    for name, (status, reason, cause) in EXPECTED.items():
        cond = condition(done[name])
        assert (cond["status"], cond["reason"]) == (status, reason), (name, cond)
        stages = done[name]["status"]["stages"]
        causes = [a.get("reason") for s in stages for a in s.get("attempts", [])] + [
            s.get("message") or "" for s in stages
        ]
        assert any(cause in (c or "") for c in causes) or cause in cond["message"], (name, stages, cond)
    refused = stage_status(done["squatted"], "a")["attempts"]
    assert len(refused) == 1  # refused once, never retried as it is, never adopted
    assert "taken by a pod this job does not own" in (refused[0].get("message") or "")

    # a Warning Event names each hostile job's cause
    for name in EXPECTED:
        warnings = wait_for(
            f"a Warning Event on {name}",
            lambda n=name: [e for e in kube.events(namespace, n) if e["type"] == "Warning"] or None,
        )
        assert warnings

    # every job's audit is whole; the operator is live and its audit up
    wait_for("the outboxes to drain", drained(kube, namespace), timeout=60)
    stored = rows(database)
    for body in kube.jobs(namespace):
        last = body["status"]["audit"]["lastSeq"]
        got = [seq for seq, _ in stored.get(body["metadata"]["uid"], [])]
        assert got == list(range(1, last + 1)), body["metadata"]["name"]
    # the jobs table holds each job's final state, not the state before its last pass
    with psycopg.connect(database) as conn:
        states = dict(conn.execute("SELECT name, state FROM jobs").fetchall())
    for body in kube.jobs(namespace):
        assert states[body["metadata"]["name"]] == body["status"]["phase"], body["metadata"]["name"]
    assert op.get("/healthz").status_code == 200
    assert "procjob_audit_up 1.0" in op.metrics()


def test_a_retry_value_too_long_for_the_status_is_ignored_and_the_job_stays_writable(
    kube: Kube, namespace: str, operator: Any
) -> None:
    operator(namespace)
    kube.create_job(namespace, job("long-retry", stage("a", rig={"exit_code": 1}), retry={"limit": 0}))
    wait_for("the job to fail", finished(kube, namespace, "long-retry"))
    kube.patch_job(namespace, "long-retry", {"metadata": {"annotations": {"procjob.dev/retry": "r" * 300}}})

    def ignored() -> list[dict[str, Any]] | None:
        return [e for e in kube.events(namespace, "long-retry") if e["reason"] == "RetryIgnored"] or None

    events = wait_for("RetryIgnored", ignored)
    assert "300 characters" in events[0]["message"]
    body = kube.job(namespace, "long-retry")
    assert body is not None
    assert body["status"]["lastRetryRequest"].startswith("sha256:")
    kube.patch_job(namespace, "long-retry", {"metadata": {"annotations": {"procjob.dev/retry": "again"}}})
    wait_for(
        "a retry with a short value to run",
        lambda: (kube.job(namespace, "long-retry") or {})["status"].get("lastRetryRequest") == "again",
    )


def test_a_look_alike_pod_in_another_namespace_never_counts_for_the_victim(
    kube: Kube, rig: Rig, namespace: str, operator: Any
) -> None:
    other = f"tenant-b-{uuid.uuid4().hex[:8]}"
    rig.kubectl("create", "namespace", other)
    try:
        wait_for(
            "the default ServiceAccount",
            lambda: rig.kubectl("get", "sa/default", "-n", other, check=False).returncode == 0,
        )
        operator(namespace, "--namespace", other)
        kube.create_job(
            namespace, job("victim", stage("a", rig={"run_seconds": 3, "termination_message": '{"ok": 1}'}))
        )
        pod = wait_for("the victim's pod", lambda: kube.pods(namespace) or None)[0]
        victim = kube.job(namespace, "victim")
        assert victim is not None
        impostor = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod["metadata"]["name"],
                "labels": dict(pod["metadata"]["labels"]),
                "annotations": {"rig.procjob.dev/exit-code": "1", "rig.procjob.dev/termination-message": '{"evil": 1}'},
                "ownerReferences": pod["metadata"]["ownerReferences"],
            },
            "spec": {"containers": [{"name": "main", "image": "registry.example/evil:1"}]},
        }
        rig.apply(impostor, namespace=other)
        done = wait_for("the victim to finish", finished(kube, namespace, "victim"), timeout=60)
        assert condition(done)["reason"] == "Succeeded"
        assert stage_status(done, "a")["outputs"] == {"ok": 1}
        assert done["status"]["attempts"] == 1
    finally:
        rig.kubectl("delete", "namespace", other, "--wait=false", check=False)
