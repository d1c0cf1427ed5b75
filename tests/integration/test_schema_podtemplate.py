"""Pod templates on the real API server (the rig's kube-apiserver 1.35): what a job may not set is
refused before it is stored, with kubectl's error naming the field, and a template with every field
a job may set is accepted. The operator's models refuse the same (a job stored under an older CRD).

Unknown fields — `hostPath` under a volume, `ports`, `windowsOptions` — are refused by kubectl's
strict field validation (its default), naming them. A client that asks the API server to ignore
unknown fields has them pruned; the fields whose mere presence would loosen a pod are therefore
declared and refused for every client (privileged, host namespaces), and a volume pruned of its
only source is refused as a volume without a type.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from procjob.models.spec import ProcessingJobSpec
from tests.support.rig import Rig

pytestmark = pytest.mark.rig

IMAGE = "registry.example/procjob-test:1"
VOLUMES = [
    {"name": "inputs", "persistentVolumeClaim": {"claimName": "inputs", "readOnly": True}},
    {"name": "settings", "configMap": {"name": "settings", "items": [{"key": "a", "path": "a.conf", "mode": 0o440}]}},
    {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400, "optional": True}},
    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    {
        "name": "work",
        "ephemeral": {
            "volumeClaimTemplate": {
                "metadata": {"labels": {"team": "media"}},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "fast",
                    "resources": {"requests": {"storage": "10Gi"}},
                    "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s1"},
                },
            }
        },
    },
    {
        "name": "projected",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "vault/token"}},
                {"configMap": {"name": "settings", "items": [{"key": "b", "path": "b.conf"}]}},
                {"secret": {"name": "creds", "optional": True}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {"path": "team", "fieldRef": {"fieldPath": "metadata.labels['team']"}},
                            {"path": "mem", "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                        ]
                    }
                },
            ],
        },
    },
]
SELECTOR = {
    "matchLabels": {"app.example.com/part": "thumbs"},
    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["batch"]}],
}
FULL_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "media"}, "annotations": {"example.com/cost-center": "42"}},
    "spec": {
        "nodeSelector": {"type": "kwok", "topology.kubernetes.io/zone": "a"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60},
            {"operator": "Exists"},
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                                {"key": "example.com/generation", "operator": "Gt", "values": ["3"]},
                            ],
                            "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["bad-node"]}],
                        }
                    ]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}
                ],
            },
            "podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "podAffinityTerm": {"labelSelector": SELECTOR, "topologyKey": "kubernetes.io/hostname"},
                    }
                ]
            },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": SELECTOR,
                        "namespaceSelector": {"matchLabels": {"team": "media"}},
                        "namespaces": ["media"],
                        "topologyKey": "kubernetes.io/hostname",
                        "matchLabelKeys": ["procjob.dev/job"],
                    }
                ]
            },
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "minDomains": 2,
                "labelSelector": SELECTOR,
                "nodeAffinityPolicy": "Honor",
                "nodeTaintsPolicy": "Ignore",
            }
        ],
        "priorityClassName": "batch-low",
        "runtimeClassName": "gvisor",
        "imagePullSecrets": [{"name": "registry"}],
        "volumes": VOLUMES,
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "runAsNonRoot": True,
            "fsGroup": 1000,
            "fsGroupChangePolicy": "OnRootMismatch",
            "supplementalGroups": [2000],
            "supplementalGroupsPolicy": "Merge",
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"},
            "appArmorProfile": {"type": "RuntimeDefault"},
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}],
        },
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
    },
}
CONTAINER_CONTEXT = {
    "runAsUser": 1001,
    "runAsGroup": 1001,
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": False,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
    "appArmorProfile": {"type": "Localhost", "localhostProfile": "procjob-worker"},
    "procMount": "Default",
}
MOUNTS = [
    {"name": "inputs", "mountPath": "/data", "readOnly": True},
    {"name": "settings", "mountPath": "/etc/app", "subPath": "conf.d"},
    {"name": "scratch", "mountPath": "/tmp"},
    {"name": "projected", "mountPath": "/var/run/secrets/vault"},
]


def job(template: dict[str, Any] | None = None, **stage: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"stages": [{"name": "s", "image": IMAGE, **stage}]}
    if template is not None:
        spec["podTemplate"] = template
    return {"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", "metadata": {"name": "pt"}, "spec": spec}


def pod_spec(**fields: Any) -> dict[str, Any]:
    return {"spec": fields}


def create(rig: Rig, namespace: str, body: dict[str, Any], *flags: str) -> tuple[int, str]:
    proc = rig.kubectl(
        "create", "--dry-run=server", *flags, "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )
    return proc.returncode, proc.stderr + proc.stdout


def test_a_template_with_every_field_a_job_may_set_is_accepted(rig: Rig, crd: Any, namespace: str) -> None:
    body = job(
        FULL_TEMPLATE,
        volumeMounts=MOUNTS,
        securityContext=CONTAINER_CONTEXT,
        podTemplate={"metadata": {"labels": {"stage": "s"}}, "spec": {"tolerations": [], "nodeSelector": {"a": "b"}}},
        resources={"limits": {"memory": "512Mi"}},
    )
    body["spec"]["serviceAccountName"] = "reader"  # the projected token needs one
    code, output = create(rig, namespace, body)
    assert code == 0, output
    ProcessingJobSpec.model_validate(body["spec"])


def volume(**source: Any) -> dict[str, Any]:
    return pod_spec(volumes=[{"name": "v", **source}])


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(
            job(securityContext={"privileged": True}),
            "spec.stages[0].securityContext.privileged",
            "Unsupported value: true",
            id="a privileged container",
        ),
        pytest.param(
            job(pod_spec(hostNetwork=True)),
            "spec.podTemplate.spec.hostNetwork",
            "Unsupported value: true",
            id="the host's network",
        ),
        pytest.param(
            job(pod_spec(hostPID=True)), "spec.podTemplate.spec.hostPID", "Unsupported value: true", id="host PIDs"
        ),
        pytest.param(
            job(pod_spec(hostIPC=True)), "spec.podTemplate.spec.hostIPC", "Unsupported value: true", id="host IPC"
        ),
        pytest.param(
            job(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}}),
            "spec.stages[0].securityContext.capabilities.add[0]",
            "Unsupported value",
            id="a capability beyond baseline",
        ),
        pytest.param(
            job(securityContext={"procMount": "Unmasked"}),
            "spec.stages[0].securityContext.procMount",
            "Unsupported value",
            id="an unmasked /proc",
        ),
        pytest.param(
            job(pod_spec(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]})),
            "spec.podTemplate.spec.securityContext.sysctls[0].name",
            "Unsupported value",
            id="an unsafe sysctl",
        ),
        pytest.param(
            job(pod_spec(securityContext={"seccompProfile": {"type": "Unconfined"}})),
            "spec.podTemplate.spec.securityContext.seccompProfile.type",
            "Unsupported value",
            id="seccomp Unconfined",
        ),
        pytest.param(
            job(securityContext={"appArmorProfile": {"type": "Unconfined"}}),
            "spec.stages[0].securityContext.appArmorProfile.type",
            "Unsupported value",
            id="AppArmor Unconfined",
        ),
        pytest.param(
            job(securityContext={"seccompProfile": {"type": "Localhost"}}),
            "spec.stages[0].securityContext.seccompProfile.localhostProfile",
            "localhostProfile is set exactly when type is Localhost",
            id="a Localhost profile without its path",
        ),
        pytest.param(
            job(pod_spec(securityContext={"runAsUser": -1})),
            "spec.podTemplate.spec.securityContext.runAsUser",
            "should be greater than or equal to 0",
            id="a negative uid",
        ),
        pytest.param(
            job(volume()),
            "spec.podTemplate.spec.volumes[0]",
            "a volume needs exactly one of configMap, secret, emptyDir",
            id="a volume without a source (or one pruned of hostPath)",
        ),
        pytest.param(
            job(volume(emptyDir={}, configMap={"name": "c"})),
            "spec.podTemplate.spec.volumes[0]",
            "a volume needs exactly one of",
            id="a volume with two sources",
        ),
        pytest.param(
            job(pod_spec(volumes=[{"name": "procjob-tmp", "emptyDir": {}}])),
            "spec.podTemplate.spec.volumes[0].name",
            "volume names starting with procjob- are reserved",
            id="the operator's volume name",
        ),
        pytest.param(
            job(volume(projected={"sources": [{}]})),
            "spec.podTemplate.spec.volumes[0].projected.sources[0]",
            "a projection needs exactly one of",
            id="an empty projection",
        ),
        pytest.param(
            job(volume(configMap={"name": "c", "items": [{"key": "k", "path": "../etc/passwd"}]})),
            "spec.podTemplate.spec.volumes[0].configMap.items[0].path",
            "should match",
            id="a path out of the volume",
        ),
        pytest.param(
            job(pod_spec(volumes=[{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}])),
            "spec.podTemplate.spec.volumes[1]",
            "Duplicate value",
            id="two volumes of one name",
        ),
        pytest.param(
            job(volumeMounts=[{"name": "nowhere", "mountPath": "/x"}]),
            "spec.stages",
            "volumeMounts must name a volume of the job's or the stage's podTemplate.spec.volumes",
            id="a mount of an undeclared volume",
        ),
        pytest.param(
            job(volume(emptyDir={}), volumeMounts=[{"name": "v", "mountPath": "/dev"}]),
            "spec.stages[0].volumeMounts[0].mountPath",
            "must not hide /dev/termination-log",
            id="a mount over the termination message",
        ),
        pytest.param(
            job(
                volume(emptyDir={}),
                volumeMounts=[{"name": "v", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            ),
            "spec.stages[0].volumeMounts[0].mountPath",
            "the operator's service-account token",
            id="a mount over the service-account token",
        ),
        pytest.param(
            job(volume(emptyDir={}), volumeMounts=[{"name": "v", "mountPath": "/a/../etc"}]),
            "spec.stages[0].volumeMounts[0].mountPath",
            "should match",
            id="a mount path with ..",
        ),
        pytest.param(
            job(volume(emptyDir={}), volumeMounts=[{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/a"}]),
            "spec.stages[0].volumeMounts[1]",
            "Duplicate value",
            id="two mounts at one path",
        ),
        pytest.param(
            job(volume(projected={"sources": [{"serviceAccountToken": {"path": "t"}}]})),
            "spec.serviceAccountName",
            "a projected serviceAccountToken needs spec.serviceAccountName",
            id="a token of the namespace's default account",
        ),
        pytest.param(
            job(pod_spec(tolerations=[{"key": "a", "operator": "Exists", "value": "x"}])),
            "spec.podTemplate.spec.tolerations[0].value",
            "a toleration with operator Exists has no value",
            id="Exists with a value",
        ),
        pytest.param(
            job(pod_spec(tolerations=[{"value": "x"}])),
            "spec.podTemplate.spec.tolerations[0]",
            "a toleration without a key needs operator Exists",
            id="a toleration without a key",
        ),
        pytest.param(
            job(pod_spec(tolerations=[{"key": "a", "tolerationSeconds": 5}])),
            "spec.podTemplate.spec.tolerations[0].tolerationSeconds",
            "tolerationSeconds needs effect NoExecute",
            id="tolerationSeconds without NoExecute",
        ),
        pytest.param(
            job(pod_spec(nodeSelector={"bad key": "x"})),
            "spec.podTemplate.spec.nodeSelector",
            "nodeSelector keys must be qualified names",
            id="a nodeSelector key that is no label key",
        ),
        pytest.param(
            job(
                pod_spec(
                    affinity={
                        "podAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "topologyKey": "k",
                                    "labelSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
                                }
                            ]
                        }
                    }
                )
            ),
            "spec.podTemplate.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
            ".labelSelector.matchExpressions[0]",
            "In and NotIn need values",
            id="In without values",
        ),
        pytest.param(
            job(
                pod_spec(
                    affinity={
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["x"]}]}
                                ]
                            }
                        }
                    }
                )
            ),
            "matchExpressions[0]",
            "Gt and Lt take one integer",
            id="Gt with a word",
        ),
        pytest.param(
            job(
                pod_spec(
                    topologySpreadConstraints=[
                        {"maxSkew": 1, "topologyKey": "z", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}
                    ]
                )
            ),
            "spec.podTemplate.spec.topologySpreadConstraints[0].minDomains",
            "minDomains needs whenUnsatisfiable DoNotSchedule",
            id="minDomains with ScheduleAnyway",
        ),
        pytest.param(
            job({"metadata": {"labels": {"procjob.dev/job": "other"}}}),
            "spec.podTemplate.metadata.labels",
            "reserved for the operator",
            id="an operator label",
        ),
        pytest.param(
            job(pod_spec(tolerations=[{"key": "a", "operator": "Exists"}] * 33)),
            "spec.podTemplate.spec.tolerations",
            "must have at most 32 items",
            id="too many tolerations",
        ),
    ],
)
def test_the_api_server_refuses_naming_the_field(
    rig: Rig, crd: Any, namespace: str, body: dict[str, Any], field: str, message: str
) -> None:
    code, output = create(rig, namespace, body)
    assert code != 0, f"accepted: {output}"
    assert field in output, output
    assert message in output, output
    with pytest.raises(ValidationError):
        ProcessingJobSpec.model_validate(body["spec"])  # the operator refuses it too (a CRD from before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(job(volume(hostPath={"path": "/"})), 'unknown field "spec.podTemplate.spec.volumes[0].hostPath"'),
        pytest.param(
            job(volume(nfs={"server": "x", "path": "/"})), 'unknown field "spec.podTemplate.spec.volumes[0].nfs"'
        ),
        pytest.param(job(ports=[{"containerPort": 80, "hostPort": 80}]), 'unknown field "spec.stages[0].ports"'),
        pytest.param(
            job(securityContext={"windowsOptions": {"hostProcess": True}}),
            'unknown field "spec.stages[0].securityContext.windowsOptions"',
        ),
        pytest.param(
            job(pod_spec(serviceAccountName="admin")), 'unknown field "spec.podTemplate.spec.serviceAccountName"'
        ),
        pytest.param(job(pod_spec(containers=[])), 'unknown field "spec.podTemplate.spec.containers"'),
        pytest.param(
            job(pod_spec(securityContext={"seLinuxOptions": {"type": "spc_t"}})),
            'unknown field "spec.podTemplate.spec.securityContext.seLinuxOptions"',
        ),
    ],
    ids=["hostPath", "nfs", "hostPort", "hostProcess", "serviceAccountName", "containers", "seLinuxOptions"],
)
def test_kubectl_refuses_unknown_fields_naming_them(
    rig: Rig, crd: Any, namespace: str, body: dict[str, Any], field: str
) -> None:
    code, output = create(rig, namespace, body)
    assert code != 0, f"accepted: {output}"
    assert field in output, output
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ProcessingJobSpec.model_validate(body["spec"])


def test_a_client_that_ignores_unknown_fields_still_cannot_loosen_a_pod(rig: Rig, crd: Any, namespace: str) -> None:
    """`--validate=false` (fieldValidation=Ignore): the API server prunes unknown fields silently. A hostPath
    volume is pruned to a volume without a source, which is refused; privileged and hostNetwork are declared
    fields, refused whatever the client asked for."""
    for body, message in (
        (job(volume(hostPath={"path": "/"})), "a volume needs exactly one of"),
        (job(securityContext={"privileged": True}), "spec.stages[0].securityContext.privileged"),
        (job(pod_spec(hostNetwork=True)), "spec.podTemplate.spec.hostNetwork"),
    ):
        code, output = create(rig, namespace, body, "--validate=false")
        assert code != 0, f"accepted: {output}"
        assert message in output, output


def test_the_pod_template_is_immutable(rig: Rig, crd: Any, namespace: str) -> None:
    body = job(pod_spec(nodeSelector={"type": "kwok"}))
    body["spec"]["suspend"] = True
    rig.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    patch = json.dumps({"spec": {"podTemplate": {"spec": {"nodeSelector": {"type": "gpu"}}}}})
    proc = rig.kubectl("patch", "pj", "pt", "-n", namespace, "--type=merge", "-p", patch, check=False)
    assert proc.returncode != 0
    assert "spec.podTemplate: Invalid value" in proc.stderr
    assert "podTemplate is immutable" in proc.stderr
    rig.kubectl("delete", "pj", "pt", "-n", namespace, "--wait=false")


@pytest.mark.parametrize("how", [["apply"], ["apply", "--server-side"]], ids=["client-side", "server-side"])
def test_kubectl_apply_of_a_job_with_a_host_path_fails_naming_the_field(
    rig: Rig, crd: Any, namespace: str, how: list[str]
) -> None:
    body = job(volume(hostPath={"path": "/etc"}))
    proc = rig.kubectl(*how, "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0, proc.stdout
    # client-side: unknown field "spec.podTemplate.spec.volumes[0].hostPath"; server-side names the list item
    # by its key: .spec.podTemplate.spec.volumes[name="v"].hostPath: field not declared in schema
    assert re.search(r'spec\.podTemplate\.spec\.volumes\[(0|name="v")\]\.hostPath', proc.stderr), proc.stderr
    assert rig.kubectl("get", "pj", "pt", "-n", namespace, check=False).returncode != 0  # nothing stored
