"""validate_spec: what only the operator's settings can refuse, each problem naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from procjob.core.config import CoreConfig
from procjob.core.validation import is_kubernetes_key, validate_spec, value_at
from procjob.models.spec import ProcessingJobSpec
from tests.unit.core.builders import JOB_NAMESPACE as NAMESPACE
from tests.unit.core.builders import image_stage, spec_of


def problems(config: CoreConfig | None = None, **pod_metadata: Any) -> list[str]:
    spec = ProcessingJobSpec.model_validate(spec_of(image_stage(podMetadata=pod_metadata)))
    return validate_spec(spec, config or CoreConfig(), NAMESPACE)


@pytest.mark.parametrize(
    ("key", "kubernetes"),
    [
        pytest.param("kubernetes.io/x", True, id="the kubernetes.io domain itself"),
        pytest.param("k8s.io/x", True, id="the k8s.io domain itself"),
        pytest.param("container.apparmor.security.beta.kubernetes.io/main", True, id="a kubernetes.io subdomain"),
        pytest.param("foo.k8s.io/x", True, id="a k8s.io subdomain"),
        pytest.param("app.kubernetes.io/name", True, id="the well-known app labels are in the domain too"),
        pytest.param("notkubernetes.io/x", False, id="a domain that only ends in the same letters"),
        pytest.param("kubernetes.io.example.com/x", False, id="a domain that only starts with it"),
        pytest.param("kubernetes.io", False, id="a key without a prefix is no domain"),
        pytest.param("example.com/kubernetes.io", False, id="the name part does not count"),
        pytest.param("karpenter.sh/do-not-disrupt", False, id="other vendors' domains are the job author's choice"),
    ],
)
def test_kubernetes_domains(key: str, kubernetes: bool) -> None:
    assert is_kubernetes_key(key) is kubernetes


@pytest.mark.parametrize(
    ("metadata", "allowed", "expected"),
    [
        pytest.param(
            {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}},
            (),
            [
                "spec.stages[0].podMetadata.annotations: 'container.apparmor.security.beta.kubernetes.io/main' is "
                "in the kubernetes.io/k8s.io domains, which the operator does not allow (allowed prefixes: none)"
            ],
            id="an AppArmor opt-out annotation is refused",
        ),
        pytest.param(
            {"labels": {"foo.k8s.io/x": "y"}},
            ("cluster-autoscaler.kubernetes.io/",),
            [
                "spec.stages[0].podMetadata.labels: 'foo.k8s.io/x' is in the kubernetes.io/k8s.io domains, which "
                "the operator does not allow (allowed prefixes: cluster-autoscaler.kubernetes.io/)"
            ],
            id="a k8s.io label is refused when another prefix is allowed",
        ),
        pytest.param(
            {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}},
            ("cluster-autoscaler.kubernetes.io/",),
            [],
            id="an annotation under an allowed prefix is accepted",
        ),
        pytest.param(
            {"labels": {"app.kubernetes.io/name": "thumbs"}, "annotations": {"kubernetes.io/x": "1"}},
            ("app.kubernetes.io/name",),
            [
                "spec.stages[0].podMetadata.annotations: 'kubernetes.io/x' is in the kubernetes.io/k8s.io "
                "domains, which the operator does not allow (allowed prefixes: app.kubernetes.io/name)"
            ],
            id="a prefix may name one key exactly; labels and annotations are checked alike",
        ),
        pytest.param(
            {"labels": {"team": "media", "example.com/tier": "batch"}, "annotations": {"rig.procjob.dev/x": "1"}},
            (),
            [],
            id="keys outside the Kubernetes domains are accepted",
        ),
    ],
)
def test_metadata_in_the_kubernetes_domains_needs_an_allowed_prefix(
    metadata: dict[str, Any], allowed: tuple[str, ...], expected: list[str]
) -> None:
    assert problems(CoreConfig(allowed_metadata_prefixes=allowed), **metadata) == expected


def test_every_stage_is_checked_and_named_by_its_index() -> None:
    spec = ProcessingJobSpec.model_validate(
        spec_of(image_stage("a"), image_stage("b", podMetadata={"labels": {"k8s.io/x": "y"}}))
    )
    (problem,) = validate_spec(spec, CoreConfig(), NAMESPACE)
    assert problem.startswith("spec.stages[1].podMetadata.labels: 'k8s.io/x'")


def test_pod_templates_metadata_is_checked_like_pod_metadata() -> None:
    stage = image_stage("a", podTemplate={"metadata": {"annotations": {"kubernetes.io/stage": "1"}}})
    spec = ProcessingJobSpec.model_validate(
        spec_of(stage, podTemplate={"metadata": {"labels": {"node.kubernetes.io/x": "y"}}})
    )
    found = validate_spec(spec, CoreConfig(), NAMESPACE)
    assert [problem.split(":")[0] for problem in found] == [
        "spec.podTemplate.metadata.labels",
        "spec.stages[0].podTemplate.metadata.annotations",
    ]
    allowed = CoreConfig(allowed_metadata_prefixes=("node.kubernetes.io/", "kubernetes.io/stage"))
    assert validate_spec(spec, allowed, NAMESPACE) == []


def test_security_contexts_are_checked_against_the_namespaces_profile() -> None:
    spec = ProcessingJobSpec.model_validate(spec_of(image_stage(securityContext={"allowPrivilegeEscalation": True})))
    problem, note = validate_spec(spec, CoreConfig(), NAMESPACE)
    assert problem == (
        "spec.stages[0].securityContext.allowPrivilegeEscalation: true needs the Pod Security Standards' "
        "baseline profile"
    )
    assert "--baseline-namespaces: none" in note
    assert validate_spec(spec, CoreConfig(baseline_namespaces=frozenset({NAMESPACE})), NAMESPACE) == []


def test_service_accounts_and_templates_are_still_checked() -> None:
    spec = ProcessingJobSpec.model_validate(
        spec_of(image_stage(args=["{{ stages.nope.outputs.k }}"]), serviceAccountName="admin")
    )
    assert validate_spec(spec, CoreConfig(allowed_service_accounts=frozenset({"reader"})), NAMESPACE) == [
        "spec.stages[0].args[0]: {{ stages.nope.outputs.k }} names stage 'nope', which does not exist",
        "spec.serviceAccountName: 'admin' is not allowed by the operator (allowed: reader)",
    ]


# Hostile values: deep, wide, odd. Whatever parses must validate without an exception.
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
)
KUBERNETES_KEYS = ["kubernetes.io/x", "k8s.io/x", "a.k8s.io/x", "container.apparmor.security.beta.kubernetes.io/m"]
keys = (
    st.text(max_size=40)
    | st.from_regex(r"\A([a-z0-9.]{1,30}/)?[A-Za-z0-9._-]{1,20}\Z")
    | st.sampled_from(KUBERNETES_KEYS)
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    uses=st.sampled_from(["fetch", "checksum", "upload"]),
    params=st.dictionaries(
        st.text(max_size=8) | st.sampled_from(["url", "bucket", "key", "maxBytes"]), values, max_size=6
    ),
    labels=st.dictionaries(keys, st.text(max_size=10), max_size=4),
    annotations=st.dictionaries(keys, st.text(max_size=10), max_size=4),
    allowed=st.lists(st.sampled_from(["kubernetes.io/", "k8s.io/", "a.k8s.io/x"]), max_size=2),
)
def test_validate_spec_never_raises_on_a_spec_that_parsed(
    uses: str, params: dict[str, Any], labels: dict[str, str], annotations: dict[str, str], allowed: list[str]
) -> None:
    body = spec_of(
        {"name": "f", "uses": uses, "with": params},
        image_stage(podMetadata={"labels": labels, "annotations": annotations}),
    )
    try:
        spec = ProcessingJobSpec.model_validate(body)
    except ValidationError:
        return
    found = validate_spec(spec, CoreConfig(allowed_metadata_prefixes=tuple(allowed)), NAMESPACE)
    assert all(problem.startswith("spec.") for problem in found)
    refused = {key for key in [*labels, *annotations] if is_kubernetes_key(key) and not key.startswith(tuple(allowed))}
    assert all(any(repr(key) in problem for problem in found) for key in refused)


def test_the_deepest_with_the_model_accepts_is_walked_without_trouble() -> None:
    deep = {"h": {"a": ["{{ job.name }}", "{{ job.bad }}"]}, "l": ["x"], "s": "{{ job.uid }}"}
    spec = ProcessingJobSpec.model_validate(spec_of({"name": "f", "uses": "fetch", "with": deep}))
    found = validate_spec(spec, CoreConfig(), NAMESPACE)
    assert [p for p in found if "template" in p] == ["spec.stages[0].with.h.a[1]: unknown template {{ job.bad }}"]
    # fetch knows none of these parameters: each is named as well, after the template problem
    assert found[1:] == [
        "spec.stages[0].with.url: Field required",
        "spec.stages[0].with.bucket: Field required",
        "spec.stages[0].with.key: Field required",
        "spec.stages[0].with.h: Extra inputs are not permitted",
        "spec.stages[0].with.l: Extra inputs are not permitted",
        "spec.stages[0].with.s: Extra inputs are not permitted",
    ]


# -- built-in stages: `uses` names a registered stage, `with` fits its parameters ------------------
FETCH_WITH = {"url": "https://example.org/{{ job.name }}.jpg", "bucket": "media", "key": "raw/{{ job.uid }}"}


def stage_problems(*stages: dict[str, Any]) -> list[str]:
    return validate_spec(ProcessingJobSpec.model_validate(spec_of(*stages)), CoreConfig(), NAMESPACE)


def test_an_unknown_built_in_stage_is_named_with_the_known_ones() -> None:
    assert stage_problems(image_stage(), {"name": "up", "uses": "upload", "with": {"to": "x"}}) == [
        "spec.stages[1].uses: unknown built-in stage 'upload' (known: fetch, checksum)"
    ]


@pytest.mark.parametrize(
    ("uses", "params", "expected"),
    [
        pytest.param("fetch", FETCH_WITH, [], id="a valid fetch with templates passes"),
        pytest.param(
            "checksum",
            {"bucket": "{{ stages.a.outputs.bucket }}", "key": "{{ stages.a.outputs.key }}"},
            [],
            id="values that are templates wait for the worker",
        ),
        pytest.param(
            "fetch",
            {
                **FETCH_WITH,
                "maxBytes": "{{ stages.a.outputs.size }}",
                "contentTypes": ["{{ stages.a.outputs.contentType }}"],
            },
            [],
            id="a templated number or list item waits for the worker too",
        ),
        pytest.param(
            "fetch",
            {**FETCH_WITH, "url": "ftp://example.org/x?sig=secret"},
            ["spec.stages[1].with.url: only http and https URLs can be fetched"],
            id="a bad url is named without its value",
        ),
        pytest.param(
            "fetch",
            {"url": "https://e.org/a", "key": "k"},
            ["spec.stages[1].with.bucket: Field required"],
            id="a missing parameter is named",
        ),
        pytest.param(
            "fetch",
            {**FETCH_WITH, "mxBytes": "{{ stages.a.outputs.size }}"},
            ["spec.stages[1].with.mxBytes: Extra inputs are not permitted"],
            id="a misspelt parameter is named even when its value is a template",
        ),
        pytest.param(
            "fetch",
            {**FETCH_WITH, "contentTypes": [5, "{{ stages.a.outputs.contentType }}"]},
            ["spec.stages[1].with.contentTypes[0]: Input should be a valid string"],
            id="a list item is named by its index",
        ),
        pytest.param(
            "checksum",
            {"bucket": "media", "key": "k", "expectSha256": "abc"},
            ["spec.stages[1].with.expectSha256: a sha256 digest is 64 hexadecimal digits"],
            id="checksum checks its digest",
        ),
        pytest.param(
            "checksum",
            None,
            ["spec.stages[1].with.bucket: Field required", "spec.stages[1].with.key: Field required"],
            id="no with at all is an empty one",
        ),
    ],
)
def test_with_is_checked_against_the_stages_parameters(
    uses: str, params: dict[str, Any] | None, expected: list[str]
) -> None:
    fetch_a = {"name": "a", "uses": "fetch", "with": FETCH_WITH}
    stage = {"name": "b", "uses": uses, **({"with": params} if params is not None else {})}
    assert stage_problems(fetch_a, stage) == expected


def test_a_template_may_name_only_outputs_a_built_in_stage_writes() -> None:
    fetch = {"name": "get", "uses": "fetch", "with": FETCH_WITH}
    stage = image_stage(
        "use",
        args=["{{ stages.get.outputs.sha256 }}", "{{ stages.get.outputs.path }}", "{{ job.name }}"],
        env=[{"name": "K", "value": "{{ stages.other.outputs.anything }}"}],
    )
    other = image_stage("other")
    assert stage_problems(fetch, other, stage) == [
        "spec.stages[2].args[1]: {{ stages.get.outputs.path }}: built-in stage 'get' has no output 'path' "
        "(outputs: bucket, key, size, sha256, contentType, etag)"
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param((), {"a": [1, {"b": 2}]}, id="no path is the whole value"),
        pytest.param(("a", 1, "b"), 2, id="keys and indexes"),
        pytest.param(("a", 5), None, id="an index past the end"),
        pytest.param(("a", "b"), None, id="a key into a list"),
        pytest.param(("z",), None, id="a missing key"),
        pytest.param(("a", 0, "c"), None, id="a key into a number"),
    ],
)
def test_value_at_follows_a_problems_path(path: tuple[str | int, ...], expected: Any) -> None:
    assert value_at({"a": [1, {"b": 2}]}, path) == expected


def finally_problems(*final: dict[str, Any], config: CoreConfig | None = None, **spec: Any) -> list[str]:
    body = spec_of(image_stage(), **{"finally": list(final), **spec})
    return validate_spec(ProcessingJobSpec.model_validate(body), config or CoreConfig(), NAMESPACE)


def test_finally_stages_are_checked_like_stages_and_named_by_their_path() -> None:
    found = finally_problems(
        image_stage("notify", podMetadata={"labels": {"kubernetes.io/x": "y"}}),
        {"name": "fetch", "uses": "fetchh"},
        image_stage("root", securityContext={"runAsUser": 0, "runAsNonRoot": False}),
    )
    assert found[0].startswith("spec.finally[1].uses: unknown built-in stage 'fetchh'")
    assert found[1].startswith("spec.finally[0].podMetadata.labels: 'kubernetes.io/x' is in the kubernetes.io")
    assert any(p.startswith("spec.finally[2].securityContext.runAsUser: 0 (root)") for p in found), found
    assert found[-1].startswith("spec: restricted applies in namespace media")
    assert sum(p.startswith("spec: restricted") for p in found) == 1


def test_job_wide_security_problems_are_reported_once_with_finally_stages() -> None:
    found = finally_problems(
        image_stage("cleanup"), podTemplate={"spec": {"securityContext": {"runAsUser": 0, "runAsNonRoot": False}}}
    )
    assert found == list(dict.fromkeys(found))
    assert found[-1].startswith("spec: restricted applies")


def test_a_dependency_cycle_is_the_only_problem_reported() -> None:
    body = spec_of(
        image_stage("a", dependsOn=["b"], args=["{{ stages.b.outputs.k }}"]),
        image_stage("b", dependsOn=["a"]),
        **{"finally": [image_stage("x", dependsOn=["y"]), image_stage("y", dependsOn=["x"])]},
    )
    found = validate_spec(ProcessingJobSpec.model_validate(body), CoreConfig(), NAMESPACE)
    assert found == [
        "spec.stages[0].dependsOn: stage 'a' is on a dependency cycle (a waits for b waits for a), "
        "so it could never start",
        "spec.finally[0].dependsOn: stage 'x' is on a dependency cycle (x waits for y waits for x), "
        "so it could never start",
    ]
