"""The namespace's Pod Security Standards profile: restricted everywhere, baseline where the platform lists
the namespace; each problem names the field; the pods that pass keep the profile."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.config import CoreConfig
from procjob.core.podsecurity import security_problems
from procjob.core.podspec import build_pod
from procjob.core.validation import validate_spec
from procjob.models.security import BASELINE_CAPABILITIES
from procjob.models.spec import ProcessingJobSpec
from tests.unit.core.builders import JOB_NAMESPACE, image_stage, make_job, spec_of

LISTED = CoreConfig(baseline_namespaces=frozenset({JOB_NAMESPACE, "legacy"}))
UNLISTED = CoreConfig(baseline_namespaces=frozenset({"legacy"}))


def spec(pod: dict[str, Any] | None = None, container: dict[str, Any] | None = None, **stage: Any) -> ProcessingJobSpec:
    if container is not None:
        stage["securityContext"] = container
    body = spec_of(image_stage(**stage), **({"podTemplate": {"spec": {"securityContext": pod}}} if pod else {}))
    return ProcessingJobSpec.model_validate(body)


ROOT = {"runAsUser": 0, "runAsNonRoot": False}


@pytest.mark.parametrize(
    ("job", "field"),
    [
        pytest.param(spec(pod=ROOT), "spec.podTemplate.spec.securityContext.runAsUser: 0 (root)", id="pod uid 0"),
        pytest.param(spec(pod=ROOT), "spec.podTemplate.spec.securityContext.runAsNonRoot: false", id="non-root off"),
        pytest.param(spec(pod={"runAsGroup": 0}), "securityContext.runAsGroup: 0 (root)", id="pod gid 0"),
        pytest.param(spec(pod={"fsGroup": 0}), "securityContext.fsGroup: 0 (root)", id="fsGroup 0"),
        pytest.param(
            spec(pod={"supplementalGroups": [5, 0]}), "securityContext.supplementalGroups: 0 (root)", id="group 0"
        ),
        pytest.param(spec(container=ROOT), "spec.stages[0].securityContext.runAsUser: 0 (root)", id="container uid 0"),
        pytest.param(spec(container={"runAsGroup": 0}), "stages[0].securityContext.runAsGroup: 0", id="container gid"),
        pytest.param(
            spec(container={"runAsNonRoot": False}),
            "spec.stages[0].securityContext.runAsNonRoot: false",
            id="container non-root off",
        ),
        pytest.param(
            spec(container={"allowPrivilegeEscalation": True}),
            "spec.stages[0].securityContext.allowPrivilegeEscalation: true",
            id="privilege escalation",
        ),
        pytest.param(
            spec(container={"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN", "SETUID"]}}),
            "spec.stages[0].securityContext.capabilities.add: CHOWN, SETUID",
            id="baseline capabilities",
        ),
        pytest.param(
            ProcessingJobSpec.model_validate(
                spec_of(image_stage(podTemplate={"spec": {"securityContext": {"runAsUser": 0, "runAsNonRoot": False}}}))
            ),
            "spec.stages[0].podTemplate.spec.securityContext.runAsUser: 0 (root)",
            id="a stage's template",
        ),
    ],
)
def test_beyond_restricted_is_refused_outside_the_listed_namespaces_naming_the_field(
    job: ProcessingJobSpec, field: str
) -> None:
    found = security_problems(job, JOB_NAMESPACE, UNLISTED)
    assert any(field in problem for problem in found), found
    *fields, note = found
    assert all(problem.endswith("needs the Pod Security Standards' baseline profile") for problem in fields), found
    assert note == (
        "spec: restricted applies in namespace media; the operator allows baseline only in the namespaces it "
        "lists (--baseline-namespaces: legacy)"
    )
    assert security_problems(job, JOB_NAMESPACE, LISTED) == []


@pytest.mark.parametrize(
    "job",
    [
        pytest.param(spec(), id="the defaults"),
        pytest.param(spec(pod={"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}), id="another uid and gid"),
        pytest.param(spec(pod={"supplementalGroups": [1, 2]}), id="supplemental groups"),
        pytest.param(spec(container={"readOnlyRootFilesystem": False}), id="a writable root filesystem"),
        pytest.param(spec(container={"capabilities": {"add": ["NET_BIND_SERVICE"]}}), id="NET_BIND_SERVICE"),
        pytest.param(
            spec(pod={"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}), id="a Localhost profile"
        ),
        pytest.param(spec(container={"runAsNonRoot": True, "allowPrivilegeEscalation": False}), id="tightened"),
    ],
)
def test_restricted_allows_another_non_root_identity_and_a_writable_root(job: ProcessingJobSpec) -> None:
    assert security_problems(job, JOB_NAMESPACE, UNLISTED) == []


@pytest.mark.parametrize(
    "job",
    [
        pytest.param(spec(pod={"runAsUser": 0}), id="uid 0 at the pod, non-root by default"),
        pytest.param(spec(container={"runAsUser": 0}), id="uid 0 at the container"),
        pytest.param(spec(pod={"runAsUser": 0, "runAsNonRoot": False}, container={"runAsNonRoot": True}), id="mixed"),
    ],
)
def test_root_while_non_root_is_required_is_refused_everywhere(job: ProcessingJobSpec) -> None:
    """The kubelet would refuse to start the container; the attempt would only time out."""
    for config in (LISTED, UNLISTED):
        found = security_problems(job, JOB_NAMESPACE, config)
        assert any("spec.stages[0]: the container would run as uid 0 while runAsNonRoot is true" in p for p in found)


def test_root_in_a_listed_namespace_is_rendered_as_asked() -> None:
    body = spec_of(
        image_stage(securityContext={"allowPrivilegeEscalation": True, "capabilities": {"add": ["CHOWN"]}}),
        podTemplate={"spec": {"securityContext": ROOT}},
    )
    job = make_job(body)
    assert job.spec is not None
    assert validate_spec(job.spec, LISTED, JOB_NAMESPACE) == []
    pod = build_pod(job, 0, 1, {}, LISTED)
    assert pod["spec"]["securityContext"]["runAsUser"] == 0
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is False
    (main,) = pod["spec"]["containers"]
    assert main["securityContext"]["runAsNonRoot"] is False
    assert main["securityContext"]["allowPrivilegeEscalation"] is True
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert "InvalidSpec" not in str(validate_spec(job.spec, LISTED, JOB_NAMESPACE))
    assert validate_spec(job.spec, UNLISTED, JOB_NAMESPACE) != []


# -- property: whatever the schema lets through and restricted does not refuse, the pod is restricted


IDS = st.none() | st.sampled_from([0, 1, 1000, 65532])
BOOLS = st.none() | st.booleans()
CONTEXTS = st.fixed_dictionaries(
    {},
    optional={"runAsUser": IDS, "runAsGroup": IDS, "runAsNonRoot": BOOLS},
)


def _clean(context: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(
    CONTEXTS,
    CONTEXTS,
    st.fixed_dictionaries(
        {},
        optional={
            "allowPrivilegeEscalation": BOOLS,
            "capabilities": st.builds(
                lambda add: {"add": add}, st.lists(st.sampled_from(BASELINE_CAPABILITIES), unique=True)
            ),
            "readOnlyRootFilesystem": BOOLS,
        },
    ),
    st.none() | IDS,
)
def test_a_pod_that_passes_keeps_the_restricted_profile(
    pod: dict[str, Any], container: dict[str, Any], extra: dict[str, Any], fs_group: int | None
) -> None:
    pod_context = _clean({**pod, "fsGroup": fs_group})
    job = make_job(
        spec_of(
            image_stage(securityContext={**_clean(container), **_clean(extra)}),
            podTemplate={"spec": {"securityContext": pod_context}},
        )
    )
    assert job.spec is not None
    if validate_spec(job.spec, UNLISTED, JOB_NAMESPACE):
        return
    manifest = build_pod(job, 0, 1, {}, UNLISTED)
    pod_sc = manifest["spec"]["securityContext"]
    (main,) = manifest["spec"]["containers"]
    sc = main["securityContext"]
    # the Pod Security Standards' restricted checks, as k8s.io/pod-security-admission words them
    assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
    assert pod_sc.get("runAsUser") != 0
    assert sc.get("runAsUser") != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert "ALL" in sc["capabilities"]["drop"]
    assert set(sc["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
    assert sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
    assert sc["privileged"] is False
    assert {0} & {pod_sc.get("runAsGroup"), pod_sc.get("fsGroup"), sc.get("runAsGroup")} == set()
