"""Properties of `decide` over random graphs of stages (dependsOn, finally) and random walks of the world.

After every pass:
- a stage never starts (a pod is created for it) before every stage it depends on has succeeded, and
  a main stage never starts once the stages have ended; a finally stage starts only once they have;
- at most one live pod per stage (live pods not being deleted, plus those created now);
- decide is deterministic; audit sequence numbers run 1, 2, 3... without a gap across passes;
- a terminal job absorbs: its conditions and stages never change and no pod is created.
At the end: a job whose every attempt succeeds ends Succeeded, having run each stage once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.dag import Graph
from procjob.core.decide import decide
from procjob.models.spec import ProcessingJobSpec
from procjob.models.status import ProcessingJobStatus, StageState
from tests.unit.core.builders import Run, pod_from
from tests.unit.core.test_properties import is_terminal

RETRY = st.sampled_from([None, {"limit": 0}, {"limit": 1, "delaysSeconds": [0]}, {"limit": 2, "delaysSeconds": [5]}])


@st.composite
def graphs(draw: st.DrawFn, prefix: str, size: int) -> list[dict[str, Any]]:
    """Stages s0.. with dependsOn drawn over an order that is then shuffled: acyclic, listed in any order."""
    names = [f"{prefix}{i}" for i in range(size)]
    stages = []
    for index, name in enumerate(names):
        stage: dict[str, Any] = {"name": name, "image": "registry.example.com/w:1"}
        earlier = names[:index]
        kind = draw(st.sampled_from(["default", "none", "some"]))
        if kind == "none":
            stage["dependsOn"] = []
        elif kind == "some" and earlier:
            stage["dependsOn"] = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True))
        retry = draw(RETRY)
        if retry is not None:
            stage["retry"] = retry
        stages.append(stage)
    if draw(st.booleans()):  # list them in another order: default (unset) dependsOn then means another graph
        stages = [{**s, "dependsOn": s.get("dependsOn", [names[i - 1]] if i else [])} for i, s in enumerate(stages)]
        stages = draw(st.permutations(stages))
    return list(stages)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"stages": draw(graphs("s", draw(st.integers(1, 5))))}
    final = draw(st.integers(0, 2))
    if final:
        spec["finally"] = draw(graphs("f", final))
    spec["activeDeadlineSeconds"] = draw(st.sampled_from([None, 60, 600]))
    if spec["activeDeadlineSeconds"] is None:
        del spec["activeDeadlineSeconds"]
    return spec


ACTIONS = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 5, 30, 100])),
    st.tuples(st.just("run"), st.integers(0, 6)),
    st.tuples(st.just("succeed"), st.integers(0, 6)),
    st.tuples(st.just("succeed"), st.integers(0, 6)),
    st.tuples(st.just("fail"), st.integers(0, 6)),
    st.tuples(st.just("reap"), st.just(0)),
    st.tuples(st.just("suspend"), st.booleans()),
    st.tuples(st.just("cancel"), st.just(0)),
    st.tuples(st.just("admit"), st.booleans()),
)


class DagWalk:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.run = Run(spec)
        parsed = ProcessingJobSpec.model_validate(spec)
        self.main = Graph.of(parsed.stages)
        self.final = Graph.of(parsed.finally_ or [])
        self.terminal: tuple[Any, Any] | None = None
        self.uids = 0

    def world(self, action: tuple[str, Any]) -> None:
        run, (kind, arg) = self.run, action
        live = sorted(p.name for p in run.pods.values() if p.live)
        if kind == "tick":
            run.tick(arg)
        elif kind == "suspend":
            run.set_spec(suspend=arg)
        elif kind == "cancel":
            run.set_spec(cancel=True)
        elif kind == "admit":
            run.admitted = arg
        elif kind == "reap":
            run.pods = {name: pod for name, pod in run.pods.items() if not pod.deleting}
        elif live and kind == "run":
            run.running(live[arg % len(live)])
        elif live and kind == "succeed":
            run.succeeded(live[arg % len(live)], message='{"k": 1}')
        elif live and kind == "fail":
            run.failed(live[arg % len(live)])

    def reconcile(self) -> None:
        run = self.run
        job, pods = run.job(), list(run.pods.values())
        decision = run.decide(apply=False)
        assert decide(job, pods, run.now, run.config, admitted=run.admitted) == decision, "not deterministic"
        status = run.parsed
        self.check_starts(decision.create, status)

        deleted = {d.name for d in decision.delete}
        live = [p for p in pods if p.live and p.name not in deleted]
        by_stage = [p.stage for p in live] + [c.stage for c in decision.create]
        assert len(by_stage) == len(set(by_stage)), f"two live pods of one stage: {sorted(map(str, by_stage))}"

        if self.terminal is not None:
            assert decision.create == ()
            assert (status.conditions, status.stages) == self.terminal, "a terminal job changed"
        elif is_terminal(status):
            self.terminal = (status.conditions, status.stages)
        for create in decision.create:
            self.uids += 1
            run.pods.setdefault(create.name, pod_from(create, f"uid-{self.uids}", run.now))
        for name in deleted:
            if name in run.pods:
                run.pods[name] = dataclasses.replace(run.pods[name], deleting=True)

    def check_starts(self, creates: Any, status: ProcessingJobStatus) -> None:
        states = {s.name: s.state for s in status.stages}
        for create in creates:
            final = create.stage in self.final.names
            graph = self.final if final else self.main
            assert (status.finally_ is not None) == final, f"{create.stage} started in the wrong phase"
            for dep in graph.deps[create.stage]:
                assert states[dep] == StageState.SUCCEEDED, f"{create.stage} started before {dep} succeeded"

    def check_the_end(self) -> None:
        seqs = [t.seq for d in self.run.decisions for t in d.transitions]
        assert seqs == list(range(1, len(seqs) + 1)), "audit sequence numbers have a gap"


@settings(max_examples=200, deadline=None)
@given(spec=specs(), actions=st.lists(ACTIONS, min_size=5, max_size=60))
def test_random_graphs_keep_the_invariants(spec: dict[str, Any], actions: list[tuple[str, Any]]) -> None:
    walk = DagWalk(spec)
    walk.reconcile()
    for action in actions:
        walk.world(action)
        walk.reconcile()
    walk.check_the_end()


@settings(max_examples=100, deadline=None)
@given(spec=specs())
def test_a_graph_whose_attempts_all_succeed_runs_every_stage_once_and_succeeds(spec: dict[str, Any]) -> None:
    walk = DagWalk(spec)
    run = walk.run
    walk.reconcile()
    for _ in range(20):
        for name in sorted(p.name for p in run.pods.values() if p.live):
            run.succeeded(name, message='{"k": 1}')
        walk.reconcile()
        if is_terminal(run.parsed):
            break
    assert run.succeeded_condition == ("True", "Succeeded")
    assert all(s.attempt_count == 1 and s.state == StageState.SUCCEEDED for s in run.parsed.stages)
    walk.check_the_end()
