"""`{{ ... }}` templates: checked when a job starts, rendered when an attempt's pod is built."""

from __future__ import annotations

from typing import Any

import pytest

from procjob.core import templating
from procjob.core.templating import (
    MAX_WALK_DEPTH,
    RENDER_BUDGET,
    Context,
    PodTooLarge,
    TemplateError,
    check_spec,
    render,
    render_value,
    templated_strings,
)
from procjob.models.spec import ProcessingJobSpec
from tests.unit.core.builders import image_stage

FETCH = {"name": "fetch", "uses": "fetch", "with": {"url": "https://example.org/a.jpg"}}


def spec(*stages: dict[str, Any]) -> ProcessingJobSpec:
    return ProcessingJobSpec.model_validate({"stages": list(stages)})


@pytest.mark.parametrize(
    ("job", "problems"),
    [
        pytest.param(spec(image_stage()), [], id="a spec without templates has no problems"),
        pytest.param(
            spec(
                FETCH,
                image_stage(
                    "resize",
                    command=["resize", "--job={{ job.name }}"],
                    args=["{{job.namespace}}", "{{ job.uid }}", "{{ stages.fetch.outputs.key }}"],
                    env=[
                        {"name": "KEY", "value": "{{ stages.fetch.outputs.key }}"},
                        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    ],
                ),
            ),
            [],
            id="job fields and outputs of an earlier stage are fine everywhere",
        ),
        pytest.param(
            spec(image_stage(args=["{{ stages.fetch.outputs.key }}"])),
            ["spec.stages[0].args[0]: {{ stages.fetch.outputs.key }} names stage 'fetch', which does not exist"],
            id="a reference to an unknown stage names the field and the stage",
        ),
        pytest.param(
            spec(
                image_stage("resize", env=[{"name": "K", "value": "{{ stages.upload.outputs.url }}"}]),
                FETCH | {"name": "upload"},
            ),
            [
                "spec.stages[0].env[0].value: {{ stages.upload.outputs.url }} names stage 'upload', "
                "which does not run before stage 'resize'"
            ],
            id="a reference to a later stage is refused",
        ),
        pytest.param(
            spec(image_stage("resize", command=["{{ stages.resize.outputs.key }}"])),
            [
                "spec.stages[0].command[0]: {{ stages.resize.outputs.key }} names stage 'resize', "
                "which does not run before stage 'resize'"
            ],
            id="a stage cannot reference its own outputs",
        ),
        pytest.param(
            spec(image_stage(args=["{{ job.labels }}"])),
            ["spec.stages[0].args[0]: unknown template {{ job.labels }}"],
            id="an unknown job field is refused",
        ),
        pytest.param(
            spec(image_stage(args=["{{ env.HOME }} and {{ }}"])),
            [
                "spec.stages[0].args[0]: unknown template {{ env.HOME }} "
                "(use job.name, job.namespace, job.uid or stages.NAME.outputs.KEY)",
                "spec.stages[0].args[0]: unknown template {{  }} "
                "(use job.name, job.namespace, job.uid or stages.NAME.outputs.KEY)",
            ],
            id="every unknown expression in one string is reported",
        ),
        pytest.param(
            spec(
                FETCH,
                {
                    "name": "store",
                    "uses": "upload",
                    "with": {
                        "target": {
                            "bucket": "b",
                            "keys": ["ok-{{ stages.fetch.outputs.key }}", "{{ stages.x.outputs.y }}"],
                        },
                        "size": 3,
                    },
                },
            ),
            ["spec.stages[1].with.target.keys[1]: {{ stages.x.outputs.y }} names stage 'x', which does not exist"],
            id="references inside nested with values are checked and located",
        ),
    ],
)
def test_check_spec(job: ProcessingJobSpec, problems: list[str]) -> None:
    assert check_spec(job) == problems


def test_templated_strings_lists_every_templatable_field_of_a_stage() -> None:
    job = spec(
        {
            "name": "s",
            "uses": "fetch",
            "command": ["c"],
            "args": ["a"],
            "env": [
                {"name": "A", "value": "v"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "n", "key": "k"}}},
            ],
            "with": {"list": ["x", 1, None], "n": 2},
        }
    )
    assert list(templated_strings(job, 0)) == [
        ("spec.stages[0].command[0]", "c"),
        ("spec.stages[0].args[0]", "a"),
        ("spec.stages[0].env[0].value", "v"),
        ("spec.stages[0].with.list[0]", "x"),
    ]


CTX = Context(
    job_name="thumbs",
    job_namespace="media",
    job_uid="uid-1",
    outputs={
        "fetch": {"key": "raw/a.jpg", "size": 18231, "tags": ["a", "b"], "meta": {"w": 1}, "ok": True, "none": None},
        "empty": None,
    },
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("plain", "plain", id="text without templates is unchanged"),
        pytest.param(
            "{{ job.name }}/{{job.namespace}}/{{  job.uid  }}", "thumbs/media/uid-1", id="job fields are expanded"
        ),
        pytest.param(
            "s3://b/{{ stages.fetch.outputs.key }}", "s3://b/raw/a.jpg", id="a string output is inserted as is"
        ),
        pytest.param("{{ stages.fetch.outputs.size }}", "18231", id="a number output is JSON-encoded"),
        pytest.param("{{ stages.fetch.outputs.tags }}", '["a","b"]', id="a list output is compact JSON"),
        pytest.param("{{ stages.fetch.outputs.meta }}", '{"w":1}', id="an object output is compact JSON"),
        pytest.param("{{ stages.fetch.outputs.ok }}", "true", id="a boolean output is JSON true"),
        pytest.param("{{ stages.fetch.outputs.none }}", "null", id="a null output is JSON null"),
    ],
)
def test_render(text: str, expected: str) -> None:
    assert render(text, CTX) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            "{{ stages.fetch.outputs.url }}",
            "{{ stages.fetch.outputs.url }}: stage 'fetch' has no output 'url'",
            id="a missing output key names the stage and the key",
        ),
        pytest.param(
            "{{ stages.empty.outputs.key }}",
            "{{ stages.empty.outputs.key }}: stage 'empty' wrote no outputs",
            id="a stage that wrote no outputs is named",
        ),
        pytest.param(
            "{{ stages.later.outputs.key }}",
            "{{ stages.later.outputs.key }}: stage 'later' wrote no outputs",
            id="a stage without a status entry wrote no outputs",
        ),
        pytest.param("{{ job.labels }}", "unknown template {{ job.labels }}", id="an unknown job field is an error"),
        pytest.param("{{ 1 + 1 }}", "unknown template {{ 1 + 1 }}", id="expressions are not evaluated"),
    ],
)
def test_render_errors(text: str, error: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(text, CTX)
    assert str(caught.value) == error


def test_render_value_renders_every_string_and_keeps_other_values() -> None:
    value = {
        "key": "raw/{{ job.name }}.jpg",
        "sizes": [1, "{{ stages.fetch.outputs.size }}", {"deep": "{{ job.uid }}"}],
        "maxBytes": 20971520,
        "flag": False,
        "nothing": None,
    }
    assert render_value(value, CTX) == {
        "key": "raw/thumbs.jpg",
        "sizes": [1, "18231", {"deep": "uid-1"}],
        "maxBytes": 20971520,
        "flag": False,
        "nothing": None,
    }


def nested(depth: int) -> Any:
    value: Any = "{{ job.name }}"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_walks_stop_at_their_depth_bound_instead_of_recursing() -> None:
    assert list(templating._strings(nested(MAX_WALK_DEPTH), "w")) == [("w" + ".k" * MAX_WALK_DEPTH, "{{ job.name }}")]
    assert list(templating._strings(nested(5000), "w")) == []  # no RecursionError, nothing past the bound
    with pytest.raises(TemplateError, match="nested deeper than 16 levels"):
        render_value(nested(5000), Context("j", "n", "u", {}))


def test_one_pods_renders_share_one_budget_and_stop_before_building_a_huge_string() -> None:
    ctx = Context("j", "n", "u", {"a": {"k": "x" * 4000}})
    text = "{{ stages.a.outputs.k }}" * 100
    with pytest.raises(PodTooLarge, match=r"^args\[0\]"):
        render(text, ctx, "args[0]")  # 400 KB: refused while expanding, before the string is joined
    assert RENDER_BUDGET - 4000 <= RENDER_BUDGET - ctx.budget.left <= RENDER_BUDGET + 4000


def test_a_budget_refuses_what_would_pass_it() -> None:
    ctx = Context("j", "n", "u", {"a": {"k": "x" * 4000}})
    text = "{{ stages.a.outputs.k }}" * 60  # 240 KB: within the budget once
    assert len(render(text, ctx, "args[0]")) == 240_000
    with pytest.raises(PodTooLarge, match=r"^args\[1\]: the rendered pod would exceed 256 KiB"):
        render(text, ctx, "args[1]")
    assert ctx.budget.left < 0


def graph_spec(*stages: dict[str, Any], final: list[dict[str, Any]] | None = None) -> ProcessingJobSpec:
    body: dict[str, Any] = {"stages": list(stages)}
    if final is not None:
        body["finally"] = final
    return ProcessingJobSpec.model_validate(body)


@pytest.mark.parametrize(
    ("job", "problems"),
    [
        pytest.param(
            graph_spec(
                image_stage("a", dependsOn=[]),
                image_stage("b", dependsOn=[], args=["{{ stages.a.outputs.k }}"]),
            ),
            ["spec.stages[1].args[0]: {{ stages.a.outputs.k }} names stage 'a', which does not run before stage 'b'"],
            id="a stage may not use the outputs of a stage it does not wait for, even one listed before",
        ),
        pytest.param(
            graph_spec(
                image_stage("d", dependsOn=["b"], args=["{{ stages.a.outputs.k }}"]),
                image_stage("b", dependsOn=["a"]),
                image_stage("a", dependsOn=[]),
            ),
            [],
            id="it may use any stage upstream of it, directly or not, wherever it is listed",
        ),
        pytest.param(
            graph_spec(image_stage("a", args=["{{ job.status }}", "{{ job.reason }}"])),
            [
                "spec.stages[0].args[0]: {{ job.status }} is known only in spec.finally stages "
                "(after the stages have ended)",
                "spec.stages[0].args[1]: {{ job.reason }} is known only in spec.finally stages "
                "(after the stages have ended)",
            ],
            id="job.status and job.reason are refused in a main stage",
        ),
        pytest.param(
            graph_spec(
                image_stage("a"),
                image_stage("b"),
                final=[
                    image_stage("c", args=["{{ job.status }}/{{ job.reason }}", "{{ stages.a.outputs.k }}"]),
                    image_stage("d", args=["{{ stages.c.outputs.k }}", "{{ stages.b.outputs.k }}"]),
                ],
            ),
            [],
            id="a finally stage may use job.status, any main stage and its upstream finally stages",
        ),
        pytest.param(
            graph_spec(
                image_stage("a", args=["{{ stages.c.outputs.k }}"]),
                final=[image_stage("c"), image_stage("d", dependsOn=[], args=["{{ stages.c.outputs.k }}"])],
            ),
            [
                "spec.stages[0].args[0]: {{ stages.c.outputs.k }} names stage 'c', which does not run before stage 'a'",
                "spec.finally[1].args[0]: {{ stages.c.outputs.k }} names stage 'c', "
                "which does not run before stage 'd'",
            ],
            id="a main stage may not use a finally stage, nor a finally stage one it does not wait for",
        ),
    ],
)
def test_check_spec_follows_the_graph(job: ProcessingJobSpec, problems: list[str]) -> None:
    assert check_spec(job) == problems


def test_job_status_and_reason_render_in_a_finally_stage_only() -> None:
    ended = Context("j", "n", "u", {}, ended=("Failed", "StageFailed"))
    assert render("{{ job.status }}: {{ job.reason }}", ended) == "Failed: StageFailed"
    with pytest.raises(TemplateError, match=r"unknown template \{\{ job.status \}\}"):
        render("{{ job.status }}", Context("j", "n", "u", {}))


def test_templated_strings_of_a_finally_stage_are_named_by_its_path() -> None:
    job = graph_spec(image_stage("a"), final=[image_stage("c", args=["x"])])
    assert list(templated_strings(job, 1)) == [("spec.finally[0].args[0]", "x")]


def test_item_templates_belong_to_fanned_out_stages_and_foreach_names_an_upstream_output() -> None:
    job = graph_spec(
        image_stage("a", args=["{{ item }}"]),
        image_stage("b", forEach="{{ stages.a.outputs.keys }}", args=["{{ item.key }}", "{{ item }}"]),
        image_stage("c", dependsOn=[], forEach="{{ stages.b.outputs.keys }}"),
    )
    assert check_spec(job) == [
        "spec.stages[0].args[0]: {{ item }} is known only in stages with forEach",
        "spec.stages[2].forEach: {{ stages.b.outputs.keys }} names stage 'b', which does not run before stage 'c'",
    ]


def test_an_item_renders_as_text_or_compact_json() -> None:
    ctx = Context("j", "n", "u", {}, item=True, value={"key": "a.jpg", "n": 2})
    assert render("{{ item.key }} {{ item.n }} {{ item }}", ctx) == 'a.jpg 2 {"key":"a.jpg","n":2}'
    assert render("{{ item }}", Context("j", "n", "u", {}, item=True, value="plain")) == "plain"
    with pytest.raises(TemplateError, match="unknown template"):
        render("{{ item }}", Context("j", "n", "u", {}))
