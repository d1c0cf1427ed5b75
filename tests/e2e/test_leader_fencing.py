"""Fencing: a leader frozen past its lease (SIGSTOP) and thawed (SIGCONT) writes nothing more.

The chaos case of issue #17: the leader is stopped while a job's backoff timer runs; the standby
takes over and makes progress; then the standby is frozen too, the backoff runs out, and the old
leader is thawed. Its timer fires at once, with a cached copy of the job that is still current
(nobody wrote the job since) — a reconcile would start the next attempt, and its status write would
succeed. So with both frozen nothing but the old leader can write in the namespace, and the check
is the API server's own view: no job, pod or operator Event changed between the thaw and the old
leader's exit. It must notice by its own clock that its lease ran out and exit (70), as client-go
does. The standby, thawed after it, exits the same way; a fresh operator then starts the attempt
that was due (the write was there to be made).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.jobs import job, stage, stage_status, when
from tests.e2e.test_leader import FAST, holder
from tests.support.kube import Kube, condition, finished, wait_for
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.rig

BACKOFF = 15  # seconds: long enough for the takeover and the standby's progress before both freeze
LOST_LEADERSHIP = 70  # the exit code of a replica that stopped leading (assembly._stop_now)


def snapshot(kube: Kube, namespace: str) -> dict[str, Any]:
    """What a write in the namespace would change: jobs and pods (resourceVersions), the operator's Events."""
    events = kube.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return {
        "jobs": {j["metadata"]["name"]: j["metadata"]["resourceVersion"] for j in kube.jobs(namespace)},
        "pods": {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in kube.pods(namespace)},
        "events": sorted(
            (e["metadata"]["name"], e["metadata"]["resourceVersion"])
            for e in events
            if e.get("reportingComponent") == "procjob-operator"
        ),
    }


def freeze(proc: OperatorProcess) -> None:
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGSTOP)


def thaw(proc: OperatorProcess) -> None:
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGCONT)


def exit_code(proc: OperatorProcess) -> int | None:
    assert proc.proc is not None
    return proc.proc.poll()


@pytest.fixture
def thawed_at_teardown() -> Iterator[list[OperatorProcess]]:
    """Processes a test froze: thawed at the end so that the fixture's SIGTERM can stop them."""
    frozen: list[OperatorProcess] = []
    yield frozen
    for proc in frozen:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.send_signal(signal.SIGCONT)


def backoff_waiting(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    body = kube.job(namespace, name)
    stages = ((body or {}).get("status") or {}).get("stages") or []
    return body if stages and stages[0].get("state") == "BackoffWaiting" else None


def test_a_leader_thawed_after_its_lease_ran_out_writes_nothing_and_exits(
    kube: Kube, namespace: str, operator: Any, thawed_at_teardown: list[OperatorProcess]
) -> None:
    args = (*FAST, "--leader-election-namespace", namespace)
    first = operator(namespace, *args, env={"POD_NAME": "replica-a"})
    second = operator(namespace, *args, env={"POD_NAME": "replica-b"})
    leader_id = wait_for("a leader", lambda: holder(kube, namespace))
    old, standby = (first, second) if leader_id.startswith("replica-a") else (second, first)
    thawed_at_teardown += [old, standby]

    # A job whose first attempt fails: the leader writes BackoffWaiting and sets a timer.
    kube.create_job(
        namespace,
        job("fenced", stage("work", rig={"fail_attempts": 1, "exit_code": 1}), retry={"delaysSeconds": [BACKOFF]}),
    )
    waiting = wait_for("the first attempt to fail", lambda: backoff_waiting(kube, namespace, "fenced"), timeout=60)
    next_attempt = when(stage_status(waiting, "work")["nextAttemptTime"])
    freeze(old)

    # The standby takes over and makes progress of its own.
    new_id = wait_for("the standby to lead", lambda: (h := holder(kube, namespace)) != leader_id and h, timeout=30)
    assert new_id.startswith("replica-b" if old is first else "replica-a")
    kube.create_job(namespace, job("progress", stage("quick")))
    done = wait_for("the new leader to run a job", finished(kube, namespace, "progress"), timeout=30)
    assert condition(done)["reason"] == "Succeeded"

    # Freeze the new leader too: from now on only the old leader could write here.
    freeze(standby)
    before = snapshot(kube, namespace)
    still = before["jobs"]["fenced"]
    assert stage_status(kube.job(namespace, "fenced") or {}, "work")["state"] == "BackoffWaiting", (
        f"the backoff of {BACKOFF}s ran out before both replicas were frozen: the machine is too slow for this test"
    )
    wait_for(
        "the backoff to run out",
        lambda: datetime.now(UTC) > next_attempt + timedelta(seconds=1),
        timeout=BACKOFF + 30,
    )

    thaw(old)
    code = wait_for("the old leader to exit", lambda: exit_code(old) is not None and exit_code(old), timeout=30)
    assert code == LOST_LEADERSHIP, old.log()[-3000:]
    after = snapshot(kube, namespace)
    assert after == before, "the old leader wrote after it lost the lease"
    assert "stops leading" in old.log()

    # The frozen new leader, thawed, is past its own deadline too: it exits without writing.
    thaw(standby)
    code = wait_for("the frozen new leader to exit", lambda: exit_code(standby) is not None and exit_code(standby))
    assert code == LOST_LEADERSHIP, standby.log()[-3000:]
    assert snapshot(kube, namespace) == before, "the thawed new leader wrote after its deadline"

    # There was a write to make: a fresh replica makes it (the next attempt) and finishes the job.
    operator(namespace, *args, env={"POD_NAME": "replica-c"})
    done = wait_for("the job to finish under a fresh leader", finished(kube, namespace, "fenced"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"
    assert [a["attempt"] for a in stage_status(done, "work")["attempts"]] == [1, 2]
    assert (kube.job(namespace, "fenced") or {})["metadata"]["resourceVersion"] != still
