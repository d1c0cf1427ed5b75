"""Pod templates end to end: the operator creates each stage's pod with the job's template and the
stage's merged over it, the real scheduler places it on a kwok node, and the job succeeds; a namespace
the operator lists for baseline may run as root while any other is refused before a pod exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.jobs import job, stage
from tests.support.kube import Kube, condition, finished, wait_for
from tests.support.rig import Rig

pytestmark = pytest.mark.rig


@pytest.fixture
def cluster_objects(rig: Rig, namespace: str) -> Iterator[str]:
    """A PriorityClass, a RuntimeClass and a PersistentVolume pre-bound to the PVC `inputs` of the test's
    namespace, named after it; deleted afterwards. Yields their name."""
    name = f"pt-{namespace}"
    objects = [
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": 10},
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": "runc"},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "hostPath": {"path": f"/srv/{name}"},  # never mounted: kwok plays the kubelet
                "claimRef": {"namespace": namespace, "name": "inputs"},
            },
        },
    ]
    try:
        for body in objects:
            rig.apply(body)
        yield name
    finally:
        for body in objects:
            rig.kubectl("delete", body["kind"].lower(), name, "--wait=false", "--ignore-not-found", check=False)


def namespaced_objects(pv: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a.conf": "x=1"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "t"}},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "inputs"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]


GPU = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
SPOT = {"key": "example.com/spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
ON_LINUX = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
            ]
        }
    }
}
SPREAD = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
PROJECTED = {
    "name": "identity",
    "projected": {
        "sources": [
            {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
            {"configMap": {"name": "settings", "items": [{"key": "a.conf", "path": "a.conf"}]}},
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        ]
    },
}


def template(classes: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"team": "media"}, "annotations": {"example.com/owner": "media"}},
        "spec": {
            "nodeSelector": {"type": "kwok"},
            "tolerations": [GPU],
            "affinity": ON_LINUX,
            "topologySpreadConstraints": [SPREAD],
            "priorityClassName": classes,
            "runtimeClassName": classes,
            "imagePullSecrets": [{"name": "registry"}],
            "volumes": [
                {"name": "inputs", "persistentVolumeClaim": {"claimName": "inputs", "readOnly": True}},
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}},
                PROJECTED,
            ],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
        },
    }


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_pods_are_created_with_the_templates_fields_and_run(
    kube: Kube, rig: Rig, namespace: str, operator: Any, cluster_objects: str
) -> None:
    for body in namespaced_objects(cluster_objects):
        rig.apply(body, namespace=namespace)
    wait_for(
        "the claim to be bound",
        lambda: rig.kubectl_json("get", "pvc", "inputs", "-n", namespace).get("status", {}).get("phase") == "Bound",
    )
    operator(namespace, "--allowed-service-accounts", "default")
    manifest = job(
        "templated",
        stage(
            "read",
            volumeMounts=[
                {"name": "inputs", "mountPath": "/data", "readOnly": True},
                {"name": "settings", "mountPath": "/etc/app"},
                {"name": "creds", "mountPath": "/etc/creds"},
            ],
            securityContext={"readOnlyRootFilesystem": False},
        ),
        stage(
            "write",
            podTemplate={"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [SPOT]}},
            volumeMounts=[{"name": "scratch", "mountPath": "/tmp"}, {"name": "identity", "mountPath": "/var/run/app"}],
            securityContext={"runAsUser": 2000, "capabilities": {"add": ["NET_BIND_SERVICE"]}},
        ),
        podTemplate=template(cluster_objects),
        serviceAccountName="default",
        podGC="Never",
    )
    kube.create_job(namespace, manifest)
    done = wait_for("the templated job", finished(kube, namespace, "templated"), timeout=90)
    assert condition(done)["reason"] == "Succeeded", condition(done)

    pods = {p["metadata"]["labels"]["procjob.dev/stage"]: p for p in kube.pods(namespace)}
    read, write = pods["read"]["spec"], pods["write"]["spec"]
    for spec in (read, write):
        assert spec["nodeName"].startswith("rig-node-")  # the real scheduler placed it
        assert spec["affinity"] == ON_LINUX
        assert spec["topologySpreadConstraints"] == [SPREAD]
        assert spec["priorityClassName"] == cluster_objects
        assert spec["priority"] == 10  # resolved by the Priority admission plugin
        assert spec["runtimeClassName"] == cluster_objects
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert spec["securityContext"]["fsGroup"] == 1000
        assert spec["serviceAccountName"] == "default"
    assert pods["read"]["metadata"]["labels"]["team"] == "media"
    assert pods["read"]["metadata"]["annotations"]["example.com/owner"] == "media"

    # read: the job's template as it is
    assert read["nodeSelector"] == {"type": "kwok"}
    assert GPU in read["tolerations"]
    assert SPOT not in read["tolerations"]
    volumes = by_name(read["volumes"])
    assert set(volumes) >= {"inputs", "settings", "creds", "procjob-tmp"}
    assert "scratch" not in volumes  # a pod gets the volumes its stage mounts
    assert volumes["inputs"]["persistentVolumeClaim"] == {"claimName": "inputs", "readOnly": True}
    assert volumes["creds"]["secret"]["defaultMode"] == 0o400
    (main,) = read["containers"]
    mounts = by_name(main["volumeMounts"])
    assert mounts["inputs"]["mountPath"] == "/data"
    assert mounts["procjob-tmp"]["mountPath"] == "/tmp"
    assert main["securityContext"]["readOnlyRootFilesystem"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}

    # write: the stage's template merged over the job's
    assert write["nodeSelector"] == {"type": "kwok", "kubernetes.io/os": "linux"}
    assert SPOT in write["tolerations"]
    assert GPU not in write["tolerations"]  # a stage's tolerations replace the job's
    volumes = by_name(write["volumes"])
    assert set(volumes) >= {"scratch", "identity"}
    assert "procjob-tmp" not in volumes  # its own volume at /tmp
    sources = volumes["identity"]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"] == {"audience": "vault", "expirationSeconds": 3600, "path": "token"}
    (main,) = write["containers"]
    assert by_name(main["volumeMounts"])["scratch"]["mountPath"] == "/tmp"
    assert main["securityContext"]["runAsUser"] == 2000
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert main["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.fixture
def unlisted_namespace(rig: Rig) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    rig.kubectl("create", "namespace", name)
    rig.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s", timeout=70)
    try:
        yield name
    finally:
        rig.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


AS_ROOT = {"spec": {"securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False}}}


def test_a_listed_namespace_may_run_as_root_and_another_may_not(
    kube: Kube, namespace: str, unlisted_namespace: str, operator: Any
) -> None:
    operator(namespace, "--namespace", unlisted_namespace, "--baseline-namespaces", namespace)
    manifest = job(
        "as-root",
        stage("work", securityContext={"allowPrivilegeEscalation": True, "capabilities": {"add": ["CHOWN"]}}),
        podTemplate=AS_ROOT,
        podGC="Never",
    )
    kube.create_job(namespace, manifest)
    kube.create_job(unlisted_namespace, manifest)

    allowed = wait_for("the job in the listed namespace", finished(kube, namespace, "as-root"))
    assert condition(allowed)["reason"] == "Succeeded", condition(allowed)
    (pod,) = kube.pods(namespace)
    assert pod["spec"]["securityContext"]["runAsUser"] == 0
    assert pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] is False
    assert pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is True

    refused = wait_for("the job in the other namespace", finished(kube, unlisted_namespace, "as-root"))
    failed = condition(refused)
    assert (failed["status"], failed["reason"]) == ("False", "InvalidSpec")
    for field in (
        "spec.podTemplate.spec.securityContext.runAsUser: 0 (root)",
        "spec.podTemplate.spec.securityContext.runAsNonRoot: false",
        "spec.stages[0].securityContext.allowPrivilegeEscalation: true",
        "spec.stages[0].securityContext.capabilities.add: CHOWN",
    ):
        assert field in failed["message"], failed["message"]
    assert f"restricted applies in namespace {unlisted_namespace}" in failed["message"]
    assert kube.pods(unlisted_namespace) == []
    events = kube.events(unlisted_namespace, "as-root")
    assert any(e["type"] == "Warning" and "runAsUser: 0 (root)" in e["message"] for e in events)
