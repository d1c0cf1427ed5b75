"""The CRD on a real API server (the rig's kube-apiserver 1.35): hostile or malformed specs are refused
before they are stored, with kubectl's error naming the field, and the shipped examples are accepted.

Every object is sent with `--dry-run=server`: the API server runs the whole validation (OpenAPI
schema and CEL rules) and stores nothing, so no operator ever sees these jobs.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from procjob.models.crd import crd
from procjob.models.job import PLURAL
from procjob.models.spec import ProcessingJobSpec
from procjob.models.syntax import MAX_WITH_STRING, with_schema
from tests.support.kube import wait_for
from tests.support.operator import crd_established
from tests.support.rig import Rig

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/procjob-test:1"


def nested(depth: int) -> dict[str, Any]:
    """{"a": {"a": ... {"a": "x"}}} with `depth` objects."""
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return dict(value)


def job(**stage: Any) -> dict[str, Any]:
    body = {"name": "s", **stage} if "uses" in stage else {"name": "s", "image": IMAGE, **stage}
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"name": "hostile"},
        "spec": {"stages": [body]},
    }


def create(rig: Rig, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    proc = rig.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    return proc.returncode, proc.stderr + proc.stdout


FETCH = {"url": "https://example.org/a.jpg", "bucket": "media", "key": "raw/a.jpg"}
FETCH_PARAMS = {  # every parameter of the built-in fetch stage (worker/params.py)
    **FETCH,
    "maxBytes": 1048576,
    "contentTypes": ["image/*", "application/pdf"],
    "headers": {"Accept": "image/*", "X-Empty": ""},
    "headersFromEnv": {"Authorization": "API_TOKEN"},
    "timeoutSeconds": 12.5,
    "maxRedirects": 3,
}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(
            job(resources={"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "1500m"}}),
            "spec.stages[0].resources",
            "requests must not exceed limits",
            id="requests above limits",
        ),
        pytest.param(
            job(resources={"requests": {"example.com/gpu": "1"}}),
            "spec.stages[0].resources",
            "needs an equal limit",
            id="an extended resource requested without a limit",
        ),
        pytest.param(
            job(resources={"limits": {"cpu": "-1"}}),
            "spec.stages[0].resources.limits.cpu",
            "should match",
            id="a negative quantity",
        ),
        pytest.param(
            job(resources={"limits": {"cpu": "1e99999999999"}}),
            "spec.stages[0].resources.limits.cpu",
            "should match",
            id="a quantity with an exponent that would stall quantity()",
        ),
        pytest.param(
            job(resources={"limits": {"gpu": "1"}}),
            "spec.stages[0].resources.limits",
            "resource names must be",
            id="an unqualified non-standard resource name",
        ),
        pytest.param(
            job(resources={"limits": {"example.com/gpu": "500m"}}),
            "spec.stages[0].resources.limits",
            "extended resources (domain/name) take whole numbers",
            id="a fraction of an extended resource",
        ),
        pytest.param(
            job(resources={"limits": {"hugepages-2Mi": "3Mi", "memory": "1Gi"}}),
            "spec.stages[0].resources.limits",
            "a whole multiple of the page size",
            id="hugepages that are not a multiple of the page size",
        ),
        pytest.param(
            job(resources={"limits": {"hugepages-2Mi": "2Mi"}}),
            "spec.stages[0].resources",
            "hugepages need a cpu or memory request or limit",
            id="hugepages alone",
        ),
        pytest.param(
            job(resources={"limits": {"requests.example.com/gpu": "1"}}),
            "spec.stages[0].resources.limits",
            "resource names must be",
            id="a resource name with the quota's requests. prefix",
        ),
        pytest.param(
            job(image=" " + IMAGE),
            "spec.stages[0].image",
            "should match",
            id="an image with leading whitespace",
        ),
        pytest.param(
            job(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}]),
            "spec.stages[0].env[0].valueFrom.secretKeyRef.name",
            "should match",
            id="a Secret name that is not a DNS subdomain",
        ),
        pytest.param(
            job(envFrom=[{"prefix": "A=", "configMapRef": {"name": "c"}}]),
            "spec.stages[0].envFrom[0].prefix",
            "should match",
            id="an envFrom prefix with '='",
        ),
        pytest.param(
            job(podMetadata={"labels": {"team/a/b": "x"}}),
            "spec.stages[0].podMetadata.labels",
            "label keys must be qualified names",
            id="a malformed label key",
        ),
        pytest.param(
            job(podMetadata={"labels": {"team": "-x-"}}),
            "spec.stages[0].podMetadata.labels.team",
            "should match",
            id="a malformed label value",
        ),
        pytest.param(
            job(podMetadata={"annotations": {"procjob.dev/stage": "x"}}),
            "spec.stages[0].podMetadata.annotations",
            "reserved for the operator",
            id="an annotation under procjob.dev/",
        ),
        pytest.param(
            job(podMetadata={"annotations": {f"k{i}": "x" * 8000 for i in range(9)}}),
            "spec.stages[0].podMetadata.annotations",
            "must total at most 65536 characters",
            id="annotations over 64 KiB in all",
        ),
        pytest.param(
            job(env=[{"name": "PROCJOB_FETCH_ALLOWED_NETWORKS", "value": "0.0.0.0/0"}]),
            "spec.stages[0].env[0].name",
            "reserved for the operator",
            id="a PROCJOB_ env name",
        ),
        pytest.param(
            job(envFrom=[{"prefix": "PROCJOB_X", "configMapRef": {"name": "c"}}]),
            "spec.stages[0].envFrom[0].prefix",
            "reserved for the operator",
            id="an envFrom prefix under PROCJOB_",
        ),
        pytest.param(
            job(uses="fetch", **{"with": FETCH}, env=[{"name": "AWS_ENDPOINT_URL", "value": "http://evil"}]),
            "spec.stages[0].env",
            "reserved on built-in (uses) stages",
            id="an AWS_ env name on a built-in stage",
        ),
        pytest.param(
            job(uses="fetch", **{"with": FETCH}, envFrom=[{"configMapRef": {"name": "c"}}]),
            "spec.stages[0].envFrom",
            "needs a prefix",
            id="envFrom without a prefix on a built-in stage",
        ),
        pytest.param(
            job(uses="fetch", **{"with": {f"p{i}": i for i in range(33)}}),
            "spec.stages[0].with",
            "have at most 32",
            id="a with of more than 32 parameters",
        ),
    ],
)
def test_the_api_server_refuses_naming_the_field(
    rig: Rig, crd: Path, namespace: str, body: dict[str, Any], field: str, message: str
) -> None:
    code, output = create(rig, namespace, body)
    assert code != 0, f"accepted: {output}"
    assert field in output, output
    assert message in output, output
    with pytest.raises(ValidationError, match=re.escape(message)):
        ProcessingJobSpec.model_validate(body["spec"])  # the operator refuses it too (a CRD from before)


def test_an_over_deep_with_is_refused_naming_the_field(rig: Rig, crd: Path, namespace: str) -> None:
    code, output = create(rig, namespace, job(uses="fetch", **{"with": {**FETCH, "deep": nested(600)}}))
    assert code != 0, f"accepted: {output}"
    assert "spec.stages[0].with.deep" in output, output


PROBE_GROUP = f"schema-probe-{uuid.uuid4().hex[:8]}.procjob.dev"  # one per run: concurrent runs keep apart


@pytest.fixture(scope="module")
def with_schema_crd(rig: Rig) -> Iterator[str]:
    """The ProcessingJob CRD under a private group, its `with` given `syntax.with_schema()`: proves that
    schema on the real API server without touching the CRD other tests share. Yields the apiVersion."""
    body = crd()
    body["metadata"]["name"] = f"{PLURAL}.{PROBE_GROUP}"
    body["spec"]["group"] = PROBE_GROUP
    stage = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["stages"]
    stage["items"]["properties"]["with"] = {"description": "with", **with_schema()}
    # CEL cannot see a field whose values have no type: the rule "with is for built-in stages" has to go
    # (the operator's model still refuses it: InvalidSpec).
    rules = stage["items"]["x-kubernetes-validations"]
    stage["items"]["x-kubernetes-validations"] = [r for r in rules if "self.with" not in r["rule"]]
    rig.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(body))

    crd_established(rig, f"{PLURAL}.{PROBE_GROUP}")
    wait_for(
        "the probe storage",
        lambda: rig.kubectl("get", f"{PLURAL}.{PROBE_GROUP}", check=False).returncode == 0,
        timeout=180,
    )
    yield f"{PROBE_GROUP}/v1alpha1"
    rig.kubectl("delete", "crd", f"{PLURAL}.{PROBE_GROUP}", "--wait=false", check=False)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"deep": nested(600)}, "spec.stages[0].with.deep.a", id="600 levels deep"),
        pytest.param({"h": {"a": {"b": "c"}}}, "spec.stages[0].with.h.a", id="an object in an object"),
        pytest.param({"l": [["x"]]}, "spec.stages[0].with.l[0]", id="a list in a list"),
        pytest.param({"h": {"a": [["x"]]}}, "spec.stages[0].with.h.a[0]", id="a list in a list in an object"),
        pytest.param({"l": [{"a": 1}]}, "spec.stages[0].with.l[0]", id="an object in a list"),
        pytest.param({"s": "x" * (MAX_WITH_STRING + 1)}, "spec.stages[0].with.s", id="an over-long string"),
    ],
)
def test_the_with_schema_bounds_depth_on_the_api_server(
    rig: Rig, with_schema_crd: str, namespace: str, params: dict[str, Any], field: str
) -> None:
    body = job(uses="fetch", **{"with": {**FETCH, **params}}) | {"apiVersion": with_schema_crd}
    code, output = create(rig, namespace, body)
    assert code != 0, f"accepted: {output}"
    assert field in output, output
    with pytest.raises(ValidationError, match=r"with\n"):
        ProcessingJobSpec.model_validate(body["spec"])  # the operator refuses the same


def test_the_with_schema_accepts_every_fetch_parameter(rig: Rig, with_schema_crd: str, namespace: str) -> None:
    body = job(uses="fetch", **{"with": FETCH_PARAMS}) | {"apiVersion": with_schema_crd}
    code, output = create(rig, namespace, body)
    assert code == 0, output


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_are_accepted(rig: Rig, crd: Path, namespace: str, example: Path) -> None:
    body = yaml.safe_load(example.read_text())
    code, output = create(rig, namespace, body)
    assert code == 0, output
    ProcessingJobSpec.model_validate(body["spec"])


def test_the_fetch_parameters_and_pod_metadata_in_use_are_accepted(rig: Rig, crd: Path, namespace: str) -> None:
    """Everything the built-in fetch stage takes (worker/params.py) and the keys tenants commonly set."""
    body = job(
        uses="fetch",
        **{"with": FETCH_PARAMS},
        env=[{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}],
        envFrom=[{"prefix": "DB_", "configMapRef": {"name": "db"}}],
        resources={
            "requests": {"cpu": "500m", "memory": "256Mi", "example.com/fpga": "1"},
            "limits": {"cpu": "1", "memory": "0.5Gi", "example.com/fpga": "1"},
        },
        podMetadata={
            "labels": {"team": "media", "app.example.com/tier": "batch", "empty": ""},
            "annotations": {"rig.procjob.dev/run-seconds": "1", "example.com/note": "x" * 8192},
        },
    )
    code, output = create(rig, namespace, body)
    assert code == 0, output
    ProcessingJobSpec.model_validate(body["spec"])
