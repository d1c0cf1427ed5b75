"""dependsOn and finally on the real API server (the rig's kube-apiserver): a graph the schema can judge
is refused before it is stored, naming the stage, with the message the pydantic twin gives; what it
cannot judge (a cycle) is stored and left to the operator (tests/unit/core/test_flow.py).

Creates use `--dry-run=server` (the whole validation, nothing stored); the update tests store a job in
their own namespace, which no operator watches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from procjob.models.job import describe_validation_error
from procjob.models.spec import ProcessingJobSpec
from tests.support.rig import Rig

pytestmark = pytest.mark.rig

IMAGE = "registry.example/procjob-test:1"


def stage(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, **fields}


def job(*stages: dict[str, Any], name: str = "graph", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"name": name},
        "spec": {"stages": list(stages), **spec},
    }


def create(rig: Rig, namespace: str, body: dict[str, Any], *, dry_run: bool = True) -> tuple[int, str]:
    args = ["create", *(["--dry-run=server"] if dry_run else []), "-n", namespace, "-f", "-"]
    proc = rig.kubectl(*args, input=json.dumps(body), check=False)
    return proc.returncode, proc.stderr + proc.stdout


def pydantic_says(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ProcessingJobSpec.model_validate(body["spec"])
    return describe_validation_error(caught.value, "spec")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(
            job(stage("a", dependsOn=["a"])),
            "spec.stages[0]",
            "a stage cannot depend on itself",
            id="a stage on itself",
        ),
        pytest.param(
            job(stage("a"), stage("b", dependsOn=["a", "gone"])),
            "spec.stages",
            "stage 'b': dependsOn names a stage that is not in spec.stages",
            id="an unknown name, naming the stage",
        ),
        pytest.param(
            job(stage("a"), **{"finally": [stage("c", dependsOn=["a"])]}),
            "spec.finally",
            "stage 'c': dependsOn names a stage that is not in spec.finally",
            id="a finally stage naming a main stage",
        ),
        pytest.param(
            job(stage("a"), **{"finally": [stage("a")]}),
            "spec.finally",
            "stage names must be unique across stages and finally",
            id="a finally stage named like a stage",
        ),
        pytest.param(
            job(stage("a"), **{"finally": [stage("c", volumeMounts=[{"name": "data", "mountPath": "/d"}])]}),
            "spec.finally",
            "volumeMounts must name a volume of the job's or the stage's podTemplate.spec.volumes",
            id="a finally stage mounting an undeclared volume",
        ),
        pytest.param(
            job(stage("a", dependsOn=["b", "b"]), stage("b")),
            "spec.stages[0].dependsOn[1]",
            "Duplicate value",
            id="a repeated dependsOn name (a set)",
        ),
    ],
)
def test_the_api_server_refuses_a_bad_graph_naming_the_stage(
    rig: Rig, crd: Path, namespace: str, body: dict[str, Any], field: str, message: str
) -> None:
    code, output = create(rig, namespace, body)
    assert code != 0, f"accepted: {output}"
    assert field in output, output
    assert message in output, output
    if message != "Duplicate value":  # the list-type set has no pydantic twin: the operator drops repeats
        assert message in pydantic_says(body)


def test_a_diamond_with_finally_and_a_cycle_are_stored(rig: Rig, crd: Path, namespace: str) -> None:
    diamond = job(
        stage("a", dependsOn=[]),
        stage("b", dependsOn=["a"]),
        stage("c", dependsOn=["a"]),
        stage("d", dependsOn=["b", "c"]),
        **{"finally": [stage("cleanup", args=["{{ job.status }}"])], "finallyDeadlineSeconds": 60},
    )
    code, output = create(rig, namespace, diamond)
    assert code == 0, output
    cycle = job(stage("a", dependsOn=["b"]), stage("b", dependsOn=["a"]))
    code, output = create(rig, namespace, cycle)
    assert code == 0, output  # the operator refuses it (InvalidSpec, naming the stages) before any pod


def test_dependson_finally_and_its_deadline_are_immutable(rig: Rig, crd: Path, namespace: str) -> None:
    body = job(stage("a"), stage("b"), **{"finally": [stage("c")], "finallyDeadlineSeconds": 60})
    code, output = create(rig, namespace, body, dry_run=False)
    assert code == 0, output
    changes = [
        ({"stages": [stage("a"), stage("b", dependsOn=[])]}, "stages are immutable"),
        ({"finally": [stage("c"), stage("e")]}, "finally is immutable"),
        ({"finallyDeadlineSeconds": 61}, "finallyDeadlineSeconds is immutable"),
    ]
    for change, message in changes:
        patch = json.dumps({"spec": change})
        proc = rig.kubectl("patch", "pj", "graph", "-n", namespace, "--type=merge", "-p", patch, check=False)
        assert proc.returncode != 0, f"{change} accepted"
        assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("for_each", "field"),
    [
        pytest.param("stages.list.outputs.keys", "spec.stages[1].forEach", id="a string that is not one template"),
        pytest.param([[1, 2]], "spec.stages[1].forEach[0]", id="a list item"),
        pytest.param([{"k": {"deep": 1}}], "spec.stages[1].forEach[0].k", id="a nested object item"),
        pytest.param(["x" * 1025], "spec.stages[1].forEach[0]", id="a string item over 1024 characters"),
        pytest.param({"k": 1}, "spec.stages[1].forEach", id="an object instead of a list"),
        pytest.param(list(range(10001)), "spec.stages[1].forEach", id="more than 10000 items"),
    ],
)
def test_the_api_server_refuses_a_bad_for_each(rig: Rig, crd: Path, namespace: str, for_each: Any, field: str) -> None:
    body = job(stage("list"), stage("fan", forEach=for_each))
    code, output = create(rig, namespace, body)
    assert code != 0, f"accepted: {output[:300]}"
    assert field in output, output[:600]
    with pytest.raises(ValidationError):
        ProcessingJobSpec.model_validate(body["spec"])


def test_fan_outs_the_schema_accepts(rig: Rig, crd: Path, namespace: str) -> None:
    body = job(
        stage("list"),
        stage("fan", forEach="{{ stages.list.outputs.keys }}", parallelism=20, failurePolicy={"mode": "AllItems"}),
        stage("lit", dependsOn=[], forEach=["a", 1, 2.5, True, None, {"k": "v", "n": 3}], args=["{{ item }}"]),
        stage("big", dependsOn=[], forEach=list(range(10000))),
    )
    code, output = create(rig, namespace, body)
    assert code == 0, output[:600]
    ProcessingJobSpec.model_validate(body["spec"])
