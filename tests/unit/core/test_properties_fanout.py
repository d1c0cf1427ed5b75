"""Properties of `decide` over fanned-out stages and random walks of the world (pods ending in any order,
failures, retries, suspend, cancel, the pod caps coming and going).

After every pass:
- items in flight never exceed the stage's parallelism, and live pods of a stage never exceed it;
- no more pods are created than the pass was allowed (`pods_left`);
- one live pod per item at most; no pod name is ever created for two different attempts;
- decide is deterministic; audit sequence numbers run without a gap;
- the counts add up: succeeded + failed + in flight + not started = total.
At the end of a walk where every attempt succeeds: the stage succeeds with its outputs in item order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.decide import decide
from procjob.core.itemset import parse
from procjob.models.status import StageState
from tests.unit.core.builders import Run, pod_from
from tests.unit.core.test_properties import is_terminal


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(0, 12))
    stage: dict[str, Any] = {
        "name": "fan",
        "image": "registry.example.com/w:1",
        "forEach": list(range(count)),
        "parallelism": draw(st.integers(1, 5)),
        "args": ["{{ item }}"],
        "retry": draw(
            st.sampled_from([{"limit": 0}, {"limit": 1, "delaysSeconds": [0]}, {"limit": 2, "delaysSeconds": [3]}])
        ),
    }
    if draw(st.booleans()):
        stage["failurePolicy"] = {
            "mode": draw(st.sampled_from(["FailFast", "AllItems"])),
            "toleratedFailures": draw(st.integers(0, 3)),
        }
    stages = [stage]
    if draw(st.booleans()):
        stages.append({"name": "after", "image": "registry.example.com/w:1"})
    return {"stages": stages}


ACTIONS = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 3, 10])),
    st.tuples(st.just("run"), st.integers(0, 9)),
    st.tuples(st.just("succeed"), st.integers(0, 9)),
    st.tuples(st.just("succeed"), st.integers(0, 9)),
    st.tuples(st.just("fail"), st.integers(0, 9)),
    st.tuples(st.just("reap"), st.just(0)),
    st.tuples(st.just("cap"), st.sampled_from([None, None, 0, 1, 2])),
    st.tuples(st.just("suspend"), st.booleans()),
    st.tuples(st.just("cancel"), st.just(0)),
)


class FanWalk:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.run = Run(spec)
        self.parallelism = spec["stages"][0]["parallelism"]
        self.attempt_of: dict[str, tuple[int | None, int]] = {}
        self.uids = 0

    def world(self, action: tuple[str, Any]) -> None:
        run, (kind, arg) = self.run, action
        live = sorted(p.name for p in run.pods.values() if p.live)
        if kind == "tick":
            run.tick(arg)
        elif kind == "cap":
            run.pods_left = arg
        elif kind == "suspend":
            run.set_spec(suspend=arg)
        elif kind == "cancel":
            run.set_spec(cancel=True)
        elif kind == "reap":
            run.pods = {name: pod for name, pod in run.pods.items() if not pod.deleting}
        elif live and kind == "run":
            run.running(live[arg % len(live)])
        elif live and kind == "succeed":
            name = live[arg % len(live)]
            run.succeeded(name, message=f'{{"i": {run.pods[name].item}}}')
        elif live and kind == "fail":
            run.failed(live[arg % len(live)])

    def reconcile(self) -> None:
        run = self.run
        job, pods, allowed = run.job(), list(run.pods.values()), run.pods_left
        decision = run.decide(apply=False)
        assert decide(job, pods, run.now, run.config, pods_left=allowed) == decision, "not deterministic"
        if allowed is not None:
            assert len(decision.create) <= allowed, "more pods than allowed"
        for create in decision.create:
            key = (create.item, create.attempt)
            assert self.attempt_of.setdefault(create.name, key) == key, f"{create.name} reused"
        deleted = {d.name for d in decision.delete}
        live = [p for p in pods if p.live and p.name not in deleted] + [
            pod_from(c, "new", run.now) for c in decision.create
        ]
        fan_live = [p for p in live if p.stage == "fan"]
        assert len(fan_live) <= self.parallelism, "more live pods than parallelism"
        assert len({p.item for p in fan_live}) == len(fan_live), "two live pods of one item"
        fan = run.stage("fan").items
        if fan is not None:
            assert len(fan.in_flight) <= self.parallelism, "more items in flight than parallelism"
            not_started = fan.total - fan.next + len(parse(fan.rerun))
            assert fan.succeeded + fan.failed + len(fan.in_flight) + not_started == fan.total, fan
        for create in decision.create:
            self.uids += 1
            run.pods.setdefault(create.name, pod_from(create, f"uid-{self.uids}", run.now))
        for name in deleted:
            if name in run.pods:
                run.pods[name] = dataclasses.replace(run.pods[name], deleting=True)

    def check_the_end(self) -> None:
        seqs = [t.seq for d in self.run.decisions for t in d.transitions]
        assert seqs == list(range(1, len(seqs) + 1)), "audit sequence numbers have a gap"


@settings(max_examples=200, deadline=None)
@given(spec=specs(), actions=st.lists(ACTIONS, min_size=5, max_size=60))
def test_random_fan_outs_keep_the_invariants(spec: dict[str, Any], actions: list[tuple[str, Any]]) -> None:
    walk = FanWalk(spec)
    walk.reconcile()
    for action in actions:
        walk.world(action)
        walk.reconcile()
    walk.check_the_end()


@settings(max_examples=100, deadline=None)
@given(spec=specs(), order=st.randoms(use_true_random=False))
def test_items_that_all_succeed_in_any_order_give_their_outputs_in_item_order(spec: dict[str, Any], order: Any) -> None:
    walk = FanWalk(spec)
    run = walk.run
    walk.reconcile()
    for _ in range(40):
        live = sorted(p.name for p in run.pods.values() if p.live)
        if not live:
            walk.reconcile()
            if is_terminal(run.parsed):
                break
            continue
        name = order.choice(live)
        run.succeeded(name, message=f'{{"i": {run.pods[name].item}}}')
        walk.reconcile()
    assert run.succeeded_condition == ("True", "Succeeded")
    stage = run.stage("fan")
    assert stage.state == StageState.SUCCEEDED
    total = len(spec["stages"][0]["forEach"])
    assert stage.outputs == ({"i": list(range(total))} if total else None)
    walk.check_the_end()
