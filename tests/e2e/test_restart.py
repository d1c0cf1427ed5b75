"""Crash safety: the operator SIGKILLed mid-run and restarted, twice.

Invariants checked against an independent pod watcher and the API server:
no second pod for any (job, stage, attempt); no attempt lost; backoff waits not reset; every job
reaches the right end.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from tests.e2e.jobs import job, stage, stage_status, when
from tests.support.kube import Kube, Watcher, condition, wait_for

pytestmark = pytest.mark.rig

JOBS = 6
DELAYS = [2, 3]


def _any_stage_in(kube: Kube, namespace: str, state: str) -> bool:
    for body in kube.jobs(namespace):
        for item in (body.get("status") or {}).get("stages") or []:
            if item.get("state") == state:
                return True
    return False


def test_sigkill_and_restart_lose_nothing_and_duplicate_nothing(kube: Kube, namespace: str, operator: Any) -> None:
    op = operator(namespace)
    pods = Watcher(kube, f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": "procjob.dev/job-uid"}).start()
    for i in range(JOBS):
        kube.create_job(
            namespace,
            job(
                f"crashy-{i}",
                stage("flaky", rig={"fail_attempts": 2, "exit_code": 1}),
                stage("steady", rig={"run_seconds": 1}),
                stage("last"),
                retry={"limit": 3, "delaysSeconds": DELAYS},
                podGC="Never",
            ),
        )

    wait_for("a job waiting for a retry", lambda: _any_stage_in(kube, namespace, "BackoffWaiting"), timeout=60)
    op.kill()
    op.start()
    wait_for(
        "a job in its second stage",
        lambda: any((b.get("status") or {}).get("currentStage") == "steady" for b in kube.jobs(namespace)),
        timeout=60,
    )
    op.kill()
    op.start()

    def all_done() -> list[dict[str, Any]] | None:
        bodies = kube.jobs(namespace)
        done = [b for b in bodies if condition(b).get("status") in ("True", "False")]
        return bodies if len(done) == JOBS else None

    bodies = wait_for("every job to finish", all_done, timeout=120)
    events = pods.stop()

    uids_by_name: dict[str, set[str]] = defaultdict(set)
    for seen in events:
        uids_by_name[seen.object["metadata"]["name"]].add(seen.object["metadata"]["uid"])
    duplicated = {name: uids for name, uids in uids_by_name.items() if len(uids) > 1}
    assert not duplicated, f"more than one pod for an attempt: {duplicated}"

    for body in bodies:
        name = body["metadata"]["name"]
        assert condition(body)["reason"] == "Succeeded", f"{name}: {condition(body)}"
        flaky = stage_status(body, "flaky")
        assert [a["state"] for a in flaky["attempts"]] == ["Failed", "Failed", "Succeeded"], (
            name,
            [
                (
                    a["attempt"],
                    a["state"],
                    a.get("reason"),
                    a.get("exitCode"),
                    a.get("message"),
                    a.get("createTime"),
                    a.get("finishTime"),
                )
                for a in flaky["attempts"]
            ],
        )
        assert flaky["chargedFailures"] == 2
        for previous, following, delay in zip(flaky["attempts"][:-1], flaky["attempts"][1:], DELAYS, strict=True):
            gap = (when(following["createTime"]) - when(previous["finishTime"])).total_seconds()
            assert gap >= delay - 0.001, f"{name}: backoff reset ({gap:.3f}s < {delay}s)"
        assert stage_status(body, "steady")["attemptCount"] == 1
        assert stage_status(body, "last")["attemptCount"] == 1
        uid = body["metadata"]["uid"]
        mine = [n for n in uids_by_name if uid.replace("-", "")[:8] in n]
        assert len(mine) == 5, f"{name}: pods {sorted(mine)}"
    assert op.starts == 3
