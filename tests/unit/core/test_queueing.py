"""Queue order and admission: priority first, namespaces in turn, then first come first served."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.queueing import Waiting, admissible, eta_seconds, position_stale, queue_order
from tests.unit.core.builders import NOW


def job(namespace: str, name: str, minute: int, priority: int = 0) -> Waiting:
    return Waiting(
        key=f"{namespace}/{name}",
        namespace=namespace,
        priority=priority,
        created=NOW + timedelta(minutes=minute),
        name=name,
    )


@pytest.mark.parametrize(
    ("waiting", "order"),
    [
        pytest.param([], [], id="nothing waiting gives an empty order"),
        pytest.param(
            [job("a", "late", 2), job("a", "early", 1)],
            ["a/early", "a/late"],
            id="within a namespace the first created goes first",
        ),
        pytest.param(
            [job("a", "zed", 1), job("a", "abe", 1)],
            ["a/abe", "a/zed"],
            id="jobs created at the same time go by name",
        ),
        pytest.param(
            [job("a", "old", 0), job("a", "urgent", 9, priority=10), job("b", "low", 1, priority=-5)],
            ["a/urgent", "a/old", "b/low"],
            id="higher priority goes first whatever the age",
        ),
        pytest.param(
            [job("a", "a1", 0), job("a", "a2", 1), job("a", "a3", 2), job("b", "b1", 5), job("c", "c1", 3)],
            ["a/a1", "c/c1", "b/b1", "a/a2", "a/a3"],
            id="namespaces take turns, the one with the oldest waiting job first",
        ),
        pytest.param(
            [job("b", "x", 0), job("a", "y", 0)],
            ["a/y", "b/x"],
            id="namespaces whose oldest jobs are equally old go by namespace name",
        ),
    ],
)
def test_queue_order(waiting: list[Waiting], order: list[str]) -> None:
    assert [w.key for w in queue_order(waiting)] == order


ORDER = [job("a", "a1", 0), job("a", "a2", 1), job("b", "b1", 2), job("c", "c1", 3)]


@pytest.mark.parametrize(
    ("running_total", "running_by_namespace", "max_total", "max_per_namespace", "chosen"),
    [
        pytest.param(0, {}, None, None, {"a/a1", "a/a2", "b/b1", "c/c1"}, id="without limits every job may start"),
        pytest.param(0, {}, 2, None, {"a/a1", "a/a2"}, id="a total limit takes jobs in queue order"),
        pytest.param(3, {"x": 3}, 4, None, {"a/a1"}, id="running jobs use up the total limit"),
        pytest.param(5, {"x": 5}, 4, None, set(), id="a total limit already exceeded admits nothing"),
        pytest.param(
            0, {}, None, 1, {"a/a1", "b/b1", "c/c1"}, id="a namespace limit skips the namespace's further jobs"
        ),
        pytest.param(
            1,
            {"a": 1},
            2,
            1,
            {"b/b1"},
            id="a full namespace does not block the jobs of other namespaces",
        ),
    ],
)
def test_admissible(
    running_total: int,
    running_by_namespace: dict[str, int],
    max_total: int | None,
    max_per_namespace: int | None,
    chosen: set[str],
) -> None:
    assert admissible(ORDER, running_total, running_by_namespace, max_total, max_per_namespace) == chosen


waiting_jobs = st.lists(
    st.builds(
        job,
        namespace=st.sampled_from(["a", "b", "c"]),
        name=st.text("xyz", min_size=1, max_size=3),
        minute=st.integers(0, 20),
        priority=st.integers(-2, 2),
    ),
    max_size=15,
    unique_by=lambda w: w.key,
)


@settings(max_examples=200, deadline=None)
@given(waiting=waiting_jobs, max_total=st.none() | st.integers(0, 10), per_ns=st.none() | st.integers(0, 5))
def test_the_order_is_a_permutation_by_priority_and_admission_respects_the_limits(
    waiting: list[Waiting], max_total: int | None, per_ns: int | None
) -> None:
    order = queue_order(waiting)
    assert sorted(w.key for w in order) == sorted(w.key for w in waiting)
    assert [w.priority for w in order] == sorted((w.priority for w in order), reverse=True)
    chosen = admissible(order, 0, {}, max_total, per_ns)
    if max_total is not None:
        assert len(chosen) <= max_total
    if per_ns is not None:
        for namespace in "abc":
            assert sum(1 for key in chosen if key.startswith(f"{namespace}/")) <= per_ns


def scanned_order(waiting: list[Waiting], running: dict[str, int]) -> list[str]:
    """The rule spelled out the slow way: for each place, every namespace's (share, oldest, name)."""
    share, order = dict(running), []
    for priority in sorted({w.priority for w in waiting}, reverse=True):
        left = sorted((w for w in waiting if w.priority == priority), key=lambda w: (w.created, w.name))
        while left:
            heads = {w.namespace: w for w in reversed(left)}  # each namespace's first waiting job
            namespace = min(heads, key=lambda ns: (share.get(ns, 0), heads[ns].created, ns))
            order.append(heads[namespace].key)
            left.remove(heads[namespace])
            share[namespace] = share.get(namespace, 0) + 1
    return order


@settings(max_examples=300, deadline=None)
@given(waiting=waiting_jobs, running=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 4)))
def test_the_order_is_the_rule_applied_place_by_place(waiting: list[Waiting], running: dict[str, int]) -> None:
    assert [w.key for w in queue_order(waiting, running)] == scanned_order(waiting, running)


def test_a_namespace_that_already_runs_many_jobs_waits_its_turn() -> None:
    waiting = [job("a", "a1", 0), job("a", "a2", 1), job("b", "b1", 5), job("b", "b2", 6)]
    order = [w.key for w in queue_order(waiting, {"a": 2})]
    assert order == ["b/b1", "b/b2", "a/a1", "a/a2"]


def test_admitting_the_head_moves_nobody_elses_place() -> None:
    waiting = [job(ns, f"{ns}{i}", i) for ns in ("a", "b", "c") for i in range(4)]
    before = [w.key for w in queue_order(waiting)]
    head = before[0]
    after = [w.key for w in queue_order([w for w in waiting if w.key != head], {head.split("/")[0]: 1})]
    assert after == before[1:]


@pytest.mark.parametrize(
    ("position", "shown", "now", "stale"),
    [
        pytest.param(3, None, 0.0, True, id="never written: write it"),
        pytest.param(3, (3, 0.0), 100.0, False, id="unchanged: no write"),
        pytest.param(3, (4, 99.0), 100.0, True, id="near the front: every change is written"),
        pytest.param(50, (60, 99.0), 100.0, False, id="far back and fresh: keep the written value"),
        pytest.param(50, (60, 95.0), 100.0, True, id="far back and old enough: rewrite"),
    ],
)
def test_when_a_shown_position_is_rewritten(
    position: int, shown: tuple[int, float] | None, now: float, stale: bool
) -> None:
    assert position_stale(position, shown, now) is stale


def test_the_estimated_start_comes_from_recent_finishes() -> None:
    assert eta_seconds(10, [], 1000.0) is None
    assert eta_seconds(10, [999.0], 1000.0) is None  # one finish says no rate
    assert eta_seconds(10, [600.0, 990.0], 1000.0) is None  # the old one is outside the window
    # 10 finishes over 100 s: 0.1 jobs/s; position 10 starts in about 100 s
    assert eta_seconds(10, [900.0 + 10 * i for i in range(10)], 1000.0) == 100.0
