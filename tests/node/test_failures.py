"""Failure classes with real containers: the kernel's OOM kill, SIGTERM on timeouts, deadlines, cancel
and suspend, and the restricted security context actually in force."""

from __future__ import annotations

from typing import Any

import pytest

from tests.node.conftest import InCluster
from tests.node.jobs import INTROSPECT, SIGNAL_REPORTER, SIGTERM_IGNORER, env, job, python_stage, reason, stage_status
from tests.support.http import HttpServer
from tests.support.kube import finished, wait_for

pytestmark = pytest.mark.node
NO_RETRY = {"limit": 0}


def signalled(server: HttpServer, name: str, attempt: int = 1) -> bool:
    return bool(server.log.for_path(f"/status/200?signal=TERM&job={name}&attempt={attempt}"))


def reporter(name: str, server: HttpServer, **extra: Any) -> dict[str, Any]:
    return python_stage(name, SIGNAL_REPORTER, env=env(REPORT_URL=server.url("/status/200")), **extra)


def running(incluster: InCluster, name: str, stage: str) -> Any:
    def check() -> bool:
        body = incluster.kube.job(incluster.namespace, name)
        attempts = stage_status(body, stage)["attempts"] if body and body.get("status", {}).get("stages") else []
        return bool(attempts) and attempts[-1]["state"] == "Running"

    return wait_for(f"{name}/{stage} running", check, timeout=60)


def test_a_memory_limit_ends_a_real_container_oomkilled(incluster: InCluster) -> None:
    hog = python_stage(
        "hog", "blob = b'x' * (256 << 20)", resources={"requests": {"memory": "32Mi"}, "limits": {"memory": "64Mi"}}
    )
    done = incluster.run(job("oom-real", hog, retry=NO_RETRY))
    assert (done["status"]["phase"], reason(done)) == ("Failed", "BackoffLimitExceeded")
    (attempt,) = stage_status(done, "hog")["attempts"]
    assert (attempt["reason"], attempt["exitCode"]) == ("OOMKilled", 137)


def test_timeout_seconds_stops_a_running_container_with_sigterm(incluster: InCluster, node_http: HttpServer) -> None:
    done = incluster.run(job("timeout-real", reporter("slow", node_http, timeoutSeconds=3), retry=NO_RETRY))
    assert (done["status"]["phase"], reason(done)) == ("Failed", "BackoffLimitExceeded")
    (attempt,) = stage_status(done, "slow")["attempts"]
    assert attempt["reason"] == "DeadlineExceeded"
    wait_for("the container's SIGTERM report", lambda: signalled(node_http, "timeout-real"), timeout=40)


def test_a_container_ignoring_sigterm_runs_out_its_grace_period_and_is_killed(
    incluster: InCluster, node_http: HttpServer
) -> None:
    stubborn = python_stage("stubborn", SIGTERM_IGNORER, env=env(REPORT_URL=node_http.url("/status/200")),
                            timeoutSeconds=2, podTemplate={"spec": {"terminationGracePeriodSeconds": 4}})  # fmt: skip
    name = incluster.create(job("grace-real", stubborn, retry=NO_RETRY))
    done = wait_for("the attempt timed out", finished(incluster.kube, incluster.namespace, name), timeout=60)
    assert (done["status"]["phase"], reason(done)) == ("Failed", "BackoffLimitExceeded")
    base = f"/status/200?signal={{}}&job={name}"
    wait_for("SIGTERM ignored", lambda: node_http.log.for_path(base.format("TERM-ignored")), timeout=30)
    wait_for("still running after SIGTERM", lambda: node_http.log.for_path(base.format("alive-after-TERM")), timeout=30)
    # The kubelet SIGKILLs it when the 4 s grace period ends: the pod goes away, the container exits 137.
    wait_for("the pod gone", lambda: not incluster.kube.pods(incluster.namespace, f"procjob.dev/job={name}"),
             timeout=60)  # fmt: skip


def test_active_deadline_seconds_stops_the_job_and_its_running_container(
    incluster: InCluster, node_http: HttpServer
) -> None:
    done = incluster.run(job("deadline-real", reporter("slow", node_http), activeDeadlineSeconds=5))
    assert reason(done) == "DeadlineExceeded", done["status"]["conditions"]
    wait_for("the container's SIGTERM report", lambda: signalled(node_http, "deadline-real"), timeout=40)


def test_cancel_kills_the_running_container(incluster: InCluster, node_http: HttpServer) -> None:
    name = incluster.create(job("cancel-real", reporter("slow", node_http)))
    running(incluster, name, "slow")
    incluster.kube.patch_job(incluster.namespace, name, {"spec": {"cancel": True}})
    done = wait_for("cancelled", finished(incluster.kube, incluster.namespace, name), timeout=60)
    assert reason(done) == "Cancelled"
    wait_for("the container's SIGTERM report", lambda: signalled(node_http, name), timeout=40)


def test_suspend_stops_the_running_container_uncharged_and_resume_runs_it_again(
    incluster: InCluster, node_http: HttpServer
) -> None:
    # Attempt 1 runs until stopped; attempt 2 ends at once.
    stage = reporter("work", node_http)
    stage["command"][-1] = stage["command"][-1].replace(
        'os.environ.get("SLEEP", "300")', '"300" if os.environ["PROCJOB_ATTEMPT"] == "1" else "0"'
    )
    name = incluster.create(job("suspend-real", stage, retry=NO_RETRY))
    running(incluster, name, "work")
    incluster.kube.patch_job(incluster.namespace, name, {"spec": {"suspend": True}})
    wait_for("the container's SIGTERM report", lambda: signalled(node_http, name), timeout=40)
    incluster.kube.patch_job(incluster.namespace, name, {"spec": {"suspend": False}})
    done = wait_for("resumed and done", finished(incluster.kube, incluster.namespace, name), timeout=90)
    assert reason(done) == "Succeeded", done["status"]
    status = stage_status(done, "work")
    assert status["chargedFailures"] == 0
    assert [a["state"] for a in status["attempts"]][-1] == "Succeeded"


def test_the_restricted_security_context_is_in_force_in_the_container(incluster: InCluster) -> None:
    done = incluster.run(job("security-real", python_stage("probe", INTROSPECT)))
    assert reason(done) == "Succeeded", done["status"]
    seen = stage_status(done, "probe")["outputs"]
    assert (seen["uid"], seen["gid"]) == (65532, 65532)
    assert seen["capEff"] == "0000000000000000"  # every capability dropped
    assert seen["noNewPrivs"] == "1"  # allowPrivilegeEscalation: false
    assert seen["seccomp"] == "2"  # RuntimeDefault: a filter
    assert seen["rootWritable"] is False  # readOnlyRootFilesystem, /tmp an emptyDir
