"""Properties of `decide` over random walks: random specs and policies, random pod outcomes, random time.

The walk plays the world around the operator: after every world event it runs one reconcile pass
(decide, store the status, create and delete pods), and checks after each pass that

- a job never has two live pods (live pods that are not being deleted, plus those created now);
- decide is deterministic (the same input twice gives equal output, manifests included);
- audit sequence numbers run 1, 2, 3... without a gap, across passes;
- a terminal job absorbs: its conditions and stages never change and no pod is created;

and at the end of the walk that

- charged attempts stay within limit + 1 (and all attempts do when no Ignore rule applies and the
  job was never suspended);
- every retry waited at least the scheduled delay after the failed attempt ended.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.backoff import effective_policy, scheduled_delay
from procjob.core.config import CoreConfig
from procjob.core.decide import decide
from procjob.models.spec import ProcessingJobSpec, RetryAction
from procjob.models.status import Attempt, AttemptState, ConditionStatus, ProcessingJobStatus
from tests.unit.core.builders import Run, pod_from

SECONDS = [0, 0.25, 1, 2, 5, 30, 120, 400]


@st.composite
def retry_policies(draw: st.DrawFn) -> dict[str, Any]:
    policy: dict[str, Any] = {"limit": draw(st.integers(0, 4))}
    schedule = draw(st.sampled_from(["backoff", "delays", "default"]))
    if schedule == "backoff":
        policy["backoff"] = {
            "initialSeconds": draw(st.sampled_from([0, 1, 5, 30])),
            "factor": draw(st.sampled_from([1, 1.5, 2, 3])),
            "maxSeconds": draw(st.sampled_from([0, 10, 60, 300])),
            "jitter": draw(st.sampled_from([0, 0.3, 1])),
        }
    elif schedule == "delays":
        policy["delaysSeconds"] = draw(st.lists(st.sampled_from([0, 1, 3, 20]), min_size=1, max_size=3))
    rule = st.fixed_dictionaries(
        {"action": st.sampled_from(["Retry", "FailJob", "Ignore"])},
        optional={
            "onExitCodes": st.lists(st.sampled_from([1, 2, 3, 75, 137]), min_size=1, max_size=2),
            "onReasons": st.lists(
                st.sampled_from(["Error", "OOMKilled", "Evicted", "PodDeleted", "StartupTimeout", "DeadlineExceeded"]),
                min_size=1,
                max_size=2,
            ),
        },
    ).filter(lambda r: "onExitCodes" in r or "onReasons" in r)
    rules = draw(st.none() | st.lists(rule, max_size=3))
    if rules is not None:
        policy["rules"] = rules
    return policy


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    stages = []
    for index in range(draw(st.integers(1, 3))):
        stage: dict[str, Any] = {"name": f"s{index}", "image": "registry.example.com/w:1"}
        if draw(st.booleans()):
            stage["retry"] = draw(retry_policies())
        timeout = draw(st.sampled_from([None, 30, 100]))
        if timeout is not None:
            stage["timeoutSeconds"] = timeout
        stage["startupTimeoutSeconds"] = draw(st.sampled_from([20, 60, 300]))
        if index and draw(st.booleans()):
            stage["args"] = [f"{{{{ stages.s{index - 1}.outputs.k }}}}"]
        stages.append(stage)
    spec: dict[str, Any] = {"stages": stages}
    if draw(st.booleans()):
        spec["retry"] = draw(retry_policies())
    deadline = draw(st.sampled_from([None, None, 200, 1000]))
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    spec["podGC"] = draw(st.sampled_from(["Never", "OnSuccess", "OnCompletion"]))
    return spec


# Each world event with its weight: pods mostly run, fail and succeed while time passes; an operator
# or user action (cancel, suspend, queue) now and then.
WORLD: dict[str, tuple[int, st.SearchStrategy[tuple[Any, ...]]]] = {
    "tick": (6, st.tuples(st.just("tick"), st.sampled_from(SECONDS))),
    "run": (4, st.just(("run",))),
    "succeed": (
        3,
        st.tuples(st.just("succeed"), st.sampled_from([None, '{"k": 1}', '{"k": "v", "n": [1]}', "plain text"])),
    ),
    "fail": (4, st.tuples(st.just("fail"), st.sampled_from([1, 2, 3, 75]))),
    "oom": (1, st.just(("oom",))),
    "evict": (1, st.just(("evict",))),
    "disrupt": (1, st.just(("disrupt",))),
    "delete": (1, st.just(("delete",))),  # someone deletes the live pod
    "reap": (2, st.just(("reap",))),  # pods being deleted are gone
    "hang": (1, st.just(("hang",))),  # nothing happens
    "lose-create": (1, st.just(("lose-create",))),  # the next pass's creates never reach the API server
    "flush": (1, st.just(("flush",))),  # the audit relay catches up
    "admit": (2, st.tuples(st.just("admit"), st.sampled_from([True, True, False]))),
    "suspend": (1, st.tuples(st.just("suspend"), st.booleans())),
}
ACTIONS = st.one_of(
    *[strategy for weight, strategy in WORLD.values() for _ in range(weight)],
)


class Walk:
    """A Run whose deletes take effect later (`reap`), checked after every pass."""

    def __init__(self, spec: dict[str, Any], config: CoreConfig, admitted: bool) -> None:
        self.run = Run(spec, config=config, admitted=admitted)
        self.parsed_spec = ProcessingJobSpec.model_validate(spec)
        self.lose_next_create = False
        self.suspended_ever = False
        self.terminal: tuple[Any, Any] | None = None
        self.history: dict[tuple[str, int], Attempt] = {}
        self.uids = 0

    def world(self, action: tuple[Any, ...]) -> None:
        run = self.run
        live = [p.name for p in run.pods.values() if p.live]
        kind = action[0]
        if kind == "tick":
            run.tick(action[1])
        elif kind == "admit":
            run.admitted = action[1]
        elif kind == "suspend":
            run.set_spec(suspend=action[1])
            self.suspended_ever |= action[1]
        elif kind == "cancel":
            run.set_spec(cancel=True)
        elif kind == "flush":
            run.trim_audit()
        elif kind == "lose-create":
            self.lose_next_create = True
        elif kind == "reap":
            run.pods = {name: pod for name, pod in run.pods.items() if not pod.deleting}
        elif live and kind == "run":
            run.running(live[0])
        elif live and kind == "succeed":
            run.succeeded(live[0], message=action[1])
        elif live and kind == "fail":
            run.failed(live[0], exit_code=action[1])
        elif live and kind == "oom":
            run.failed(live[0], exit_code=137, reason="OOMKilled")
        elif live and kind == "evict":
            run.evicted(live[0])
        elif live and kind == "disrupt":
            run.failed(live[0], exit_code=137, disruption="PreemptionByScheduler")
        elif live and kind == "delete":
            run.vanish(live[0])

    def reconcile(self) -> None:
        run = self.run
        job, pods = run.job(), list(run.pods.values())
        decision = run.decide(apply=False)
        again = decide(job, pods, run.now, run.config, admitted=run.admitted)
        assert again == decision, "decide is not deterministic"
        assert [c.manifest for c in again.create] == [c.manifest for c in decision.create]

        deleted = {d.name for d in decision.delete}
        live_after = {p.name for p in pods if p.live and p.name not in deleted} | {c.name for c in decision.create}
        assert len(live_after) <= 1, f"more than one live pod: {sorted(live_after)}"

        status = run.parsed
        if self.terminal is not None:
            assert decision.create == ()
            assert (status.conditions, status.stages) == self.terminal, "a terminal job changed"
        elif is_terminal(status):
            self.terminal = (status.conditions, status.stages)

        for stage in status.stages:
            for attempt in stage.attempts:
                self.history[(stage.name, attempt.attempt)] = attempt

        if not self.lose_next_create:
            for create in decision.create:
                self.uids += 1
                run.pods.setdefault(create.name, pod_from(create, f"uid-{self.uids}", run.now))
        self.lose_next_create = False
        for name in deleted:
            if name in run.pods:
                run.pods[name] = dataclasses.replace(run.pods[name], deleting=True)

    def check_the_end(self) -> None:
        run = self.run
        seqs = [t.seq for d in run.decisions for t in d.transitions]
        assert seqs == list(range(1, len(seqs) + 1)), "audit sequence numbers have a gap"
        if run.config.audit_enabled:
            audit = run.parsed.audit
            assert [e.seq for e in audit.pending] == list(range(audit.flushed_seq + 1, audit.last_seq + 1))

        for index, stage in enumerate(self.parsed_spec.stages):
            policy = effective_policy(self.parsed_spec.retry, stage.retry)
            attempts = [a for (name, _), a in sorted(self.history.items()) if name == stage.name]
            uncounted = sum(1 for a in attempts if a.state == AttemptState.STOPPED or a.charged is False)
            assert len(attempts) - uncounted <= policy.limit + 1
            never_ignores = all(rule.action != RetryAction.IGNORE for rule in policy.rules)
            if never_ignores and not self.suspended_ever:
                assert len(attempts) <= policy.limit + 1
            charged_before = 0
            for failed, following in itertools.pairwise(attempts):
                if failed.state == AttemptState.FAILED:
                    assert failed.finish_time is not None
                    wait = (following.create_time - failed.finish_time).total_seconds()
                    # 1 µs: timedelta resolution
                    assert wait >= scheduled_delay(policy, charged_before + 1) - 1e-6, (index, failed, following)
                charged_before += 1 if failed.charged else 0


def is_terminal(status: ProcessingJobStatus) -> bool:
    return any(c.type == "Succeeded" and c.status != ConditionStatus.UNKNOWN for c in status.conditions)


@settings(max_examples=200, deadline=None)
@given(
    spec=specs(),
    audit=st.booleans(),
    admitted=st.sampled_from([True, True, True, False]),
    actions=st.lists(ACTIONS, min_size=5, max_size=50),
    cancel_at=st.none() | st.none() | st.integers(0, 15),
)
def test_random_walks_keep_the_invariants(
    spec: dict[str, Any], audit: bool, admitted: bool, actions: list[tuple[Any, ...]], cancel_at: int | None
) -> None:
    walk = Walk(spec, CoreConfig(audit_enabled=audit), admitted)
    walk.reconcile()
    for step, action in enumerate(actions):
        walk.world(("cancel",) if step == cancel_at else action)
        walk.reconcile()
    walk.check_the_end()


@settings(max_examples=100, deadline=None)
@given(spec=specs(), outcomes=st.lists(st.sampled_from(["fail", "oom", "delete", "ok"]), min_size=1, max_size=12))
def test_busy_walks_run_every_attempt_to_its_end(spec: dict[str, Any], outcomes: list[str]) -> None:
    """A denser walk: every attempt runs and ends, and the clock jumps to each requeue time."""
    walk = Walk(spec, CoreConfig(), admitted=True)
    run = walk.run
    walk.reconcile()
    for outcome in outcomes:
        live = [p.name for p in run.pods.values() if p.live]
        if live:
            run.running(live[0])
            walk.reconcile()
            run.tick(1)
            walk.world(
                {"fail": ("fail", 1), "oom": ("oom",), "delete": ("delete",), "ok": ("succeed", '{"k": 1}')}[outcome]
            )
        walk.reconcile()
        walk.world(("reap",))
        requeue = run.decisions[-1].requeue_at
        if requeue is not None:
            run.now = max(run.now, requeue)
        else:
            run.tick(timedelta(minutes=1).total_seconds())
        walk.reconcile()
    walk.check_the_end()
