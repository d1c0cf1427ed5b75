"""Load levelling: at most N running jobs, in order (priority, namespaces in turn, FIFO).

An independent watcher records every version of every job; "running" means started
(status.startTime set) and not finished, as the operator documents it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.jobs import job, stage
from tests.support.kube import Kube, Seen, Watcher, condition, wait_for

pytestmark = pytest.mark.rig

LIMIT = 10


@pytest.fixture
def namespaces(kube: Kube, rig: Any) -> Iterator[list[str]]:
    made = [f"q-{uuid.uuid4().hex[:8]}-{lane}" for lane in ("a", "b", "c")]
    for name in made:
        kube.request("POST", "/api/v1/namespaces", json_body={"metadata": {"name": name}})
    for name in made:
        wait_for(
            f"{name}/default service account",
            lambda n=name: kube.request(  # type: ignore[misc]
                "GET", f"/api/v1/namespaces/{n}/serviceaccounts/default", ok404=True
            ),
        )
    yield made
    for name in made:
        kube.request("DELETE", f"/api/v1/namespaces/{name}", ok404=True)


def all_jobs_watcher(kube: Kube) -> Watcher:
    """One cluster-wide stream: its events come in the API server's order (separate streams per
    namespace would be merged by arrival time, which can reorder a finish and a start)."""
    return Watcher(kube, "/apis/procjob.dev/v1alpha1/processingjobs").start()


def create_all(kube: Kube, items: list[tuple[str, dict[str, Any]]]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: kube.create_job(item[0], item[1]), items))


def finished_count(kube: Kube, namespaces: list[str]) -> int:
    return sum(1 for ns in namespaces for b in kube.jobs(ns) if condition(b).get("status") in ("True", "False"))


def running_over_time(events: list[Seen]) -> tuple[int, dict[str, set[str]]]:
    """The most jobs ever running at once, and each job's set of observed startTimes."""
    running: set[str] = set()
    most = 0
    starts: dict[str, set[str]] = {}
    for seen in events:
        meta = seen.object["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        status = seen.object.get("status") or {}
        if status.get("startTime"):
            starts.setdefault(key, set()).add(status["startTime"])
        ended = condition(seen.object).get("status") in ("True", "False")
        if seen.type == "DELETED" or ended or not status.get("startTime"):
            running.discard(key)
        else:
            running.add(key)
        most = max(most, len(running))
    return most, starts


def first_start(events: list[Seen]) -> dict[str, float]:
    seen_at: dict[str, float] = {}
    for seen in events:
        meta = seen.object["metadata"]
        if (seen.object.get("status") or {}).get("startTime"):
            seen_at.setdefault(f"{meta['namespace']}/{meta['name']}", seen.at)
    return seen_at


def test_a_burst_of_300_never_runs_more_than_the_limit_even_across_a_restart(
    kube: Kube, namespaces: list[str], operator: Any
) -> None:
    args = [a for ns in namespaces[1:] for a in ("--namespace", ns)]
    op = operator(namespaces[0], *args, "--max-running-jobs", str(LIMIT))
    watcher = all_jobs_watcher(kube)
    sizes = {namespaces[0]: 200, namespaces[1]: 60, namespaces[2]: 40}
    items = [
        (ns, job(f"burst-{i:03d}", stage("work", rig={"run_seconds": 0.2}), podGC="OnCompletion"))
        for ns, count in sizes.items()
        for i in range(count)
    ]
    create_all(kube, items)
    wait_for("a third of the jobs to finish", lambda: finished_count(kube, namespaces) >= 100, timeout=180)
    op.kill()
    op.start()
    wait_for("all 300 jobs to finish", lambda: finished_count(kube, namespaces) == 300, timeout=300)
    events = [e for e in watcher.stop() if e.object["metadata"]["namespace"] in namespaces]

    most, starts = running_over_time(events)
    assert most <= LIMIT, f"the watcher saw {most} jobs running at once"
    assert most == LIMIT, "the limit was never reached: the test does not exercise the queue"
    restarted = {key: values for key, values in starts.items() if len(values) > 1}
    assert not restarted, f"jobs started twice: {restarted}"
    for ns in namespaces:
        for body in kube.jobs(ns):
            assert condition(body)["reason"] == "Succeeded", body["metadata"]["name"]
            assert body["status"]["attempts"] == 1
    metrics = op.metrics()
    assert "procjob_admissions_total" in metrics
    assert "procjob_queue_wait_seconds_bucket" in metrics


def expected_order(bodies: list[dict[str, Any]], running: dict[str, int] | None = None) -> list[str]:
    """The documented admission order of waiting jobs: higher priority first; within a priority, the
    next place goes to the namespace with the fewest jobs running or placed ahead (ties: oldest
    waiting job, then namespace name); within a namespace, first created first (creationTimestamp,
    then name: timestamps have 1 s steps). Written independently of procjob.core.queueing."""
    share = dict(running or {})
    lanes_by_priority: dict[int, dict[str, list[tuple[str, str]]]] = {}
    for body in bodies:
        meta = body["metadata"]
        lane = lanes_by_priority.setdefault(int(body["spec"].get("priority", 0)), {}).setdefault(meta["namespace"], [])
        lane.append((meta["creationTimestamp"], meta["name"]))
    order: list[str] = []
    for priority in sorted(lanes_by_priority, reverse=True):
        lanes = {ns: sorted(jobs) for ns, jobs in lanes_by_priority[priority].items()}
        while lanes:
            ns = min(lanes, key=lambda n: (share.get(n, 0), lanes[n][0][0], n))
            order.append(f"{ns}/{lanes[ns].pop(0)[1]}")
            share[ns] = share.get(ns, 0) + 1
            if not lanes[ns]:
                del lanes[ns]
    return order


def test_admission_follows_priority_fairness_and_fifo_and_cancel_frees_a_place(
    kube: Kube, namespaces: list[str], operator: Any
) -> None:
    a, b, c = namespaces
    plan: list[tuple[str, str, int]] = []
    plan += [(a, f"a-{i:02d}", 0) for i in range(20)]  # a's burst comes first...
    plan += [(b, f"b-{i:02d}", 0) for i in range(8)]  # ...b must not wait behind all of it
    plan += [(c, f"c-{i:02d}", 0) for i in range(6)]
    plan += [(c, f"urgent-{i:02d}", 5) for i in range(3)]  # priority beats age
    # Created while no operator runs: everything is queued at once. Each job runs long enough that
    # the queue stands still between rounds, so positions can be sampled exactly.
    for ns, name, priority in plan:
        kube.create_job(ns, job(name, stage("work", rig={"run_seconds": 8}), priority=priority))
    order = expected_order([body for ns in namespaces for body in kube.jobs(ns)])
    watcher = all_jobs_watcher(kube)
    args = [x for ns in namespaces[1:] for x in ("--namespace", ns)]
    operator(a, *args, "--max-running-jobs", str(LIMIT))

    # Positions, sampled while the queue stands still, are exactly right.
    first = order[:LIMIT]
    running: dict[str, int] = {}
    for key in first:
        running[key.split("/")[0]] = running.get(key.split("/")[0], 0) + 1
    bodies = [body for ns in namespaces for body in kube.jobs(ns)]
    waiting = expected_order(
        [b for b in bodies if f"{b['metadata']['namespace']}/{b['metadata']['name']}" not in first], running
    )

    def positions_settled() -> dict[str, int] | None:
        shown = {
            f"{ns}/{body['metadata']['name']}": ((body.get("status") or {}).get("queue") or {}).get("position")
            for ns in namespaces
            for body in kube.jobs(ns)
        }
        wanted = {key: i + 1 for i, key in enumerate(waiting)}
        wrong = {key: (shown.get(key), position) for key, position in wanted.items() if shown.get(key) != position}
        mismatches.append(wrong)
        return shown if not wrong else None

    mismatches: list[dict[str, tuple[int | None, int]]] = []
    try:
        wait_for("every queued job to show its exact position", positions_settled, timeout=8, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; (shown, wanted) where they differ: {mismatches[-1]}") from None

    # Cancel the last queued job: it ends Cancelled without ever starting.
    victim = waiting[-1]
    ns, name = victim.split("/")
    kube.patch_job(ns, name, {"spec": {"cancel": True}})
    done = wait_for(
        "the cancelled job", lambda: condition(kube.job(ns, name)).get("reason") == "Cancelled" and kube.job(ns, name)
    )
    assert done["status"].get("startTime") is None
    assert done["status"].get("queue") is None
    wait_for("everything to finish", lambda: finished_count(kube, namespaces) == len(plan), timeout=180)
    events = [e for e in watcher.stop() if e.object["metadata"]["namespace"] in namespaces]

    started = first_start(events)
    assert victim not in started
    admitted = sorted(started, key=started.__getitem__)
    assert set(admitted) == {key for key in order if key != victim}
    assert set(admitted[:LIMIT]) == set(first), "the first round is the head of the documented order"
    assert all(key.startswith(f"{c}/urgent") for key in order[:3]), "priority first"
    assert {f"{a}/a-00", f"{b}/b-00"} <= set(first), "fair shares: every namespace without priority jobs starts one"
    # FIFO within a namespace: jobs admitted in the same round may start in any order among
    # themselves, so a job must never start after one more than LIMIT places behind it.
    rank = {key: i for i, key in enumerate(order)}
    inversions = [
        (early, late)
        for i, early in enumerate(admitted)
        for late in admitted[i + 1 :]
        if early.split("/")[0] == late.split("/")[0] and rank[late] + LIMIT < rank[early]
    ]
    assert not inversions, f"admitted far out of order: {inversions[:5]}"
    most, _ = running_over_time(events)
    assert most <= LIMIT


def test_retried_jobs_queue_like_new_ones(kube: Kube, namespace: str, operator: Any) -> None:
    """`kubectl pj retry` (the procjob.dev/retry annotation) on many failed jobs at once never starts
    more than the limit: the retried jobs wait in the queue like new ones."""
    watcher = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs").start()
    operator(namespace, "--max-running-jobs", "2")
    names = [f"f{i}" for i in range(5)]
    for name in names:
        failing = stage("a", rig={"exit_code": 1, "run_seconds": 1})
        kube.create_job(namespace, job(name, failing, retry={"limit": 0}))
    wait_for("every job to fail", lambda: finished_count(kube, [namespace]) == len(names), timeout=90)
    for name in names:
        kube.patch_job(namespace, name, {"metadata": {"annotations": {"procjob.dev/retry": "again"}}})

    def ran_again(name: str) -> bool:
        body = kube.job(namespace, name) or {}
        retried = (body.get("status") or {}).get("lastRetryRequest") == "again"
        return retried and condition(body).get("status") in ("True", "False")

    wait_for("every retried job to run again and end", lambda: all(ran_again(n) for n in names), timeout=120)
    most, starts = running_over_time(watcher.stop())
    assert most <= 2, f"{most} jobs ran at once with --max-running-jobs 2"
    assert all(len(starts[f"{namespace}/{n}"]) == 2 for n in names)  # each started again after its retry
