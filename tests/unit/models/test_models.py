"""The pydantic models: what a spec may say, errors that name the field, and the wire form."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from procjob.models.audit import AuditEntry, AuditRecord
from procjob.models.job import JobMeta, ProcessingJob, describe_validation_error
from procjob.models.spec import MAX_RULES, MAX_STAGES, PodGC, ProcessingJobSpec, RetryAction
from procjob.models.status import MAX_ATTEMPTS_KEPT, Attempt, AttemptState, ProcessingJobStatus
from procjob.models.syntax import quantity_value

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def image(name: str = "work", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.example.com/work:1", **fields}


def spec(*stages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"stages": list(stages) or [image()], **fields}


def problems(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ProcessingJobSpec.model_validate(body)
    return describe_validation_error(caught.value, "spec")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            spec({"name": "a", "image": "x", "uses": "fetch"}),
            "spec.stages[0]: Value error, set exactly one of image or uses",
            id="a stage with both image and uses is refused",
        ),
        pytest.param(
            spec({"name": "a"}),
            "spec.stages[0]: Value error, set exactly one of image or uses",
            id="a stage with neither image nor uses is refused",
        ),
        pytest.param(
            spec(image("a"), image("b"), image("a")),
            "spec.stages: Value error, stage names must be unique: 'a' appears twice",
            id="duplicate stage names are refused at spec.stages",
        ),
        pytest.param(
            spec(image("ok"), image("Not_A_Label")),
            "spec.stages[1].name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
            id="a stage name that is not a DNS label is refused",
        ),
        pytest.param(
            spec(image("a" * 41)),
            "spec.stages[0].name: String should have at most 40 characters",
            id="a stage name over 40 characters is refused",
        ),
        pytest.param(
            spec(retry={"limit": -1}),
            "spec.retry.limit: Input should be greater than or equal to 0",
            id="a negative retry limit is refused",
        ),
        pytest.param(
            spec(image(retry={"limit": 51})),
            "spec.stages[0].retry.limit: Input should be less than or equal to 50",
            id="a stage retry limit over 50 is refused",
        ),
        pytest.param(
            spec(retry={"backoff": {"initialSeconds": 1}, "delaysSeconds": [1, 4]}),
            "spec.retry: Value error, set backoff or delaysSeconds, not both",
            id="backoff and delaysSeconds together are refused",
        ),
        pytest.param(
            spec(retry={"backoff": {"factor": 0.5}}),
            "spec.retry.backoff.factor: Input should be greater than or equal to 1",
            id="a backoff factor below 1 is refused",
        ),
        pytest.param(
            spec(retry={"rules": [{"action": "Retry"}]}),
            "spec.retry.rules[0]: Value error, a rule needs onExitCodes or onReasons",
            id="a rule without a matcher is refused",
        ),
        pytest.param(
            spec(retry={"rules": [{"onReasons": ["Sneezed"], "action": "Retry"}]}),
            "spec.retry.rules[0].onReasons[0]: Input should be",
            id="an unknown failure reason is refused",
        ),
        pytest.param(
            spec(retry={"rules": [{"onExitCodes": [256], "action": "Retry"}]}),
            "spec.retry.rules[0].onExitCodes[0]: Input should be less than or equal to 255",
            id="an exit code over 255 is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {"procjob.dev/job": "x"}})),
            "spec.stages[0].podMetadata.labels: Value error, labels under procjob.dev/ are reserved for the operator",
            id="a label under procjob.dev/ is reserved",
        ),
        pytest.param(
            spec(*[image(f"s{i}") for i in range(MAX_STAGES + 1)]),
            "spec.stages: List should have at most 32 items after validation, not 33",
            id="more than 32 stages are refused",
        ),
        pytest.param(
            spec(stages=[]),
            "spec.stages: List should have at least 1 item after validation, not 0",
            id="a job needs a stage",
        ),
        pytest.param(
            spec(retry={"rules": [{"onExitCodes": [1], "action": "Retry"}] * (MAX_RULES + 1)}),
            "spec.retry.rules: List should have at most 16 items after validation, not 17",
            id="more than 16 rules are refused",
        ),
        pytest.param(
            spec(retry={"delaysSeconds": [1] * 51}),
            "spec.retry.delaysSeconds: List should have at most 50 items after validation, not 51",
            id="more than 50 explicit delays are refused",
        ),
        pytest.param(
            spec(image(args=["a"] * 257)),
            "spec.stages[0].args: List should have at most 256 items after validation, not 257",
            id="more than 256 args are refused",
        ),
        pytest.param(
            spec(image(env=[{"name": f"V{i}", "value": "x"} for i in range(129)])),
            "spec.stages[0].env: List should have at most 128 items after validation, not 129",
            id="more than 128 env variables are refused",
        ),
        pytest.param(
            spec(image(command=["x" * 4097])),
            "spec.stages[0].command[0]: String should have at most 4096 characters",
            id="an over-long command string is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {f"k{i}": "v" for i in range(33)}})),
            "spec.stages[0].podMetadata.labels: Dictionary should have at most 32 items after validation",
            id="more than 32 pod labels are refused",
        ),
        pytest.param(
            spec(image() | {"with": {"a": 1}}),
            "spec.stages[0]: Value error, with is for built-in stages (uses)",
            id="with on an image stage is refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])),
            "spec.stages[0].env[0]: Value error, set value or valueFrom",
            id="an env variable with value and valueFrom is refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "A", "valueFrom": {}}])),
            "spec.stages[0].env[0].valueFrom: Value error, set exactly one of secretKeyRef or configMapKeyRef",
            id="an env source with no reference is refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "1A", "value": "x"}])),
            "spec.stages[0].env[0].name: String should match pattern",
            id="an env name starting with a digit is refused",
        ),
        pytest.param(
            spec(image(envFrom=[{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}])),
            "spec.stages[0].envFrom[0]: Value error, set exactly one of secretRef or configMapRef",
            id="an envFrom with two sources is refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"memory": "lots"}})),
            "spec.stages[0].resources.limits.memory: String should match pattern",
            id="a resource quantity that is not a quantity is refused",
        ),
        pytest.param(
            spec(image(imagePullPolicy="Sometimes")),
            "spec.stages[0].imagePullPolicy: String should match pattern",
            id="an unknown image pull policy is refused",
        ),
        pytest.param(
            spec(image(timeoutSeconds=0)),
            "spec.stages[0].timeoutSeconds: Input should be greater than or equal to 1",
            id="a zero attempt timeout is refused",
        ),
        pytest.param(spec(podGC="Sometimes"), "spec.podGC: Input should be", id="an unknown podGC is refused"),
        pytest.param(
            spec(serviceAccountName="Admin!"),
            "spec.serviceAccountName: String should match pattern",
            id="a service account name that is not a DNS label is refused",
        ),
        pytest.param(
            spec(image(hostNetwork=True)),
            "spec.stages[0].hostNetwork: Extra inputs are not permitted",
            id="a field the spec does not have (hostNetwork) is refused, not dropped",
        ),
        pytest.param(
            spec(privileged=True),
            "spec.privileged: Extra inputs are not permitted",
            id="an unknown spec field is refused",
        ),
    ],
)
def test_bad_specs_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    assert problems(body).startswith(message)


def fetch(params: Any = None, **fields: Any) -> dict[str, Any]:
    body = {"url": "https://example.org/a.jpg", "bucket": "media", "key": "raw/a.jpg"} if params is None else params
    return {"name": "f", "uses": "fetch", "with": body, **fields}


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


WITH_SHAPE = "a parameter may be a scalar, a list of scalars, or an object whose values are scalars or lists of scalars"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            spec(image(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}})),
            "spec.stages[0].resources: Value error, requests must not exceed limits: cpu requests 2, limits 1500m",
            id="requests above limits are refused",
        ),
        pytest.param(
            spec(image(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "1000Mi"}})),
            "spec.stages[0].resources: Value error, requests must not exceed limits: memory",
            id="binary suffixes are compared exactly",
        ),
        pytest.param(
            spec(image(resources={"requests": {"example.com/gpu": "1"}})),
            "spec.stages[0].resources: Value error, a request of hugepages or an extended resource needs an equal "
            "limit: example.com/gpu",
            id="an extended resource needs a limit equal to its request",
        ),
        pytest.param(
            spec(
                image(resources={"requests": {"hugepages-2Mi": "2Mi"}, "limits": {"hugepages-2Mi": "4Mi", "cpu": "1"}})
            ),
            "spec.stages[0].resources: Value error, a request of hugepages or an extended resource needs an equal",
            id="hugepages cannot be overcommitted",
        ),
        pytest.param(
            spec(image(resources={"limits": {"cpu": "-1"}})),
            "spec.stages[0].resources.limits.cpu: String should match pattern",
            id="a negative quantity is refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"memory": "1mi"}})),
            "spec.stages[0].resources.limits.memory: String should match pattern",
            id="a lower-case binary suffix is refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"cpu": "1e1000000"}})),
            "spec.stages[0].resources.limits.cpu: String should match pattern",
            id="an exponent of more than 3 digits is refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"gpu": "1"}})),
            "spec.stages[0].resources.limits: Value error, resource names must be cpu, memory, ephemeral-storage, "
            "hugepages-<size> or domain/name: 'gpu'",
            id="an unqualified resource name must be a standard one",
        ),
        pytest.param(
            spec(image(resources={"limits": {"example.com/a/b": "1"}})),
            "spec.stages[0].resources.limits: Value error, resource names must be cpu, memory, ephemeral-storage, "
            "hugepages-<size> or domain/name: 'example.com/a/b' is not a qualified name",
            id="a resource name must be a qualified name",
        ),
        pytest.param(
            spec(image(resources={"limits": {"requests.example.com/gpu": "1"}})),
            "spec.stages[0].resources.limits: Value error, resource names must be",
            id="a resource name with the quota's requests. prefix is refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"example.com/gpu": "500m"}})),
            "spec.stages[0].resources.limits: Value error, extended resources (domain/name) take whole numbers: "
            "example.com/gpu is 500m",
            id="a fraction of an extended resource is refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"hugepages-2Mi": "3Mi", "memory": "1Gi"}})),
            "spec.stages[0].resources.limits: Value error, hugepages-<size>: the amount must be a whole multiple of "
            "the page size: hugepages-2Mi is 3Mi",
            id="hugepages that are not a multiple of the page size are refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"hugepages-abc": "2Mi", "memory": "1Gi"}})),
            "spec.stages[0].resources.limits: Value error, hugepages-<size>: the amount must be a whole multiple",
            id="hugepages of a size that is not a quantity are refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"hugepages-2Mi": "2Mi"}})),
            "spec.stages[0].resources: Value error, hugepages need a cpu or memory request or limit",
            id="hugepages alone are refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {"a/b/c": "x"}})),
            "spec.stages[0].podMetadata.labels: Value error, label keys must be qualified names ([prefix/]name): "
            "'a/b/c' is not a qualified name",
            id="a label key with two slashes is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {"Example.com/x": "y"}})),
            "spec.stages[0].podMetadata.labels: Value error, label keys must be qualified names",
            id="a label key prefix must be a lower-case DNS subdomain",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {"x" * 64: "y"}})),
            "spec.stages[0].podMetadata.labels: Value error, label keys must be qualified names",
            id="a label key name over 63 characters is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {("a" * 60 + ".") * 5 + "io/x": "y"}})),
            "spec.stages[0].podMetadata.labels: Value error, label keys must be qualified names",
            id="a label key prefix over 253 characters is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"annotations": {"-x": "y"}})),
            "spec.stages[0].podMetadata.annotations: Value error, annotation keys must be qualified names",
            id="an annotation key starting with a dash is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {"team": "media team"}})),
            "spec.stages[0].podMetadata.labels.team: String should match pattern",
            id="a label value with a space is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {"team": "x" * 64}})),
            "spec.stages[0].podMetadata.labels.team: String should have at most 63 characters",
            id="a label value over 63 characters is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"annotations": {"procjob.dev/retry": "x"}})),
            "spec.stages[0].podMetadata.annotations: Value error, annotations under procjob.dev/ are reserved for "
            "the operator",
            id="an annotation under procjob.dev/ is reserved",
        ),
        pytest.param(
            spec(image(podMetadata={"annotations": {f"k{i}": "x" * 8000 for i in range(9)}})),
            "spec.stages[0].podMetadata.annotations: Value error, annotations must total at most 65536 characters",
            id="annotations over 64 KiB in all are refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "PROCJOB_FETCH_ALLOWED_NETWORKS", "value": "0.0.0.0/0"}])),
            "spec.stages[0].env[0].name: Value error, names starting with PROCJOB_ are reserved for the operator",
            id="a PROCJOB_ env name is refused",
        ),
        pytest.param(
            spec(image(envFrom=[{"prefix": "PROCJOB_", "secretRef": {"name": "s"}}])),
            "spec.stages[0].envFrom[0].prefix: Value error, an envFrom prefix starting with PROCJOB_ is reserved",
            id="an envFrom prefix starting with PROCJOB_ is refused",
        ),
        pytest.param(
            spec(fetch(env=[{"name": "AWS_ENDPOINT_URL", "value": "http://evil.example"}])),
            "spec.stages[0]: Value error, env names starting with AWS_ or PROCJOB_ are reserved on built-in (uses)",
            id="an AWS_ env name on a built-in stage is refused",
        ),
        pytest.param(
            spec(fetch(envFrom=[{"configMapRef": {"name": "c"}}])),
            "spec.stages[0]: Value error, envFrom on a built-in (uses) stage needs a prefix that cannot make",
            id="envFrom without a prefix on a built-in stage is refused",
        ),
        pytest.param(
            spec(fetch(envFrom=[{"prefix": "AW", "configMapRef": {"name": "c"}}])),
            "spec.stages[0]: Value error, envFrom on a built-in (uses) stage needs a prefix that cannot make",
            id="an envFrom prefix that could make AWS_ names on a built-in stage is refused",
        ),
        pytest.param(
            spec(image(image=" registry.example.com/work:1")),
            "spec.stages[0].image: String should match pattern",
            id="an image with leading whitespace is refused (the Pod API would)",
        ),
        pytest.param(
            spec(image(envFrom=[{"prefix": "A=", "configMapRef": {"name": "c"}}])),
            "spec.stages[0].envFrom[0].prefix: String should match pattern",
            id="an envFrom prefix with '=' is refused",
        ),
        pytest.param(
            spec(image(envFrom=[{"configMapRef": {"name": "Bad_Name"}}])),
            "spec.stages[0].envFrom[0].configMapRef.name: String should match pattern",
            id="a ConfigMap name that is not a DNS subdomain is refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}])),
            "spec.stages[0].env[0].valueFrom.secretKeyRef.key: String should match pattern",
            id="a Secret key with a slash is refused",
        ),
        pytest.param(
            spec(fetch({"deep": nested(600)})),
            f"spec.stages[0].with: Value error, deep.a is nested too deep: {WITH_SHAPE}",
            id="a with nested 600 deep is refused without recursion",
        ),
        pytest.param(
            spec(fetch({"h": {"a": {"b": "c"}}})),
            "spec.stages[0].with: Value error, h.a is nested too deep",
            id="an object in an object in with is refused",
        ),
        pytest.param(
            spec(fetch({"l": ["x", ["y"]]})),
            "spec.stages[0].with: Value error, l[1] is nested too deep",
            id="a list in a list in with is refused",
        ),
        pytest.param(
            spec(fetch({f"p{i}": i for i in range(33)})),
            "spec.stages[0].with: Dictionary should have at most 32 items",
            id="more than 32 parameters are refused",
        ),
        pytest.param(
            spec(fetch({"l": list(range(65))})),
            "spec.stages[0].with: Value error, l has more than 64 items",
            id="a list of more than 64 items in with is refused",
        ),
        pytest.param(
            spec(fetch({"s": "x" * 4097})),
            "spec.stages[0].with: Value error, s is a string longer than 4096 characters",
            id="an over-long string in with is refused",
        ),
        pytest.param(
            spec(fetch({f"p{i}": "x" * 4000 for i in range(5)})),
            "spec.stages[0].with: Value error, 20041 bytes as JSON, more than 16384",
            id="a with over 16 KiB as JSON is refused",
        ),
        pytest.param(
            spec(fetch({"n": 2**64})),
            "spec.stages[0].with: Value error, n is an integer outside the 64-bit range",
            id="an integer JSON cannot carry is refused",
        ),
        pytest.param(
            spec(fetch({"s": "\ud800"})),
            "spec.stages[0].with: Value error, s is a string that is not valid UTF-8",
            id="a lone surrogate in with is refused",
        ),
        pytest.param(
            spec(fetch({"f": float("nan")})),
            "spec.stages[0].with: Value error, f is a number that is not finite",
            id="NaN in with is refused",
        ),
    ],
)
def test_hostile_specs_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    assert problems(body).startswith(message)


def test_what_built_in_stages_and_tenants_need_is_accepted() -> None:
    params = {
        "url": "https://example.org/a.jpg",
        "bucket": "media",
        "key": "raw/{{ job.name }}.jpg",
        "maxBytes": 1048576,
        "contentTypes": ["image/*", "application/pdf"],
        "headers": {"Accept": "image/*"},
        "headersFromEnv": {"Authorization": "API_TOKEN"},
        "timeoutSeconds": 12.5,
        "maxRedirects": 3,
        "empty": {"a": {}, "b": []},
    }
    parsed = ProcessingJobSpec.model_validate(
        spec(
            fetch(
                params,
                env=[{"name": "API_TOKEN", "value": "x"}],
                envFrom=[{"prefix": "DB_", "secretRef": {"name": "s"}}],
            ),
            image(
                env=[{"name": "AWS_REGION", "value": "eu-west-1"}],
                envFrom=[{"configMapRef": {"name": "c"}}],
                resources={
                    "requests": {"cpu": ".5", "memory": "1e3", "example.com/fpga": "1", "hugepages-2Mi": "4Mi"},
                    "limits": {"cpu": "500m", "memory": "1k", "example.com/fpga": "1e0", "hugepages-2Mi": "4194304"},
                },
                podMetadata={
                    "labels": {"team": "", "app.example.com/tier": "batch", "a_b.c-d": "A_b.c-D"},
                    "annotations": {"rig.procjob.dev/run-seconds": "1", "procjob.dev.example/x": "y"},
                },
            ),
        )
    )
    assert parsed.stages[0].with_ == params


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("1.5Ki", Decimal(1536)),
        ("1e3", Decimal(1000)),
        ("2E-3", Decimal("0.002")),
        ("3E", Decimal("3e18")),
        (".5", Decimal("0.5")),
        ("7.", Decimal(7)),
        ("100n", Decimal("1e-7")),
        ("1u", Decimal("1e-6")),
    ],
)
def test_quantities_are_read_exactly(text: str, value: Decimal) -> None:
    assert quantity_value(text) == value


@pytest.mark.parametrize("text", ["", "-1", "+1", "1mi", "1KiB", "1e", "1.2.3", "e3", "1 Gi", "1e1000000", "x" * 65])
def test_what_is_not_a_quantity(text: str) -> None:
    assert quantity_value(text) is None


# Hostile input for the whole model: whatever it is, parsing raises ValidationError or succeeds.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=40,
)
odd_keys = st.text(max_size=30) | st.from_regex(r"\A([A-Za-z0-9.-]{0,260}/)?[A-Za-z0-9._/-]{0,70}\Z")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=st.dictionaries(st.text(max_size=8), json_values, max_size=8),
    depth=st.integers(min_value=0, max_value=3000),
    labels=st.dictionaries(odd_keys, st.text(max_size=70), max_size=4),
    annotations=st.dictionaries(odd_keys, st.text(max_size=20), max_size=4),
    quantity=st.text(max_size=20) | st.from_regex(r"\A[0-9.]{1,5}([eE][+-]?[0-9]{1,6}|[KMGTPEnumki]{0,2})\Z"),
)
def test_hostile_specs_raise_only_validation_errors(
    params: dict[str, Any], depth: int, labels: dict[str, str], annotations: dict[str, str], quantity: str
) -> None:
    body = spec(
        fetch({**params, "deep": nested(depth, params)}),
        image(
            podMetadata={"labels": labels, "annotations": annotations},
            resources={"requests": {"cpu": quantity, "example.com/x": quantity}, "limits": {"cpu": "1"}},
        ),
    )
    try:
        parsed = ProcessingJobSpec.model_validate(body)
    except ValidationError as exc:
        text = describe_validation_error(exc, "spec")
    else:
        parsed.to_api()  # a spec that parsed serialises (no depth left to trip over)
        return
    assert text.startswith("spec.")


def test_every_problem_is_reported_on_its_own_line() -> None:
    text = problems(spec(image("Bad"), image("ok", timeoutSeconds=0), retry={"limit": -1}))
    assert text.split("; ") == [
        "spec.stages[0].name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        "spec.stages[1].timeoutSeconds: Input should be greater than or equal to 1",
        "spec.retry.limit: Input should be greater than or equal to 0",
    ]


FULL: dict[str, Any] = {
    "priority": 5,
    "activeDeadlineSeconds": 3600,
    "podGC": "OnCompletion",
    "serviceAccountName": "reader",
    "retry": {
        "limit": 3,
        "backoff": {"initialSeconds": 1, "factor": 2, "maxSeconds": 300, "jitter": 0.1},
        "rules": [
            {"onExitCodes": [2], "action": "FailJob"},
            {"onReasons": ["Evicted", "PodDeleted"], "action": "Ignore"},
        ],
    },
    "stages": [
        {
            "name": "fetch",
            "uses": "fetch",
            "with": {"url": "https://example.org/a.jpg", "bucket": "media", "contentTypes": ["image/*"]},
        },
        {
            "name": "resize",
            "image": "registry.example.com/resize:1.4",
            "command": ["python", "-m", "resize"],
            "args": ["--fast"],
            "env": [
                {"name": "INPUT_KEY", "value": "{{ stages.fetch.outputs.key }}"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token", "optional": True}}},
            ],
            "envFrom": [{"prefix": "DB_", "configMapRef": {"name": "db"}}],
            "workingDir": "/work",
            "imagePullPolicy": "IfNotPresent",
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "timeoutSeconds": 600,
            "startupTimeoutSeconds": 120,
            "retry": {"limit": 5, "delaysSeconds": [1, 4, 8]},
            "podMetadata": {"labels": {"team": "media"}, "annotations": {"note": "x"}},
        },
    ],
}


def test_a_full_spec_parses_and_round_trips_to_the_wire_form() -> None:
    parsed = ProcessingJobSpec.model_validate(FULL)
    assert parsed.to_api() == {**FULL, "suspend": False, "cancel": False} | {
        "stages": [FULL["stages"][0] | {"startupTimeoutSeconds": 300}, FULL["stages"][1]]
    }
    assert parsed.stages[0].with_ == {
        "url": "https://example.org/a.jpg",
        "bucket": "media",
        "contentTypes": ["image/*"],
    }
    assert parsed.retry is not None
    assert parsed.retry.rules is not None
    assert parsed.retry.rules[1].action == RetryAction.IGNORE


def test_defaults() -> None:
    parsed = ProcessingJobSpec.model_validate(spec())
    assert (parsed.priority, parsed.suspend, parsed.cancel, parsed.pod_gc) == (0, False, False, PodGC.ON_SUCCESS)
    assert (parsed.retry, parsed.active_deadline_seconds, parsed.service_account_name) == (None, None, None)
    assert parsed.stages[0].startup_timeout_seconds == 300
    assert parsed.stages[0].timeout_seconds is None


def test_fields_may_be_given_by_python_name_too() -> None:
    parsed = ProcessingJobSpec.model_validate({"stages": [image()], "pod_gc": "Never", "active_deadline_seconds": 5})
    assert (parsed.pod_gc, parsed.active_deadline_seconds) == (PodGC.NEVER, 5)


def test_models_are_frozen() -> None:
    parsed = ProcessingJobSpec.model_validate(spec())
    with pytest.raises(ValidationError, match="frozen"):
        parsed.priority = 3  # type: ignore[misc]


META = {
    "name": "thumbs",
    "namespace": "media",
    "uid": "u-1",
    "generation": 4,
    "creationTimestamp": "2025-03-14T09:00:00Z",
    "resourceVersion": "77",
}


class TestProcessingJob:
    def test_a_valid_object_parses(self) -> None:
        job = ProcessingJob.from_api(
            {"metadata": META | {"finalizers": ["procjob.dev/audit"]}, "spec": spec(), "status": {"attempts": 2}}
        )
        assert job.meta == JobMeta(
            name="thumbs",
            namespace="media",
            uid="u-1",
            generation=4,
            creation_time=T0,
            resource_version="77",
            finalizers=("procjob.dev/audit",),
        )
        assert job.meta.key == "media/thumbs"
        assert job.spec is not None
        assert job.status.attempts == 2
        assert job.spec_error is None

    def test_a_bad_spec_is_kept_as_an_error_naming_the_field(self) -> None:
        job = ProcessingJob.from_api({"metadata": META, "spec": spec(image("Bad"))})
        assert job.spec is None
        assert job.spec_error == "spec.stages[0].name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
        assert job.status == ProcessingJobStatus()

    def test_a_missing_spec_is_an_error_too(self) -> None:
        job = ProcessingJob.from_api({"metadata": META})
        assert job.spec_error == "spec.stages: Field required"

    def test_metadata_defaults_and_deletion_time(self) -> None:
        meta = JobMeta.from_api(
            {
                "name": "j",
                "uid": "u",
                "creationTimestamp": "2025-03-14T09:00:00Z",
                "deletionTimestamp": "2025-03-14T09:00:00Z",
            }
        )
        assert (meta.namespace, meta.generation, meta.finalizers, meta.resource_version) == ("default", 1, (), None)
        assert meta.deletion_time == T0

    def test_metadata_needs_a_creation_time(self) -> None:
        with pytest.raises(ValueError, match=r"metadata.creationTimestamp is missing"):
            JobMeta.from_api({"name": "j", "uid": "u"})

    def test_an_unreadable_status_raises(self) -> None:
        with pytest.raises(ValidationError):
            ProcessingJob.from_api({"metadata": META, "spec": spec(), "status": {"attempts": -1}})


class TestStatus:
    def test_the_status_round_trips_with_camel_case_keys(self) -> None:
        body = {
            "phase": "Retrying",
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "Unknown",
                    "reason": "BackoffWaiting",
                    "message": "m",
                    "lastTransitionTime": "2025-03-14T09:00:00Z",
                    "observedGeneration": 1,
                }
            ],
            "startTime": "2025-03-14T09:00:00Z",
            "currentStage": "resize",
            "progress": "1/1",
            "attempts": 1,
            "stages": [
                {
                    "name": "resize",
                    "state": "BackoffWaiting",
                    "attemptCount": 1,
                    "chargedFailures": 1,
                    "attempts": [
                        {
                            "attempt": 1,
                            "podName": "p",
                            "podUid": "u",
                            "state": "Failed",
                            "createTime": "2025-03-14T09:00:00Z",
                            "finishTime": "2025-03-14T09:00:00Z",
                            "exitCode": 1,
                            "reason": "Error",
                            "charged": True,
                        }
                    ],
                    "nextAttemptTime": "2025-03-14T09:00:00Z",
                    "lastRetryDecision": {
                        "rule": "default",
                        "action": "Retry",
                        "failureReason": "Error",
                        "exitCode": 1,
                        "delaySeconds": 4.0,
                        "retriesLeft": 2,
                    },
                    "outputs": {"any": {"json": [1, None]}},
                }
            ],
            "queue": {"position": 2},
            "audit": {
                "lastSeq": 2,
                "flushedSeq": 1,
                "pending": [
                    {
                        "seq": 2,
                        "type": "AttemptFailed",
                        "reason": "Error",
                        "message": "",
                        "stage": "resize",
                        "attempt": 1,
                        "podName": "p",
                        "exitCode": 1,
                        "time": "2025-03-14T09:00:00Z",
                        "detail": {"k": "v"},
                    }
                ],
                "deletionRecorded": False,
            },
        }
        parsed = ProcessingJobStatus.model_validate(body)
        assert parsed.to_api() == body

    def test_an_empty_status_is_the_default(self) -> None:
        assert ProcessingJobStatus.model_validate({}).to_api() == {
            "attempts": 0,
            "conditions": [],
            "stages": [],
            "audit": {"lastSeq": 0, "flushedSeq": 0, "pending": [], "deletionRecorded": False},
        }

    def test_the_attempt_list_is_bounded(self) -> None:
        attempt = Attempt(attempt=1, pod_name="p", state=AttemptState.FAILED, create_time=T0).to_api()
        with pytest.raises(ValidationError, match=r"stages\.0\.attempts"):
            ProcessingJobStatus.model_validate(
                {"stages": [{"name": "s", "state": "Failed", "attempts": [attempt] * (MAX_ATTEMPTS_KEPT + 1)}]}
            )


def test_audit_entries_take_wire_or_python_names() -> None:
    wire = AuditEntry.model_validate({"seq": 1, "type": "JobStarted", "podName": "p", "exitCode": 0, "time": T0})
    python = AuditEntry.model_validate({"seq": 1, "type": "JobStarted", "pod_name": "p", "exit_code": 0, "time": T0})
    assert wire == python
    assert wire.model_dump(by_alias=True)["podName"] == "p"
    record = AuditRecord(job_uid="u", namespace="n", name="j", entry=wire)
    assert record.entry.seq == 1
    with pytest.raises(ValidationError):
        AuditEntry.model_validate({"seq": 0, "type": "X", "time": T0})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            spec(image("a", dependsOn=["a"])),
            "spec.stages[0]: Value error, a stage cannot depend on itself",
            id="a stage depending on itself is refused",
        ),
        pytest.param(
            spec(image("a"), image("b", dependsOn=["a", "gone"])),
            "spec.stages: Value error, stage 'b': dependsOn names a stage that is not in spec.stages",
            id="dependsOn naming an unknown stage is refused naming the stage",
        ),
        pytest.param(
            spec(image("a"), **{"finally": [image("c", dependsOn=["a"])]}),
            "spec.finally: Value error, stage 'c': dependsOn names a stage that is not in spec.finally",
            id="a finally stage's dependsOn names finally stages only",
        ),
        pytest.param(
            spec(image("a"), **{"finally": [image("a")]}),
            "spec.finally: Value error, stage names must be unique across stages and finally: 'a' appears twice",
            id="a finally stage named like a stage is refused",
        ),
        pytest.param(
            spec(image("a"), **{"finally": [image("c"), image("c")]}),
            "spec.finally: Value error, stage names must be unique across stages and finally: 'c' appears twice",
            id="two finally stages of one name are refused",
        ),
        pytest.param(
            spec(image("a"), **{"finally": [image(f"f{i}") for i in range(9)]}),
            "spec.finally: List should have at most 8 items",
            id="at most 8 finally stages",
        ),
        pytest.param(
            spec(image("a"), finallyDeadlineSeconds=0),
            "spec.finallyDeadlineSeconds: Input should be greater than or equal to 1",
            id="a finally deadline of at least a second",
        ),
        pytest.param(
            spec(image("a"), **{"finally": [image("c", volumeMounts=[{"name": "data", "mountPath": "/d"}])]}),
            "spec: Value error, volumeMounts must name a volume of the job's or the stage's podTemplate.spec.volumes: "
            "finally[0].volumeMounts[0].name is 'data'",
            id="a finally stage may mount only declared volumes, like a stage",
        ),
    ],
)
def test_bad_graphs_are_refused_naming_the_stage(body: dict[str, Any], message: str) -> None:
    assert problems(body).startswith(message)


def test_a_graph_with_finally_parses_and_round_trips() -> None:
    body = spec(
        image("a", dependsOn=[]),
        image("b", dependsOn=["a"]),
        **{"finally": [image("c"), image("d", dependsOn=["c"])], "finallyDeadlineSeconds": 30},
    )
    parsed = ProcessingJobSpec.model_validate(body)
    assert [s.name for s in parsed.all_stages] == ["a", "b", "c", "d"]
    assert parsed.stage_path(1) == "spec.stages[1]"
    assert parsed.stage_path(3) == "spec.finally[1]"
    assert parsed.finally_deadline == 30
    assert ProcessingJobSpec.model_validate(spec()).finally_deadline == 600
    wire = parsed.to_api()
    assert wire["finally"][1]["dependsOn"] == ["c"]
    assert ProcessingJobSpec.model_validate(wire) == parsed


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            spec(image("a", forEach="stages.list.outputs.keys")),
            "spec.stages[0].forEach: Value error, forEach is a list of items or a template naming an upstream list "
            "output",
            id="a forEach string that is not one template",
        ),
        pytest.param(
            spec(image("a", forEach="{{ stages.list.outputs.keys }} and more")),
            "spec.stages[0].forEach: Value error, forEach is a list",
            id="a forEach template with text around it",
        ),
        pytest.param(
            spec(image("a", forEach=[[1, 2]])),
            "spec.stages[0].forEach: Value error, item 0: an item is a string, number, boolean, null, or an object",
            id="a list item",
        ),
        pytest.param(
            spec(image("a", forEach=[{"k": {"deep": 1}}])),
            "spec.stages[0].forEach: Value error, item 0: an item is a string, number, boolean, null, or an object",
            id="a nested object item",
        ),
        pytest.param(
            spec(image("a", forEach=list(range(10001)))),
            "spec.stages[0].forEach: Value error, 10001 items, more than 10000",
            id="more than 10000 items",
        ),
        pytest.param(
            spec(image("a", forEach=["x" * 1025])),
            "spec.stages[0].forEach: Value error, item 0: an item is a string longer than 1024 characters",
            id="a string item too long",
        ),
        pytest.param(
            spec(image("a", forEach=[{f"k{i}": i for i in range(17)}])),
            "spec.stages[0].forEach: Value error, item 0: an object item has more than 16 keys",
            id="an object item with too many keys",
        ),
        pytest.param(
            spec(image("a", forEach={"k": 1})),
            "spec.stages[0].forEach: Value error, forEach is a list",
            id="an object instead of a list",
        ),
        pytest.param(
            spec(image("a", parallelism=2)),
            "spec.stages[0]: Value error, parallelism and failurePolicy apply to stages with forEach",
            id="parallelism without forEach",
        ),
        pytest.param(
            spec(image("a", failurePolicy={"mode": "AllItems"})),
            "spec.stages[0]: Value error, parallelism and failurePolicy apply to stages with forEach",
            id="a failure policy without forEach",
        ),
        pytest.param(
            spec(image("a", forEach=[1], parallelism=501)),
            "spec.stages[0].parallelism: Input should be less than or equal to 500",
            id="parallelism of at most 500",
        ),
        pytest.param(
            spec(image("a", forEach=[1], failurePolicy={"mode": "Sometimes"})),
            "spec.stages[0].failurePolicy.mode: Input should be 'FailFast' or 'AllItems'",
            id="an unknown failure mode",
        ),
        pytest.param(
            spec(*(image(f"s{i}", forEach=[1]) for i in range(4)), **{"finally": [image("f", forEach=[1])]}),
            "spec: Value error, at most 4 stages (of stages and finally) may have forEach",
            id="at most 4 fanned-out stages",
        ),
    ],
)
def test_bad_fan_outs_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    assert problems(body).startswith(message)


def test_a_fan_out_parses_and_round_trips() -> None:
    body = spec(
        image("list"),
        image(
            "fan",
            forEach="{{ stages.list.outputs.keys }}",
            parallelism=20,
            failurePolicy={"mode": "AllItems", "toleratedFailures": 3},
        ),
        image("lit", forEach=["a", 1, 2.5, True, None, {"k": "v", "n": None}]),
    )
    parsed = ProcessingJobSpec.model_validate(body)
    fan, lit = parsed.stages[1], parsed.stages[2]
    assert fan.fanned
    assert lit.fanned
    assert not parsed.stages[0].fanned
    assert (fan.policy.mode, fan.policy.tolerated_failures) == ("AllItems", 3)
    assert lit.policy.mode == "FailFast"
    assert lit.policy.tolerated_failures == 0
    assert ProcessingJobSpec.model_validate(parsed.to_api()) == parsed
    assert parsed.to_api()["stages"][1]["forEach"] == "{{ stages.list.outputs.keys }}"
