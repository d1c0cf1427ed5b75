"""validate_spec: what only the operator's settings can refuse, each problem naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from procjob.core.config import CoreConfig
from procjob.core.validation import is_kubernetes_key, validate_spec
from procjob.models.spec import ProcessingJobSpec
from tests.unit.core.builders import image_stage, spec_of


def problems(config: CoreConfig | None = None, **pod_metadata: Any) -> list[str]:
    spec = ProcessingJobSpec.model_validate(spec_of(image_stage(podMetadata=pod_metadata)))
    return validate_spec(spec, config or CoreConfig())


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
    (problem,) = validate_spec(spec, CoreConfig())
    assert problem.startswith("spec.stages[1].podMetadata.labels: 'k8s.io/x'")


def test_service_accounts_and_templates_are_still_checked() -> None:
    spec = ProcessingJobSpec.model_validate(
        spec_of(image_stage(args=["{{ stages.nope.outputs.k }}"]), serviceAccountName="admin")
    )
    assert validate_spec(spec, CoreConfig(allowed_service_accounts=frozenset({"reader"}))) == [
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
    params=st.dictionaries(st.text(max_size=8), values, max_size=6),
    labels=st.dictionaries(keys, st.text(max_size=10), max_size=4),
    annotations=st.dictionaries(keys, st.text(max_size=10), max_size=4),
    allowed=st.lists(st.sampled_from(["kubernetes.io/", "k8s.io/", "a.k8s.io/x"]), max_size=2),
)
def test_validate_spec_never_raises_on_a_spec_that_parsed(
    params: dict[str, Any], labels: dict[str, str], annotations: dict[str, str], allowed: list[str]
) -> None:
    body = spec_of(
        {"name": "f", "uses": "fetch", "with": params},
        image_stage(podMetadata={"labels": labels, "annotations": annotations}),
    )
    try:
        spec = ProcessingJobSpec.model_validate(body)
    except ValidationError:
        return
    found = validate_spec(spec, CoreConfig(allowed_metadata_prefixes=tuple(allowed)))
    assert all(problem.startswith("spec.") for problem in found)
    refused = {key for key in [*labels, *annotations] if is_kubernetes_key(key) and not key.startswith(tuple(allowed))}
    assert all(any(repr(key) in problem for problem in found) for key in refused)


def test_the_deepest_with_the_model_accepts_is_walked_without_trouble() -> None:
    deep = {"h": {"a": ["{{ job.name }}", "{{ job.bad }}"]}, "l": ["x"], "s": "{{ job.uid }}"}
    spec = ProcessingJobSpec.model_validate(spec_of({"name": "f", "uses": "fetch", "with": deep}))
    assert validate_spec(spec, CoreConfig()) == ["spec.stages[0].with.h.a[1]: unknown template {{ job.bad }}"]
