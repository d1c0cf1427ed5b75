"""Fan-out end to end (forEach): the operator process, the rig's API server, pods ended by kwok or, where a
test needs each item to answer differently, by `ItemKubelet` — a stand-in kubelet in the test that ends
the pods kwok leaves waiting (rig.procjob.dev/waiting-reason), writing each item's own termination
message. Parallelism, the pod caps and the backoff are judged from an independent watch of the pods.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.jobs import job, stage, stage_status, when
from tests.support.kube import Kube, Seen, Watcher, condition, finished, wait_for
from tests.support.rig import Rig

pytestmark = pytest.mark.rig

HELD = {"waiting_reason": "HeldByTest"}  # kwok leaves these pods Pending: ItemKubelet ends them
Outcome = Callable[[dict[str, Any]], tuple[int, str]]


class ItemKubelet:
    """Ends each held pod of `stage` about `after` seconds after it first saw it, as `outcome(pod)` says
    (exit code, termination message); records when it said each one finished (`finishedAt`, in whole
    seconds like a kubelet's: the operator counts a backoff from it)."""

    def __init__(self, rig: Rig, namespace: str, stage_name: str, outcome: Outcome, after: float = 0.4) -> None:
        self.kube = Kube(rig.kubeconfig)
        self.namespace, self.stage, self.outcome, self.after = namespace, stage_name, outcome, after
        self.first_seen: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ItemKubelet:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.kube.close()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            pods = self.kube.pods(self.namespace, f"procjob.dev/stage={self.stage}")
            now = time.time()
            for pod in pods:
                name = pod["metadata"]["name"]
                phase = (pod.get("status") or {}).get("phase")
                if name in self.ended or phase != "Pending" or pod["metadata"].get("deletionTimestamp"):
                    continue
                if now - self.first_seen.setdefault(name, now) >= self.after:
                    self._end(pod)

    def _end(self, pod: dict[str, Any]) -> None:
        code, message = self.outcome(pod)
        name = pod["metadata"]["name"]
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "main",
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {**terminated, "startedAt": stamp, "finishedAt": stamp}},
                }
            ],
        }
        self.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{self.namespace}/pods/{name}/status",
            json_body={"status": status},
            content_type="application/merge-patch+json",
        )
        self.ended[name] = now.timestamp()


def item_of(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["labels"]["procjob.dev/item"])


def attempt_of(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["labels"]["procjob.dev/attempt"])


def pod_watch(kube: Kube, namespace: str) -> Watcher:
    return Watcher(kube, f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": "procjob.dev/job-uid"}).start()


def most_live(events: list[Seen], key: Callable[[dict[str, Any]], str | None] = lambda pod: "all") -> dict[str, int]:
    """The most pods alive at once (created, not yet finished or being deleted), per `key(pod)`."""
    live: dict[str, set[str]] = defaultdict(set)
    peak: dict[str, int] = defaultdict(int)
    for seen in events:
        pod, group = seen.object, key(seen.object)
        if group is None:
            continue
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase")
        gone = seen.type == "DELETED" or phase in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp")
        if gone:
            live[group].discard(name)
        else:
            live[group].add(name)
        peak[group] = max(peak[group], len(live[group]))
    return dict(peak)


def test_200_items_from_an_upstream_output_with_parallelism_20(
    kube: Kube, namespace: str, operator: Any, rig: Rig
) -> None:
    operator(namespace)
    pods = pod_watch(kube, namespace)
    keys = list(range(200))
    manifest = job(
        "fan200",
        stage("list", rig={"termination_message": json.dumps({"keys": keys})}),
        stage("fan", forEach="{{ stages.list.outputs.keys }}", parallelism=20, args=["{{ item }}"], rig=HELD),
        stage("join", args=["{{ stages.fan.outputs.n }}"]),
        podGC="Never",
    )

    def triple(pod: dict[str, Any]) -> tuple[int, str]:
        return 0, json.dumps({"n": 3 * int(pod["spec"]["containers"][0]["args"][0])})

    with ItemKubelet(rig, namespace, "fan", triple):
        kube.create_job(namespace, manifest)
        done = wait_for("the fan-out to finish", finished(kube, namespace, "fan200"), timeout=240)
    events = pods.stop()
    assert condition(done)["reason"] == "Succeeded", condition(done)
    fan = stage_status(done, "fan")
    assert fan["outputs"] == {"n": [3 * k for k in keys]}
    assert (fan["items"]["total"], fan["items"]["succeeded"], fan["items"]["failed"]) == (200, 200, 0)
    assert fan["attemptCount"] == 200
    assert done["status"]["progress"] == "3/3 200/200"
    join = next(p for p in kube.pods(namespace) if p["metadata"]["labels"]["procjob.dev/stage"] == "join")
    assert json.loads(join["spec"]["containers"][0]["args"][0]) == [3 * k for k in keys]

    def stage_of(pod: dict[str, Any]) -> str:
        return str(pod["metadata"]["labels"]["procjob.dev/stage"])

    assert len({s.object["metadata"]["name"] for s in events if stage_of(s.object) == "fan"}) == 200
    peak = most_live(events, lambda pod: "fan" if stage_of(pod) == "fan" else None)
    assert peak["fan"] == 20, f"at most 20 live pods at once, and 20 reached: {peak}"


def test_a_failing_item_is_retried_with_backoff_while_its_siblings_go_on(
    kube: Kube, namespace: str, operator: Any, rig: Rig
) -> None:
    operator(namespace)
    pods = pod_watch(kube, namespace)
    delay = 3
    manifest = job(
        "flaky-item",
        stage("fan", forEach=list(range(12)), parallelism=3, args=["{{ item }}"], rig=HELD),
        retry={"limit": 2, "delaysSeconds": [delay]},
        podGC="Never",
    )

    def item_4_fails_once(pod: dict[str, Any]) -> tuple[int, str]:
        if item_of(pod) == 4 and attempt_of(pod) == 1:
            return 1, "item 4 could not be processed"
        return 0, json.dumps({"item": item_of(pod), "attempt": attempt_of(pod)})

    with ItemKubelet(rig, namespace, "fan", item_4_fails_once) as kubelet:
        kube.create_job(namespace, manifest)
        done = wait_for("the fan-out to finish", finished(kube, namespace, "flaky-item"), timeout=120)
    events = pods.stop()
    assert condition(done)["reason"] == "Succeeded", condition(done)
    outputs = stage_status(done, "fan")["outputs"]
    assert outputs["item"] == list(range(12))
    assert outputs["attempt"] == [2 if i == 4 else 1 for i in range(12)]

    first, second = "flaky-item-fan-i4-a1", "flaky-item-fan-i4-a2"
    failed_at = next(t for name, t in kubelet.ended.items() if name.startswith(first))
    added = {s.object["metadata"]["name"]: s.at for s in events if s.type == "ADDED"}
    retried_at = next(t for name, t in added.items() if name.startswith(second))
    assert retried_at - failed_at >= delay, f"the retry came {retried_at - failed_at:.2f}s after the failure"
    siblings = [n for n, t in added.items() if failed_at < t < retried_at and not n.startswith("flaky-item-fan-i4-")]
    assert siblings, "no other item started while item 4 waited for its retry"


def test_sigkill_mid_fan_out_loses_nothing_and_duplicates_nothing(kube: Kube, namespace: str, operator: Any) -> None:
    """Every item fails its first attempt (kwok's fail-attempts) and succeeds its second after a 3 s backoff;
    the operator is killed twice mid-run. One pod per (item, attempt), every item's two attempts kept,
    every backoff waited in full (pod timestamps are whole seconds, floored alike, so the gap holds)."""
    op = operator(namespace)
    pods = pod_watch(kube, namespace)
    items, delay = 40, 3
    kube.create_job(
        namespace,
        job(
            "crashy-fan",
            stage("fan", forEach=list(range(items)), parallelism=8, rig={"fail_attempts": 1, "run_seconds": 0.5}),
            retry={"limit": 2, "delaysSeconds": [delay]},
            podGC="Never",
        ),
    )

    def waiting_items() -> bool:
        body = kube.job(namespace, "crashy-fan") or {}
        fan = next(iter((body.get("status") or {}).get("stages") or []), {}).get("items") or {}
        return any(i.get("state") == "BackoffWaiting" for i in fan.get("inFlight") or [])

    wait_for("an item waiting for its retry", waiting_items, timeout=60)
    op.kill()
    op.start()
    wait_for("more items done", lambda: (_items(kube, namespace).get("succeeded") or 0) >= items // 3, timeout=120)
    op.kill()
    op.start()
    done = wait_for("the fan-out to finish", finished(kube, namespace, "crashy-fan"), timeout=240)
    events = pods.stop()
    assert condition(done)["reason"] == "Succeeded", condition(done)

    uids: dict[str, set[str]] = defaultdict(set)
    for seen in events:
        uids[seen.object["metadata"]["name"]].add(seen.object["metadata"]["uid"])
    assert not {n: u for n, u in uids.items() if len(u) > 1}, "more than one pod for an (item, attempt)"
    final = {p["metadata"]["name"]: p for p in kube.pods(namespace)}
    by_item: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for pod in final.values():
        by_item[item_of(pod)][attempt_of(pod)] = pod
    assert sorted(by_item) == list(range(items)), "an item was lost"
    for item, attempts in by_item.items():
        assert sorted(attempts) == [1, 2], f"item {item}: attempts {sorted(attempts)}"
        ended = attempts[1]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
        gap = (when(attempts[2]["metadata"]["creationTimestamp"]) - when(ended)).total_seconds()
        assert gap >= delay, f"item {item}: backoff reset ({gap}s < {delay}s)"
    assert _items(kube, namespace)["succeeded"] == items
    assert op.starts == 3


def _items(kube: Kube, namespace: str) -> dict[str, Any]:
    body = kube.job(namespace, "crashy-fan") or {}
    stages = (body.get("status") or {}).get("stages") or [{}]
    return dict(stages[0].get("items") or {})


def test_the_queue_and_the_pod_caps_bound_fan_out_jobs(kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace, "--max-running-jobs", "2", "--max-running-pods", "6", "--max-running-pods-per-job", "4")
    pods = pod_watch(kube, namespace)
    names = [f"burst-{i}" for i in range(5)]
    for name in names:
        kube.create_job(
            namespace,
            job(name, stage("fan", forEach=list(range(8)), parallelism=8, rig={"run_seconds": 1}), podGC="Never"),
        )

    def all_done() -> list[dict[str, Any]] | None:
        bodies = kube.jobs(namespace)
        return bodies if sum(condition(b).get("status") == "True" for b in bodies) == len(names) else None

    bodies = wait_for("every fan-out job to finish", all_done, timeout=240)
    events = pods.stop()
    assert all(stage_status(b, "fan")["items"]["succeeded"] == 8 for b in bodies)
    assert most_live(events)["all"] <= 6, "more pods at once than --max-running-pods"
    per_job = most_live(events, lambda pod: pod["metadata"]["labels"]["procjob.dev/job"])
    assert max(per_job.values()) <= 4, f"more pods of one job than --max-running-pods-per-job: {per_job}"
    assert most_live(events)["all"] == 6, "the total cap was never reached: the test proves nothing"
    spans = sorted((when(b["status"]["startTime"]), when(b["status"]["completionTime"])) for b in bodies)
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2, "more jobs running at once than --max-running-jobs"
