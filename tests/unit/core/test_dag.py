"""core.dag: what dependsOn means, the order a pass looks at stages, ancestors and cycles."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from procjob.core.dag import Graph, cycle_problems, upstream_of


@dataclass(frozen=True)
class S:
    name: str
    depends_on: list[str] | None = None


def test_unset_depends_on_is_the_stage_before_so_a_plain_job_is_a_chain() -> None:
    assert upstream_of([S("a"), S("b"), S("c")]) == {"a": (), "b": ("a",), "c": ("b",)}


def test_an_empty_depends_on_starts_with_the_job_and_repeats_are_dropped() -> None:
    deps = upstream_of([S("a"), S("b", []), S("c", ["a", "b", "a"])])
    assert deps == {"a": (), "b": (), "c": ("a", "b")}


@pytest.mark.parametrize(
    ("stages", "order"),
    [
        pytest.param([S("a"), S("b"), S("c")], ["a", "b", "c"], id="a chain in spec order"),
        pytest.param(
            [S("a", []), S("b", ["a"]), S("c", ["a"]), S("d", ["b", "c"])], ["a", "b", "c", "d"], id="a diamond"
        ),
        pytest.param(
            [S("d", ["b", "c"]), S("c", ["a"]), S("b", ["a"]), S("a", [])],
            ["a", "c", "b", "d"],
            id="listed backwards: upstream first, ties by spec order",
        ),
        pytest.param(
            [S("x", ["y"]), S("y", ["x"]), S("z", [])], ["z", "x", "y"], id="stages on a cycle come last, in order"
        ),
        pytest.param([S("a", ["gone"])], ["a"], id="an unknown name is ignored (the schema refuses it)"),
    ],
)
def test_order_is_topological_and_stable(stages: list[S], order: list[str]) -> None:
    assert Graph.of(stages).order() == order


def test_ancestors_are_every_stage_waited_for_directly_or_not() -> None:
    graph = Graph.of([S("a", []), S("b", ["a"]), S("c", ["a"]), S("d", ["b", "c"]), S("e", [])])
    assert graph.ancestors("d") == {"a", "b", "c"}
    assert graph.ancestors("a") == set()
    assert graph.ancestors("e") == set()


@pytest.mark.parametrize(
    ("stages", "cycles"),
    [
        pytest.param([S("a"), S("b"), S("c")], [], id="a chain has none"),
        pytest.param([S("a", ["a"])], [["a"]], id="a stage on itself"),
        pytest.param([S("a", ["c"]), S("b"), S("c", ["b"])], [["a", "c", "b"]], id="three stages"),
        pytest.param(
            [S("a", ["b"]), S("b", ["a"]), S("c", ["d"]), S("d", ["c"]), S("e", ["a"])],
            [["a", "b"], ["c", "d"]],
            id="two cycles, each once, and a stage hanging off one",
        ),
        pytest.param([S("b", ["a"]), S("a", ["b"])], [["b", "a"]], id="named from the stage listed first"),
        pytest.param([S("a", []), S("b", ["a"]), S("c", ["a", "b"])], [], id="a stage reached twice is no cycle"),
    ],
)
def test_cycles(stages: list[S], cycles: list[list[str]]) -> None:
    assert Graph.of(stages).cycles() == cycles


def test_cycle_problems_name_the_field_and_every_stage_on_the_cycle() -> None:
    assert cycle_problems([S("a", ["c"]), S("b"), S("c", ["b"])], "stages") == [
        "spec.stages[0].dependsOn: stage 'a' is on a dependency cycle (a waits for c waits for b waits for a), "
        "so it could never start"
    ]
    assert cycle_problems([S("x"), S("y", ["y"])], "finally") == [
        "spec.finally[1].dependsOn: stage 'y' is on a dependency cycle (y waits for y), so it could never start"
    ]
    assert cycle_problems([S("a"), S("b")], "stages") == []
