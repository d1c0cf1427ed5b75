"""Two replicas with leader election: one leads and writes, the other keeps its caches warm; when
the leader dies the standby takes over within lease + retry and the job finishes, with one pod per
(stage, attempt) and nothing lost. A leader shut down (SIGTERM, as in a rolling update) releases
the Lease, and the standby takes it at its next try.

The failover times are measured, not asserted (a loaded machine is slower, not wrong), with the
rig's short timings and with client-go's defaults, which the chart uses: SIGKILL or SIGTERM of the
leader -> the standby holds the Lease -> the standby's first status write. They are printed and
written to .rig/logs/failover.json; the README's HA section quotes them.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jobs import job, stage, when
from tests.e2e.test_audit import all_finished, assert_exact, drained, migrate, rows
from tests.support.kube import Kube, Watcher, condition, finished, wait_for
from tests.support.operator import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT / ".rig" / "logs" / "failover.json"

pytestmark = pytest.mark.rig

FAST = (
    "--leader-elect",
    "--leader-election-lease-seconds",
    "3",
    "--leader-election-renew-deadline-seconds",
    "2",
    "--leader-election-retry-seconds",
    "0.3",
)


def lease(kube: Kube, namespace: str) -> dict[str, Any]:
    found = kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/procjob-operator", ok404=True
    )
    return {} if found is None else dict(found.get("spec") or {})


def holder(kube: Kube, namespace: str) -> str | None:
    return lease(kube, namespace).get("holderIdentity")


def test_the_standby_takes_over_when_the_leader_dies(kube: Kube, namespace: str, operator: Any) -> None:
    args = (*FAST, "--leader-election-namespace", namespace)
    first = operator(namespace, *args, env={"POD_NAME": "replica-a"})
    second = operator(namespace, *args, env={"POD_NAME": "replica-b"})
    leader_id = wait_for("a leader", lambda: holder(kube, namespace))
    leader, standby = (first, second) if leader_id.startswith("replica-a") else (second, first)
    assert "leading" in leader.get("/readyz").text
    named = f"ready, standby ({leader_id} leads)"
    wait_for("the standby to name the leader", lambda: named in standby.get("/readyz").text, timeout=10)

    kube.create_job(namespace, job("failover", stage("a", rig={"run_seconds": 2}), stage("b", rig={"run_seconds": 2})))
    wait_for("the first pod", lambda: kube.pods(namespace) or None)
    leader.kill()
    killed_at = time.monotonic()
    new_leader = wait_for("the standby to lead", lambda: (h := holder(kube, namespace)) != leader_id and h, timeout=30)
    took = time.monotonic() - killed_at
    assert new_leader.startswith("replica-b" if leader is first else "replica-a")
    assert took < 3 + 0.3 + 5  # lease + retry, plus the API server's and this poll's slack
    done = wait_for("the job to finish under the new leader", finished(kube, namespace, "failover"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"
    attempts = [
        (p["metadata"]["labels"]["procjob.dev/stage"], p["metadata"]["labels"]["procjob.dev/attempt"])
        for p in kube.pods(namespace)
    ]
    assert len(attempts) == len(set(attempts))  # at most one pod per (stage, attempt)
    assert "leading" in standby.get("/readyz").text


def test_a_leader_shut_down_releases_the_lease_and_the_standby_takes_it(
    kube: Kube, namespace: str, operator: Any
) -> None:
    """SIGTERM (a rolling update replacing the leader's pod): it stops writing, gives the Lease up
    (holder ''), and the standby leads at its next try, not a lease later."""
    args = (*FAST, "--leader-election-lease-seconds", "30", "--leader-election-renew-deadline-seconds", "20")
    args = (*args, "--leader-election-namespace", namespace)
    first = operator(namespace, *args, env={"POD_NAME": "replica-a"})
    second = operator(namespace, *args, env={"POD_NAME": "replica-b"})
    leader_id = wait_for("a leader", lambda: holder(kube, namespace))
    leader, standby = (first, second) if leader_id.startswith("replica-a") else (second, first)
    leader.stop()
    assert leader.proc is not None
    assert leader.proc.returncode == 0
    assert "stops leading: released the Lease (shutting down)" in leader.log()
    # Not waiting out the 30s lease: the released Lease is free at once.
    new_leader = wait_for("the standby to lead", lambda: (h := holder(kube, namespace)) != leader_id and h, timeout=25)
    assert new_leader.startswith("replica-b" if leader is first else "replica-a")
    wait_for("the standby to say it leads", lambda: "leading" in standby.get("/readyz").text, timeout=10)
    kube.create_job(namespace, job("after-handover", stage("a")))
    done = wait_for("a job under the new leader", finished(kube, namespace, "after-handover"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"


def failover(kube: Kube, namespace: str, operator: Any, timings: tuple[str, ...], how: str) -> dict[str, float]:
    """Two replicas with these timings; a job whose first stage ends while the leader is gone; the
    leader killed (SIGKILL) or stopped (SIGTERM). Seconds from then to the standby holding the
    Lease and to its first status write; the job must still finish, one pod per (stage, attempt)."""
    args = (*timings, "--leader-election-namespace", namespace)
    first = operator(namespace, *args, env={"POD_NAME": "replica-a"})
    second = operator(namespace, *args, env={"POD_NAME": "replica-b"})
    leader_id = wait_for("a leader", lambda: holder(kube, namespace), timeout=60)
    leader: OperatorProcess = first if leader_id.startswith("replica-a") else second
    name = f"failover-{how.lower()}"
    kube.create_job(namespace, job(name, stage("a", rig={"run_seconds": 1}), stage("b"), podGC="Never"))
    wait_for("the first pod", lambda: kube.pods(namespace, f"procjob.dev/job={name}") or None)
    jobs = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs").start()
    try:
        t0 = time.time()
        leader.kill() if how == "SIGKILL" else leader.stop()
        wait_for("the standby to lead", lambda: (h := holder(kube, namespace)) != leader_id and h, timeout=60)
        leads = when(lease(kube, namespace)["acquireTime"]).timestamp() - t0  # its clock is ours (one machine)
        done = wait_for("the job to finish under the new leader", finished(kube, namespace, name), timeout=60)
    finally:
        seen = jobs.stop()
    assert condition(done)["reason"] == "Succeeded"
    pods = kube.pods(namespace, f"procjob.dev/job={name}")
    attempts = [
        (p["metadata"]["labels"]["procjob.dev/stage"], p["metadata"]["labels"]["procjob.dev/attempt"]) for p in pods
    ]
    assert sorted(attempts) == [("a", "1"), ("b", "1")]
    # After the takeover (the old leader's last writes may still be on their way when it dies).
    writes = [
        e.at - t0 for e in seen if e.type == "MODIFIED" and e.at - t0 >= leads and e.object["metadata"]["name"] == name
    ]
    return {"leads": round(leads, 2), "first_write": round(min(writes), 2)}


def record(key: str, result: dict[str, Any]) -> None:
    """Add one measurement to .rig/logs/failover.json (and print it)."""
    MEASURED.parent.mkdir(parents=True, exist_ok=True)
    found = json.loads(MEASURED.read_text()) if MEASURED.is_file() else {}
    found[key] = result
    MEASURED.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    print(f"\n[failover] {key}: {result}")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_failover_with_the_rigs_short_timings(kube: Kube, namespace: str, operator: Any, how: str) -> None:
    result = failover(kube, namespace, operator, FAST, how)
    record(f"lease 3s, renew deadline 2s, retry 0.3s; {how}", result)
    if how == "SIGKILL":
        # The standby waited out the lease from its last sight of a renewal (never earlier).
        assert result["leads"] >= 3 - 0.3


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_failover_with_client_gos_default_timings(kube: Kube, namespace: str, operator: Any, how: str) -> None:
    """The chart's defaults: lease 15s, renew deadline 10s, retry 2s (no flags: the operator's own)."""
    result = failover(kube, namespace, operator, ("--leader-elect",), how)
    record(f"lease 15s, renew deadline 10s, retry 2s (defaults, the chart's); {how}", result)
    if how == "SIGKILL":
        assert result["leads"] >= 15 - 2


@pytest.mark.postgres
def test_failovers_leave_no_gap_in_the_audit(kube: Kube, namespace: str, operator: Any, database: str) -> None:
    """Two failovers while jobs retry, a crash (SIGKILL) and a freeze past the lease (SIGSTOP, then
    SIGCONT: that replica exits): PostgreSQL holds every transition the jobs went through, once,
    1..N per job (the new leader relays what the old one had left in the status outboxes)."""
    migrate(database)
    watcher = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs").start()
    args = (*FAST, "--leader-election-namespace", namespace)
    env = {"PROCJOB_DATABASE_URL": database}
    first = operator(namespace, *args, env={**env, "POD_NAME": "replica-a"})
    second = operator(namespace, *args, env={**env, "POD_NAME": "replica-b"})
    leader_id = wait_for("a leader", lambda: holder(kube, namespace))
    crashed, survivor = (first, second) if leader_id.startswith("replica-a") else (second, first)
    for i in range(4):
        flaky = stage("flaky", rig={"fail_attempts": 2, "exit_code": 1, "run_seconds": 1})
        kube.create_job(namespace, job(f"audited-{i}", flaky, stage("steady", rig={"run_seconds": 3}),
                                       retry={"limit": 3, "delaysSeconds": [2]}))  # fmt: skip
    wait_for("transitions in PostgreSQL", lambda: rows(database))

    crashed.kill()
    second_id = wait_for("the standby to lead", lambda: (h := holder(kube, namespace)) != leader_id and h)
    crashed.start()  # back, as a standby
    assert survivor.proc is not None
    survivor.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for("the restarted replica to lead", lambda: (h := holder(kube, namespace)) != second_id and h)
    finally:
        survivor.proc.send_signal(signal.SIGCONT)
    assert wait_for("the frozen leader to exit", lambda: survivor.proc.poll() is not None) is True
    assert survivor.proc.returncode == 70

    wait_for("every job to finish", all_finished(kube, namespace, 4), timeout=120)
    wait_for("the outboxes to drain", drained(kube, namespace), timeout=30)
    watcher.stop()
    jobs = kube.jobs(namespace)
    assert all(condition(b)["reason"] == "Succeeded" for b in jobs)
    assert_exact(database, watcher, jobs)
