"""The rig itself: a real control plane whose kwok pods obey the rig's annotations.

These tests pin down the behaviour other tests and the benchmarks rely on (hack/rig/README.md):
exit codes, per-attempt failures, waiting reasons, termination messages, run time, garbage
collection and the Job controller. All traffic goes to the apiserver on 127.0.0.1; kwok's fake pod
and node IPs are never dialled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.support.rig import Rig

pytestmark = pytest.mark.rig

IMAGE = "registry.invalid/procjob/rig-test:1"  # never pulled: kwok runs nothing
TERMINAL = ("Succeeded", "Failed")


def pod(
    name: str,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A minimal worker-like pod; no tolerations or node selectors, as the operator's pods have none."""
    meta: dict[str, Any] = {"name": name, "annotations": annotations or {}, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE}]},
    }


def get_pod(rig: Rig, ns: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = rig.kubectl_json("get", "pod", name, "-n", ns)
    return result


def wait_pod(
    rig: Rig, ns: str, name: str, ok: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the pod until `ok` holds; fail at once if it ends in a terminal phase that is not ok."""
    deadline = time.monotonic() + timeout
    while True:
        obj = get_pod(rig, ns, name)
        if ok(obj):
            return obj
        phase = obj.get("status", {}).get("phase")
        if phase in TERMINAL:
            pytest.fail(f"pod {name} ended {phase} instead of {what}: {json.dumps(obj['status'])}")
        if time.monotonic() > deadline:
            pytest.fail(f"pod {name} not {what} within {timeout}s: {json.dumps(obj.get('status'))}")
        time.sleep(0.2)


def wait_phase(rig: Rig, ns: str, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_pod(rig, ns, name, lambda o: o.get("status", {}).get("phase") == phase, phase, timeout)


def terminated(obj: dict[str, Any]) -> dict[str, Any]:
    """The single container's terminated state."""
    statuses = obj["status"]["containerStatuses"]
    assert len(statuses) == 1
    state: dict[str, Any] = statuses[0]["state"]["terminated"]
    return state


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def quantity(value: str) -> int:
    """A whole-number Kubernetes quantity ("1k" is how the apiserver writes 1000)."""
    factors = {"k": 10**3, "M": 10**6, "G": 10**9}
    if value[-1:] in factors:
        return int(value[:-1]) * factors[value[-1]]
    return int(value)


def test_apiserver_readyz(rig: Rig) -> None:
    assert rig.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    assert rig.kubeconfig.is_file()
    assert "127.0.0.1" in rig.kubectl("config", "view", "-o", "jsonpath={.clusters[0].cluster.server}").stdout


def test_server_version_is_1_35(rig: Rig) -> None:
    version = json.loads(rig.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.35."), version
    assert version["clientVersion"]["gitVersion"].startswith("v1.35."), version


def test_kwok_node_is_ready_untainted_and_roomy(rig: Rig) -> None:
    nodes = rig.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
    assert nodes, "no kwok nodes"
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", node["metadata"]["name"]
        assert not node["spec"].get("taints"), node["spec"]
        assert quantity(node["status"]["allocatable"]["pods"]) >= 1000
        assert quantity(node["status"]["allocatable"]["cpu"]) >= 8
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_plain_pod_runs_then_succeeds_with_real_looking_status(rig: Rig, namespace: str) -> None:
    rig.apply(pod("plain"), namespace)
    obj = wait_phase(rig, namespace, "plain", "Succeeded")

    status = obj["status"]
    assert obj["spec"]["nodeName"].startswith("rig-node-")
    assert status["startTime"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["PodScheduled"] == "True"
    assert conditions["Initialized"] == "True"
    assert conditions["Ready"] == "False"  # a completed pod is no longer ready
    assert conditions["ContainersReady"] == "False"
    (cs,) = status["containerStatuses"]
    assert cs["name"] == "main"
    assert cs["image"] == IMAGE
    assert cs["imageID"].startswith(IMAGE + "@sha256:")
    assert cs["restartCount"] == 0
    assert cs["ready"] is False
    term = cs["state"]["terminated"]
    assert term["exitCode"] == 0
    assert term["reason"] == "Completed"
    assert ts(term["startedAt"]) <= ts(term["finishedAt"])


def test_exit_code_annotation_fails_the_pod(rig: Rig, namespace: str) -> None:
    rig.apply(pod("three", {"rig.procjob.dev/exit-code": "3"}), namespace)
    obj = wait_phase(rig, namespace, "three", "Failed")
    term = terminated(obj)
    assert term["exitCode"] == 3
    assert term["reason"] == "Error"


def test_terminated_reason_annotation_overrides_error(rig: Rig, namespace: str) -> None:
    annotations = {"rig.procjob.dev/exit-code": "137", "rig.procjob.dev/terminated-reason": "OOMKilled"}
    rig.apply(pod("oom", annotations), namespace)
    term = terminated(wait_phase(rig, namespace, "oom", "Failed"))
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")


def test_fail_attempts_fail_up_to_k_then_succeed(rig: Rig, namespace: str) -> None:
    fail2 = {"rig.procjob.dev/fail-attempts": "2"}
    rig.apply(pod("a1", fail2, {"procjob.dev/attempt": "1"}), namespace)
    rig.apply(pod("a2", {**fail2, "rig.procjob.dev/exit-code": "4"}, {"procjob.dev/attempt": "2"}), namespace)
    rig.apply(pod("a3", {**fail2, "rig.procjob.dev/exit-code": "4"}, {"procjob.dev/attempt": "3"}), namespace)

    assert terminated(wait_phase(rig, namespace, "a1", "Failed"))["exitCode"] == 1  # no code given -> 1
    assert terminated(wait_phase(rig, namespace, "a2", "Failed"))["exitCode"] == 4  # attempt == K fails
    term = terminated(wait_phase(rig, namespace, "a3", "Succeeded"))  # attempt > K succeeds
    assert (term["exitCode"], term["reason"]) == (0, "Completed")


def test_waiting_reason_keeps_the_pod_pending(rig: Rig, namespace: str) -> None:
    rig.apply(pod("stuck", {"rig.procjob.dev/waiting-reason": "ImagePullBackOff"}), namespace)

    def waiting(o: dict[str, Any]) -> bool:
        statuses = o.get("status", {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0]["state"].get("waiting", {}).get("reason") == "ImagePullBackOff"

    wait_pod(rig, namespace, "stuck", waiting, "waiting with ImagePullBackOff")
    # A pod created afterwards runs to completion; the stuck one has still not run.
    rig.apply(pod("after"), namespace)
    wait_phase(rig, namespace, "after", "Succeeded")
    obj = get_pod(rig, namespace, "stuck")
    assert obj["status"]["phase"] == "Pending"
    (cs,) = obj["status"]["containerStatuses"]
    assert set(cs["state"]) == {"waiting"}
    assert cs["ready"] is False


def test_termination_message_is_copied(rig: Rig, namespace: str) -> None:
    message = json.dumps({"rows": 3, "uri": "s3://bucket/out/part-0"})
    rig.apply(pod("msg", {"rig.procjob.dev/termination-message": message}), namespace)
    term = terminated(wait_phase(rig, namespace, "msg", "Succeeded"))
    assert json.loads(term["message"]) == {"rows": 3, "uri": "s3://bucket/out/part-0"}


def test_run_seconds_delays_the_end(rig: Rig, namespace: str) -> None:
    rig.apply(pod("slow", {"rig.procjob.dev/run-seconds": "3"}), namespace)
    wait_phase(rig, namespace, "slow", "Running")
    rig.apply(pod("fast"), namespace)
    wait_phase(rig, namespace, "fast", "Succeeded")
    # The pod started earlier is still running after a later plain pod has finished ...
    assert get_pod(rig, namespace, "slow")["status"]["phase"] == "Running"
    # ... and ends later; its recorded run time spans the requested seconds (timestamps have
    # whole-second precision, hence the margin of one).
    term = terminated(wait_phase(rig, namespace, "slow", "Succeeded", timeout=30))
    assert (ts(term["finishedAt"]) - ts(term["startedAt"])).total_seconds() >= 2


def test_deleting_a_running_pod_is_prompt(rig: Rig, namespace: str) -> None:
    rig.apply(pod("long", {"rig.procjob.dev/run-seconds": "600"}), namespace)
    wait_phase(rig, namespace, "long", "Running")
    rig.kubectl("delete", "pod", "long", "-n", namespace, "--wait=true", "--timeout=30s", timeout=40)
    gone = rig.kubectl("get", "pod", "long", "-n", namespace, "--ignore-not-found", "-o", "name")
    assert gone.stdout.strip() == ""


def test_deleting_the_owner_garbage_collects_the_pod(rig: Rig, namespace: str) -> None:
    rig.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = rig.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    rig.apply(pod("owned", {"rig.procjob.dev/run-seconds": "600"}, owner=owner), namespace)
    wait_phase(rig, namespace, "owned", "Running")

    rig.kubectl("delete", "configmap", "owner", "-n", namespace)
    rig.kubectl("wait", "--for=delete", "pod/owned", "-n", namespace, "--timeout=60s", timeout=70)


def test_job_controller_completes_a_job(rig: Rig, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE}]}},
        },
    }
    rig.apply(job, namespace)
    rig.kubectl("wait", "--for=condition=Complete", "job/job", "-n", namespace, "--timeout=60s", timeout=70)
    assert rig.kubectl_json("get", "job", "job", "-n", namespace)["status"]["succeeded"] == 1
