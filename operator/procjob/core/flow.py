"""The flow of one pass through the job's stages: which stages move, and what their end means.

- **The stages** (a graph through `dependsOn`, a chain by default; core.dag): first every stage with
  an attempt in progress is followed (its pod ran, failed, timed out); then every stage that may
  start does — its upstream stages have all succeeded, or its retry is due — in topological order,
  so a stage whose upstream succeeded in this pass starts in this same pass. Independent stages
  therefore run at the same time; one stage never has two attempts at once.
- A stage that fails for good stops the other stages' attempts (Stopped, not charged; those stages
  Cancelled): the stages have failed. They also end when all have succeeded, on cancel, and at
  activeDeadlineSeconds (core.decide).
- **Finally.** When the stages end and the job has `spec.finally` (and it had started: a job
  cancelled while queued or suspended has nothing to clean up), `status.finally` records how they
  ended, the Succeeded condition says Finalizing, and the finally stages run the same way, with
  `{{ job.status }}` and `{{ job.reason }}`, bounded by finallyDeadlineSeconds. A finally stage that
  fails does not stop the others; one waiting for it never starts. When none can move, the job ends
  as the stages ended — except that a finally failure after the stages succeeded ends it Failed
  (FinallyFailed): a finally stage can never turn a failed job into a succeeded one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from procjob.core.chains import Chain, StageView
from procjob.core.dag import Graph
from procjob.core.fanout import FanOut
from procjob.models.lifecycle import outcome
from procjob.models.status import (
    AttemptState,
    ConditionStatus,
    FinallyStatus,
    Reason,
    StageState,
)
from procjob.models.transitions import Transition

IN_PROGRESS = (AttemptState.PENDING, AttemptState.RUNNING)
SETTLED = frozenset({StageState.SUCCEEDED, StageState.FAILED, StageState.CANCELLED})


class Flow(FanOut):
    """The stages' graph, then the finally stages, moved as far as the world allows in one pass."""

    def advance(self) -> None:
        if self.status.finally_ is not None:
            self.run_finally()
            return
        self.walk(self.main, self.graph, stop=lambda: self.terminal or self.status.finally_ is not None)
        if self.terminal or self.status.finally_ is not None or not all(v.succeeded for v in self.main):
            return
        done = len(self.main)  # every stage succeeded, and a success never ends the job on its own
        message = f"all {done} stages succeeded" if done != 1 else "the stage succeeded"
        self.conclude(ConditionStatus.TRUE, Reason.SUCCEEDED, message, Transition.JOB_SUCCEEDED)

    def walk(self, views: Sequence[StageView], graph: Graph, *, stop: Callable[[], bool]) -> None:
        """Follow every attempt in progress, then start what may start; `stop`: the walk is over."""
        for view in views:
            for chain in self.chains(view):
                last = chain.last
                if last is not None and last.state in IN_PROGRESS and self.moving(chain):
                    self.track(chain, last)
                    if stop():
                        return
        for view in views:
            self.launch(view, graph)
            if stop():
                return

    def launch(self, view: StageView, graph: Graph) -> None:
        """Start the stage's next attempt if it may start now: a due retry, or a stage not started (or
        stopped by suspend) whose upstream stages have all succeeded."""
        state, last = view.status.state, view.last
        if view.stage.fanned and state not in SETTLED:
            if view.status.items is None or state == StageState.PENDING:
                if all(self.by_name[d].succeeded for d in graph.deps.get(view.status.name, ())):
                    self.start_fanout(view)
            else:
                self.continue_fanout(view)
            return
        if state in SETTLED or (last is not None and last.state in IN_PROGRESS):
            return
        if state == StageState.BACKOFF_WAITING and last is not None and last.state == AttemptState.FAILED:
            due = view.status.next_attempt_time
            if due is None or self.now >= due:
                self.start_attempt(view)
            else:
                self.at(due)
            return
        if all(self.by_name[d].succeeded for d in graph.deps.get(view.status.name, ())):
            self.start_attempt(view)

    @staticmethod
    def chains(view: StageView) -> list[Chain]:
        """The chains of attempts of a stage: its own, or its items' in flight (a fanned-out stage)."""
        return list(view.items.values()) if view.stage.fanned else [view]

    @staticmethod
    def moving(chain: Chain) -> bool:
        """Whether the chain is still to be followed (an item ended earlier in this pass is not)."""
        return chain.item is None or chain.view.items.get(chain.item) is chain

    def stages_failed(self, reason: Reason, message: str) -> None:
        """A stage failed for good: the other stages are stopped, and the stages have failed."""
        self.stop_current("StageFailed", StageState.CANCELLED, views=self.main)
        self.conclude(ConditionStatus.FALSE, reason, message, Transition.JOB_FAILED)

    def conclude(self, status: ConditionStatus, reason: Reason, message: str, transition: Transition) -> None:
        """The stages have ended: the job ends, or first runs its finally stages."""
        assert self.spec is not None
        if not self.spec.finally_ or self.status.start_time is None:
            self.end_job(status, reason, message, transition)
            return
        result = outcome(status.value, reason.value) or "Failed"
        ended = FinallyStatus(outcome=result, reason=reason.value, message=message[:1024], start_time=self.now)
        self.status = self.status.model_copy(update={"finally_": ended})
        self.record(
            Transition.FINALLY_STARTED,
            f"stages ended {result} ({reason.value}): {message}; running the finally stages",
            reason=reason.value,
        )
        self.at(self.deadline())
        self.run_finally()

    def run_finally(self) -> None:
        self.walk(self.finale, self.finally_graph, stop=lambda: self.terminal)
        if self.finally_settled():
            self.finish_finally()

    def finally_settled(self) -> bool:
        """Whether no finally stage can move any more: each succeeded, failed, or waits for one that
        failed (or for one that waits so)."""
        blocked: set[str] = set()
        for view in self.finale:
            if view.status.state in SETTLED:
                continue
            deps = self.finally_graph.deps.get(view.status.name, ())
            stuck = any(d in blocked or self.by_name[d].status.state in SETTLED - {StageState.SUCCEEDED} for d in deps)
            if view.status.state != StageState.PENDING or not stuck:
                return False
            blocked.add(view.status.name)
        return True

    def finish_finally(self, *, overdue: bool = False) -> None:
        """End the job as the stages ended; a finally failure after they succeeded ends it FinallyFailed."""
        assert self.spec is not None
        assert self.status.finally_ is not None
        ended = self.status.finally_
        failed = [v.status.name for v in self.finale if v.status.state != StageState.SUCCEEDED]
        if overdue:
            note = f"the finally stages ran past finallyDeadlineSeconds ({self.spec.finally_deadline}s)"
        elif failed:
            note = f"finally {'stage' if len(failed) == 1 else 'stages'} {', '.join(failed)} did not succeed"
        else:
            note = "the finally stages succeeded"
        message = f"{ended.message}; {note}"
        if ended.outcome == "Succeeded" and (overdue or failed):
            self.end_job(ConditionStatus.FALSE, Reason.FINALLY_FAILED, message, Transition.JOB_FAILED)
        elif ended.outcome == "Succeeded":
            self.end_job(ConditionStatus.TRUE, Reason.SUCCEEDED, message, Transition.JOB_SUCCEEDED)
        else:
            reason = Reason(ended.reason) if ended.reason in Reason._value2member_map_ else Reason.STAGE_FAILED
            cancelled = ended.outcome == "Cancelled"
            self.end_job(
                ConditionStatus.FALSE, reason, message, Transition.JOB_CANCELLED if cancelled else Transition.JOB_FAILED
            )

    def stop_current(
        self, why: str, stage_state: StageState, *, failed: bool = False, views: Sequence[StageView] | None = None
    ) -> None:
        """Stop the attempts in progress of `views` (every stage by default): suspend, cancel, a deadline, a
        failed stage; stop every live pod.

        An attempt whose pod has already succeeded is recorded as the success it is, not stopped: a
        resumed job must not run a finished stage (item) again. An attempt recorded in this very pass
        loses its pod create: it never runs.
        """
        for view in self.stages if views is None else views:
            stopped = [self.stop_chain(chain, why, stage_state, failed) for chain in self.chains(view)]
            if view.stage.fanned and view.status.state in (StageState.RUNNING, StageState.BACKOFF_WAITING):
                view.update(state=stage_state)
            elif (
                not any(stopped)
                and view.status.state in (StageState.BACKOFF_WAITING, StageState.RUNNING)
                and (stage_state in (StageState.CANCELLED, StageState.FAILED))
            ):
                view.update(state=stage_state, next_attempt_time=None)
        for pod in self.pods.values():
            if pod.live:
                self.delete_pod(pod, why)
