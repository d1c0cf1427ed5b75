"""Pod templates: a stage's merged over the job's field by field, and rendered over the operator's defaults."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.config import CoreConfig
from procjob.core.podspec import build_pod
from procjob.core.podtemplate import (
    by_name,
    container_security_context,
    key_by_key,
    merge_spec,
    overlay,
    stage_template,
    volumes_and_mounts,
)
from procjob.models.podtemplate import TemplatePodSpec
from procjob.models.security import PodSecurityContext, SecurityContext
from procjob.models.spec import ProcessingJobSpec
from procjob.models.volumes import VolumeMount
from tests.unit.core.builders import image_stage, make_job, spec_of

PVC = {"name": "data", "persistentVolumeClaim": {"claimName": "inputs"}}
CONFIG = {"name": "config", "configMap": {"name": "settings"}}
SCRATCH = {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
GPU = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
SPOT = {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def template_spec(**fields: Any) -> TemplatePodSpec:
    return TemplatePodSpec.model_validate(fields)


def merged(job: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    result = merge_spec(template_spec(**job), template_spec(**stage))
    assert result is not None
    return result.to_api()


@pytest.mark.parametrize(
    ("job", "stage", "expected"),
    [
        pytest.param(
            {"nodeSelector": {"pool": "gpu", "zone": "a"}},
            {"nodeSelector": {"zone": "b", "arch": "arm64"}},
            {"nodeSelector": {"pool": "gpu", "zone": "b", "arch": "arm64"}},
            id="nodeSelector is merged key by key, the stage's value winning",
        ),
        pytest.param(
            {"tolerations": [GPU]},
            {"tolerations": [SPOT]},
            {"tolerations": [SPOT]},
            id="a stage's tolerations replace the job's list",
        ),
        pytest.param(
            {"tolerations": [GPU], "priorityClassName": "batch"},
            {"runtimeClassName": "gvisor"},
            {"tolerations": [GPU], "priorityClassName": "batch", "runtimeClassName": "gvisor"},
            id="what the stage leaves unset is the job's",
        ),
        pytest.param(
            {"priorityClassName": "batch"},
            {"priorityClassName": "urgent"},
            {"priorityClassName": "urgent"},
            id="scalars are the stage's",
        ),
        pytest.param(
            {"volumes": [PVC, CONFIG]},
            {"volumes": [SCRATCH, {"name": "config", "secret": {"secretName": "settings"}}]},
            {"volumes": [PVC, {"name": "config", "secret": {"secretName": "settings"}}, SCRATCH]},
            id="volumes are merged by name: the stage's replaces the job's in place, new ones follow",
        ),
        pytest.param(
            {"imagePullSecrets": [{"name": "a"}, {"name": "b"}]},
            {"imagePullSecrets": [{"name": "b"}, {"name": "c"}]},
            {"imagePullSecrets": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
            id="imagePullSecrets are merged by name",
        ),
        pytest.param(
            {"securityContext": {"runAsUser": 1000, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}}},
            {"securityContext": {"runAsUser": 1001, "supplementalGroups": [3000]}},
            {
                "securityContext": {
                    "runAsUser": 1001,
                    "fsGroup": 2000,
                    "supplementalGroups": [3000],
                    "seccompProfile": {"type": "RuntimeDefault"},
                }
            },
            id="securityContext is merged field by field",
        ),
        pytest.param(
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]
                        }
                    },
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
                        ]
                    },
                }
            },
            {"affinity": {"podAntiAffinity": {}}},
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]
                        }
                    },
                    "podAntiAffinity": {},
                }
            },
            id="affinity is merged by its parts, each replaced whole",
        ),
    ],
)
def test_the_stage_template_is_merged_over_the_jobs(
    job: dict[str, Any], stage: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merged(job, stage) == expected


def test_a_template_missing_on_either_side_is_the_other() -> None:
    spec = template_spec(nodeSelector={"a": "b"})
    assert merge_spec(spec, None) is spec
    assert merge_spec(None, spec) is spec
    assert merge_spec(None, None) is None
    assert overlay(None, None) is None
    assert by_name(None, None) is None
    assert key_by_key(None, None) is None


def test_labels_and_annotations_merge_job_then_pod_metadata_then_the_stages_template() -> None:
    stage = image_stage(
        podMetadata={"labels": {"team": "b", "tier": "x"}, "annotations": {"note": "pm"}},
        podTemplate={"metadata": {"labels": {"tier": "y"}, "annotations": {"extra": "1"}}},
    )
    spec = ProcessingJobSpec.model_validate(
        spec_of(stage, podTemplate={"metadata": {"labels": {"team": "a", "cost": "c"}, "annotations": {"note": "j"}}})
    )
    merged_template = stage_template(spec, spec.stages[0])
    assert merged_template.labels == {"team": "b", "cost": "c", "tier": "y"}
    assert merged_template.annotations == {"note": "pm", "extra": "1"}


# -- property tests: the merge rules hold for any two templates

NAMES = st.sampled_from(["a", "b", "c", "d"])
VOLUMES = st.lists(
    st.builds(lambda name, claim: {"name": name, "persistentVolumeClaim": {"claimName": claim}}, NAMES, NAMES),
    max_size=4,
    unique_by=lambda v: v["name"],
)
TEMPLATES = st.builds(
    lambda selector, volumes, secrets, priority, uid, group: {
        key: value
        for key, value in {
            "nodeSelector": selector,
            "volumes": volumes,
            "imagePullSecrets": secrets,
            "priorityClassName": priority,
            "securityContext": {k: v for k, v in (("runAsUser", uid), ("fsGroup", group)) if v is not None} or None,
        }.items()
        if value is not None
    },
    st.none() | st.dictionaries(NAMES, NAMES, max_size=3),
    st.none() | VOLUMES,
    st.none() | st.lists(st.builds(lambda n: {"name": n}, NAMES), max_size=3, unique_by=lambda s: s["name"]),
    st.none() | NAMES,
    st.none() | st.integers(1, 5),
    st.none() | st.integers(1, 5),
)


@settings(max_examples=200, deadline=None)
@given(TEMPLATES, TEMPLATES)
def test_merging_follows_the_rules_field_by_field(job: dict[str, Any], stage: dict[str, Any]) -> None:
    result = merged(job, stage)
    if "nodeSelector" in job or "nodeSelector" in stage:
        assert result["nodeSelector"] == {**job.get("nodeSelector", {}), **stage.get("nodeSelector", {})}
    assert result.get("priorityClassName") == stage.get("priorityClassName", job.get("priorityClassName"))
    for field in ("volumes", "imagePullSecrets"):
        theirs, ours = job.get(field, []), stage.get(field, [])
        names = [v["name"] for v in theirs] + [v["name"] for v in ours if v["name"] not in {t["name"] for t in theirs}]
        assert [v["name"] for v in result.get(field, [])] == names
        assert all(v in ours or v["name"] not in {o["name"] for o in ours} for v in result.get(field, []))
    context = {**job.get("securityContext", {}), **stage.get("securityContext", {})}
    assert result.get("securityContext", {}) == context


@settings(max_examples=200, deadline=None)
@given(TEMPLATES, TEMPLATES, TEMPLATES)
def test_merging_is_associative_and_idempotent(a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]) -> None:
    """A job template, then a stage's: the order of nesting never matters, and a repeat changes nothing."""
    x, y, z = template_spec(**a), template_spec(**b), template_spec(**c)
    assert merge_spec(merge_spec(x, y), z) == merge_spec(x, merge_spec(y, z))
    assert merge_spec(x, x) == x


# -- security contexts over the operator's defaults


def test_the_containers_context_follows_the_pods_non_root_and_seccomp_choices() -> None:
    pod = PodSecurityContext.model_validate(
        {"runAsNonRoot": False, "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/a.json"}}
    )
    assert container_security_context(None, pod) == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": False,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/a.json"},
        "capabilities": {"drop": ["ALL"]},
    }


def test_a_stage_may_loosen_its_container_within_the_schema_and_all_capabilities_stay_dropped() -> None:
    own = SecurityContext.model_validate(
        {
            "readOnlyRootFilesystem": False,
            "runAsUser": 1000,
            "runAsNonRoot": True,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["NET_RAW"]},
            "appArmorProfile": {"type": "RuntimeDefault"},
        }
    )
    assert container_security_context(own) == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
        "appArmorProfile": {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL", "NET_RAW"], "add": ["NET_BIND_SERVICE"]},
    }


def test_the_pods_context_is_the_operators_with_the_templates_fields_over_it() -> None:
    job = make_job(
        spec_of(podTemplate={"spec": {"securityContext": {"runAsUser": 1000, "supplementalGroups": [5]}}}),
    )
    pod = build_pod(job, 0, 1, {}, CoreConfig())
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
        "supplementalGroups": [5],
    }


def test_the_grace_period_is_the_stages_else_the_jobs_else_kubernetes_default() -> None:
    stages = [image_stage("a"), {**image_stage("b"), "podTemplate": {"spec": {"terminationGracePeriodSeconds": 5}}}]
    job = make_job(spec_of(stages=stages, podTemplate={"spec": {"terminationGracePeriodSeconds": 120}}))
    assert build_pod(job, 0, 1, {}, CoreConfig())["spec"]["terminationGracePeriodSeconds"] == 120
    assert build_pod(job, 1, 1, {}, CoreConfig())["spec"]["terminationGracePeriodSeconds"] == 5
    plain = make_job(spec_of())
    assert "terminationGracePeriodSeconds" not in build_pod(plain, 0, 1, {}, CoreConfig())["spec"]


@pytest.mark.parametrize("seconds", [-1, 3601])
def test_a_grace_period_is_bounded(seconds: int) -> None:
    with pytest.raises(ValueError, match=r"terminationGracePeriodSeconds|termination_grace_period_seconds"):
        template_spec(terminationGracePeriodSeconds=seconds)


# -- volumes and mounts


def mounts(*items: dict[str, Any]) -> list[VolumeMount]:
    return [VolumeMount.model_validate(item) for item in items]


def test_a_pod_gets_the_volumes_its_stage_mounts_and_the_operators_tmp() -> None:
    spec = template_spec(volumes=[PVC, CONFIG, SCRATCH])
    volumes, wire = volumes_and_mounts(spec, mounts({"name": "scratch", "mountPath": "/scratch"}, {**CONFIG_MOUNT}))
    assert volumes == [
        {"name": "config", "configMap": {"name": "settings"}},
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "procjob-tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    assert wire == [
        {"name": "scratch", "mountPath": "/scratch"},
        CONFIG_MOUNT,
        {"name": "procjob-tmp", "mountPath": "/tmp"},
    ]


CONFIG_MOUNT = {"name": "config", "mountPath": "/etc/app", "readOnly": True, "subPath": "conf.d"}


def test_a_volume_mounted_at_tmp_replaces_the_operators() -> None:
    volumes, wire = volumes_and_mounts(
        template_spec(volumes=[SCRATCH]), mounts({"name": "scratch", "mountPath": "/tmp"})
    )
    assert volumes == [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    assert wire == [{"name": "scratch", "mountPath": "/tmp"}]


def test_a_volume_below_tmp_keeps_the_operators_tmp() -> None:
    volumes, wire = volumes_and_mounts(
        template_spec(volumes=[SCRATCH]), mounts({"name": "scratch", "mountPath": "/tmp/scratch"})
    )
    assert [v["name"] for v in volumes] == ["scratch", "procjob-tmp"]
    assert [m["mountPath"] for m in wire] == ["/tmp/scratch", "/tmp"]
