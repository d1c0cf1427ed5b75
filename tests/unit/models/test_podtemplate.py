"""The pod template models: corev1's names and shapes, each CEL rule's Python twin with the same message
naming the field, the wire form, and the schema they generate."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from procjob.models.crd import open_api_schema
from procjob.models.job import describe_validation_error
from procjob.models.podtemplate import MOUNT_UNDECLARED, PROJECTION_NEEDS_ACCOUNT
from procjob.models.scheduling import (
    MIN_DOMAINS,
    NODE_SELECTOR_VALUES,
    SELECTOR_VALUES,
    TOLERATION_EXISTS,
    TOLERATION_KEYLESS,
    TOLERATION_SECONDS,
)
from procjob.models.security import LOCALHOST_PROFILE, SYSCTLS_UNIQUE
from procjob.models.spec import ProcessingJobSpec
from procjob.models.volumes import (
    HIDES_TERMINATION_LOG,
    HIDES_TOKEN,
    ONE_DOWNWARD_SOURCE,
    ONE_PROJECTION,
    ONE_VOLUME_TYPE,
    RESERVED_VOLUME,
)
from tests.unit.models.test_crd import nodes


def spec(template: dict[str, Any] | None = None, **stage: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"stages": [{"name": "s", "image": "registry.example.com/s:1", **stage}]}
    if template is not None:
        body["podTemplate"] = template
    return body


def pod(**fields: Any) -> dict[str, Any]:
    return {"spec": fields}


def problems(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ProcessingJobSpec.model_validate(body)
    return describe_validation_error(caught.value, "spec")


def affinity_term(**selector: Any) -> dict[str, Any]:
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": selector}
    return pod(affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}})


def node_term(requirement: dict[str, Any]) -> dict[str, Any]:
    terms = [{"matchExpressions": [requirement]}]
    return pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    )


PATH = "spec.podTemplate.spec"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(spec(pod(volumes=[{"name": "v"}])), f"{PATH}.volumes[0]", ONE_VOLUME_TYPE, id="no source"),
        pytest.param(
            spec(pod(volumes=[{"name": "procjob-x", "emptyDir": {}}])), f"{PATH}.volumes[0]", RESERVED_VOLUME, id="name"
        ),
        pytest.param(
            spec(
                pod(
                    volumes=[
                        {"name": "v", "projected": {"sources": [{"secret": {"name": "a"}, "configMap": {"name": "b"}}]}}
                    ]
                )
            ),
            f"{PATH}.volumes[0].projected.sources[0]",
            ONE_PROJECTION,
            id="two projections in one source",
        ),
        pytest.param(
            spec(pod(volumes=[{"name": "v", "projected": {"sources": [{"downwardAPI": {"items": [{"path": "p"}]}}]}}])),
            f"{PATH}.volumes[0].projected.sources[0].downwardAPI.items[0]",
            ONE_DOWNWARD_SOURCE,
            id="a downward file without a source",
        ),
        pytest.param(
            spec(pod(volumes=[{"name": "v", "emptyDir": {}}]), volumeMounts=[{"name": "v", "mountPath": "/dev"}]),
            "spec.stages[0].volumeMounts[0]",
            HIDES_TERMINATION_LOG,
            id="a mount over /dev",
        ),
        pytest.param(
            spec(
                pod(volumes=[{"name": "v", "emptyDir": {}}]),
                volumeMounts=[{"name": "v", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount/x"}],
            ),
            "spec.stages[0].volumeMounts[0]",
            HIDES_TOKEN,
            id="a mount under the token",
        ),
        pytest.param(
            spec(pod(volumes=[{"name": "v", "emptyDir": {}}]), volumeMounts=[{"name": "v", "mountPath": "/a"}] * 2),
            "spec.stages[0].volumeMounts",
            "mountPath must be unique: '/a' appears twice",
            id="two mounts at one path",
        ),
        pytest.param(
            spec(pod(volumes=[{"name": "v", "emptyDir": {}}] * 2)),
            f"{PATH}.volumes",
            "volume names must be unique: 'v' appears twice",
            id="two volumes of one name",
        ),
        pytest.param(
            spec(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
            "spec",
            f"{MOUNT_UNDECLARED}: stages[0].volumeMounts[0].name is 'data'",
            id="an undeclared volume",
        ),
        pytest.param(
            spec(
                {
                    "spec": {
                        "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]
                    }
                }
            ),
            "spec",
            PROJECTION_NEEDS_ACCOUNT,
            id="a token without an account",
        ),
        pytest.param(
            spec(pod(tolerations=[{"value": "x"}])), f"{PATH}.tolerations[0]", TOLERATION_KEYLESS, id="keyless"
        ),
        pytest.param(
            spec(pod(tolerations=[{"key": "k", "operator": "Exists", "value": "x"}])),
            f"{PATH}.tolerations[0]",
            TOLERATION_EXISTS,
            id="Exists with a value",
        ),
        pytest.param(
            spec(pod(tolerations=[{"key": "k", "tolerationSeconds": 1, "effect": "NoSchedule"}])),
            f"{PATH}.tolerations[0]",
            TOLERATION_SECONDS,
            id="tolerationSeconds",
        ),
        pytest.param(
            spec(affinity_term(matchExpressions=[{"key": "a", "operator": "Exists", "values": ["x"]}])),
            f"{PATH}.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector"
            ".matchExpressions[0]",
            SELECTOR_VALUES,
            id="Exists with values",
        ),
        pytest.param(
            spec(affinity_term(matchLabels={"bad key": "x"})),
            f"{PATH}.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels",
            "is not a qualified name",
            id="a matchLabels key (the operator's check)",
        ),
        pytest.param(
            spec(node_term({"key": "gen", "operator": "Lt", "values": ["1", "2"]})),
            f"{PATH}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
            ".matchExpressions[0]",
            NODE_SELECTOR_VALUES,
            id="Lt with two values",
        ),
        pytest.param(
            spec(node_term({"key": "gen", "operator": "Gt", "values": ["--1"]})),
            "matchExpressions[0]",
            NODE_SELECTOR_VALUES,
            id="Gt with no integer",
        ),
        pytest.param(
            spec(
                pod(
                    topologySpreadConstraints=[
                        {"maxSkew": 1, "topologyKey": "z", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 1}
                    ]
                )
            ),
            f"{PATH}.topologySpreadConstraints[0]",
            MIN_DOMAINS,
            id="minDomains",
        ),
        pytest.param(
            spec(pod(nodeSelector={"a/b/c": "x"})), f"{PATH}.nodeSelector", "nodeSelector keys must be", id="a key"
        ),
        pytest.param(
            spec(pod(securityContext={"seccompProfile": {"type": "RuntimeDefault", "localhostProfile": "p"}})),
            f"{PATH}.securityContext.seccompProfile",
            LOCALHOST_PROFILE,
            id="a profile path without Localhost",
        ),
        pytest.param(
            spec(pod(securityContext={"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}] * 2})),
            f"{PATH}.securityContext",
            SYSCTLS_UNIQUE,
            id="one sysctl twice",
        ),
        pytest.param(spec(pod(hostNetwork=True)), f"{PATH}.hostNetwork", "Input should be False", id="hostNetwork"),
        pytest.param(
            spec(securityContext={"privileged": True}), "spec.stages[0].securityContext.privileged", "False", id="priv"
        ),
        pytest.param(
            spec(pod(volumes=[{"name": "v", "hostPath": {"path": "/"}}])),
            f"{PATH}.volumes[0].hostPath",
            "Extra inputs are not permitted",
            id="hostPath",
        ),
    ],
)
def test_refused_naming_the_field_with_the_schemas_message(body: dict[str, Any], field: str, message: str) -> None:
    found = problems(body)
    assert field in found, found
    assert message in found, found


def test_the_wire_form_is_corev1s() -> None:
    template = {
        "metadata": {"labels": {"a": "b"}},
        "spec": {
            "hostPID": False,
            "volumes": [
                {
                    "name": "p",
                    "projected": {
                        "sources": [
                            {"downwardAPI": {"items": [{"path": "m", "resourceFieldRef": {"resource": "limits.cpu"}}]}}
                        ]
                    },
                }
            ],
        },
    }
    parsed = ProcessingJobSpec.model_validate(spec(template))
    assert parsed.pod_template is not None
    wire = parsed.pod_template.to_api()
    item = wire["spec"]["volumes"][0]["projected"]["sources"][0]["downwardAPI"]["items"][0]
    assert item["resourceFieldRef"] == {"containerName": "main", "resource": "limits.cpu"}  # the worker's container
    assert wire["spec"]["hostPID"] is False
    assert ProcessingJobSpec.model_validate(parsed.to_api()) == parsed


SCHEMA = dict(nodes(open_api_schema()))


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        (".spec.podTemplate.spec.volumes", ["name"]),
        (".spec.podTemplate.spec.imagePullSecrets", ["name"]),
        (".spec.podTemplate.spec.topologySpreadConstraints", ["topologyKey", "whenUnsatisfiable"]),
        (".spec.podTemplate.spec.securityContext.sysctls", ["name"]),
        (".spec.stages[].volumeMounts", ["mountPath"]),
        (".spec.stages[].podTemplate.spec.volumes", ["name"]),
    ],
)
def test_lists_of_named_items_are_maps_as_in_corev1(path: str, keys: list[str]) -> None:
    """The API server then refuses duplicates, and server-side apply merges by key."""
    assert SCHEMA[path]["x-kubernetes-list-type"] == "map"
    assert SCHEMA[path]["x-kubernetes-list-map-keys"] == keys


@pytest.mark.parametrize(
    ("path", "values"),
    [
        (".spec.podTemplate.spec.hostNetwork", [False]),
        (".spec.podTemplate.spec.hostPID", [False]),
        (".spec.podTemplate.spec.hostIPC", [False]),
        (".spec.stages[].securityContext.privileged", [False]),
        (".spec.stages[].securityContext.procMount", ["Default"]),
        (".spec.stages[].securityContext.seccompProfile.type", ["RuntimeDefault", "Localhost"]),
        (".spec.podTemplate.spec.securityContext.appArmorProfile.type", ["RuntimeDefault", "Localhost"]),
    ],
)
def test_fields_a_job_may_not_loosen_accept_only_their_safe_values(path: str, values: list[Any]) -> None:
    assert SCHEMA[path]["enum"] == values


def test_the_stage_and_the_job_share_one_template_schema() -> None:
    """`stages[].podTemplate` has the shape of `spec.podTemplate` (kubectl explain reads the same)."""
    job, stage = SCHEMA[".spec.podTemplate"], SCHEMA[".spec.stages[].podTemplate"]
    assert {k: v for k, v in job.items() if k != "description"} == {
        k: v for k, v in stage.items() if k != "description"
    }


def test_kubectl_explain_reads_like_the_pods() -> None:
    assert "Taints the pod tolerates" in SCHEMA[".spec.podTemplate.spec.tolerations"]["description"]
    assert SCHEMA[".spec.podTemplate.spec.tolerations[].effect"]["enum"] == [
        "NoSchedule",
        "PreferNoSchedule",
        "NoExecute",
    ]
    assert "procjob-" in SCHEMA[".spec.podTemplate.spec.volumes[].name"]["description"]
