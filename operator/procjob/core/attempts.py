"""The stage machine of one pass: attempt by attempt — start, follow the pod, succeed, fail,
classify, retry with backoff, or give up — for a chain of attempts (core.chains): a plain stage's,
or one item's of a fanned-out stage, whose ends the fan-out decides (core.fanout). Pure, like all of
core.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any

from procjob.core.backoff import effective_policy, retry_delay
from procjob.core.chains import Chain, ItemView, StageView
from procjob.core.classify import Failure, failure_of, match_rule
from procjob.core.decision import CreatePod
from procjob.core.naming import pod_name
from procjob.core.observe import PodObservation
from procjob.core.outputs import InvalidOutputs, outputs_of
from procjob.core.passstate import PassState
from procjob.core.podspec import build_pod
from procjob.core.templating import TemplateError, upstream
from procjob.models.spec import FailureReason, RetryAction
from procjob.models.status import (
    Attempt,
    AttemptState,
    Reason,
    RetryDecision,
    StageState,
)
from procjob.models.transitions import Transition

# A hard bound on attempts of one stage, whatever the rules say (Ignore retries are not charged).
MAX_ATTEMPTS_PER_STAGE = 100
# An attempt's pod seen running is recorded Running (status and AttemptRunning, at the pod's own
# start time) once it has run this long, or with its end, or with a status write the pass makes for
# it anyway (its pod's UID): a short attempt costs no status write of its own for running. Its audit
# row is as late as this at most (plus the relay), within the audit-lag target of 5 s.
RUNNING_RECORD_DELAY = timedelta(seconds=4)


class StageMachine(PassState, ABC):
    """One stage's attempts: start one, follow its pod, record its end, retry or give up. Which stages
    move in a pass, and what a stage that gives up means for the job, is the flow's (core.flow)."""

    @abstractmethod
    def stages_failed(self, reason: Reason, message: str) -> None:
        """A main stage failed for good: the job's stages have failed (core.flow.Flow)."""

    @abstractmethod
    def item_succeeded(self, chain: ItemView, outputs: dict[str, Any] | None) -> None:
        """An item succeeded (core.fanout.FanOut)."""

    @abstractmethod
    def item_failed(self, chain: ItemView, reason: str, message: str, detail: dict[str, Any]) -> None:
        """An item failed for good (core.fanout.FanOut)."""

    def gave_up(self, view: StageView, reason: Reason, message: str) -> None:
        """A stage failed for good. A main stage fails the job's stages; a finally stage's failure is
        reported by the finally walk once every finally stage has ended."""
        if not view.final:
            self.stages_failed(reason, message)

    def manifest(self, chain: Chain, attempt: int) -> dict[str, Any]:
        """The attempt's pod, its templates rendered from the outputs of the stages upstream of it (for
        a finally stage also how the stages ended; for an item, the item). Raises TemplateError."""
        assert self.spec is not None
        view = chain.view
        names = upstream(self.spec, view.index)
        outputs = {v.status.name: v.status.outputs for v in self.stages if v.status.name in names}
        ended = self.status.finally_
        facts = (ended.outcome, ended.reason) if view.final and ended is not None else None
        item = None if chain.item is None else (chain.item, self.item_value(view, chain.item))
        return build_pod(self.job, view.index, attempt, outputs, self.config, ended=facts, item=item)

    @abstractmethod
    def item_value(self, view: StageView, index: int) -> Any:
        """The item at `index` of a fanned-out stage (core.fanout)."""

    def may_create(self, chain: Chain) -> bool:
        """Whether a new attempt may start now: the audit outbox has room, no pod of the chain is still
        on its way out (attempts never overlap), and the pass has a pod left to create."""
        if self.backlog_full:
            self.backlogged = True
            return False
        if self.terminating(chain.name, chain.item):
            return False
        if self.pods_left is not None and self.pods_left <= 0:
            self.starved = True
            return False
        return True

    def start_attempt(self, chain: Chain) -> None:
        if not self.may_create(chain):
            return
        stage = chain.stage
        number = chain.next_number()
        name = pod_name(self.job.meta.name, self.job.meta.uid, stage.name, number, chain.item)
        try:
            manifest = self.manifest(chain, number)
        except TemplateError as exc:
            self.template_failed(chain, exc)
            return
        attempt = Attempt(
            attempt=number, pod_name=name, state=AttemptState.PENDING, create_time=self.now, item=chain.item
        )
        if chain.begin(attempt, self.now):
            self.record(Transition.STAGE_STARTED, f"stage {stage.name} started", stage=stage.name)
        self.record(
            Transition.ATTEMPT_STARTED, f"{chain.what} attempt {number} started", stage=stage.name, attempt=attempt
        )
        self.create.append(CreatePod(stage.name, number, name, manifest, chain.item))
        if self.pods_left is not None:
            self.pods_left -= 1
        self.at(self.now + timedelta(seconds=stage.startup_timeout_seconds))

    def template_failed(self, chain: Chain, exc: TemplateError) -> None:
        """A template that cannot be rendered (e.g. a missing output) fails the stage (the item) for good."""
        name = chain.name
        if isinstance(chain, ItemView):
            self.item_failed(chain, exc.reason, f"{chain.what}: {exc}", {})
            return
        assert isinstance(chain, StageView)
        chain.update(state=StageState.FAILED, completion_time=self.now, message=str(exc)[:1024])
        self.record(Transition.STAGE_FAILED, f"stage {name}: {exc}", reason=exc.reason, stage=name)
        self.gave_up(chain, Reason.STAGE_FAILED, f"stage {name}: {exc}")

    def track(self, chain: Chain, last: Attempt) -> None:
        """Follow the live attempt's pod: running, finished, vanished, timed out."""
        pod = self.pods.get(last.pod_name)
        if pod is not None and last.pod_uid is not None and pod.uid != last.pod_uid:
            self.delete_pod(pod, "not the pod this attempt created")
            pod = None
        if pod is None:
            self.pod_missing(chain, last)
            return
        writing = last.pod_uid is None  # its UID is recorded now: this pass writes the status for it anyway
        if writing:
            last = last.model_copy(update={"pod_uid": pod.uid})
            chain.replace_last(last)
        if pod.terminal:
            last = self.ran(chain, last, pod)
        if pod.phase == "Succeeded":
            self.attempt_succeeded(chain, last, pod)
        elif pod.phase == "Failed":
            self.attempt_failed(chain, failure_of(pod), pod)
        elif pod.deleting:
            self.settle(pod)  # the watch will tell us when it is gone
        elif pod.phase == "Running" or (pod.phase == "Unknown" and last.state == AttemptState.RUNNING):
            # Unknown: the node stopped reporting; the attempt is still running as far as we know.
            self.running(chain, last, pod, now=writing)
        else:
            self.pending(chain, last, pod)

    def pod_missing(self, chain: Chain, last: Attempt) -> None:
        """The attempt's pod is not there: refused, never created, or gone after it was seen."""
        if last.pod_name in self.rejected:
            self.pod_rejected(chain, self.rejected[last.pod_name])
        elif last.pod_uid is None and last.pod_name not in self.gone:
            self.recreate_missing(chain, last)
        elif (gone := self.vanished.get(last.pod_name)) is not None and last.pod_uid in (None, gone.uid):
            self.vanished_end(chain, last, gone)
        else:  # seen, or seen deleted before its UID was recorded: it may have run
            self.attempt_failed(chain, Failure(FailureReason.POD_DELETED, None, "the pod was deleted"), None)

    def vanished_end(self, chain: Chain, last: Attempt, pod: PodObservation) -> None:
        """A pod gone before this pass saw how it ended, whose end was seen before it went (it
        succeeded or failed, or was evicted): that end counts, not a deletion."""
        last = self.ran(chain, last.model_copy(update={"pod_uid": pod.uid}), pod)
        chain.replace_last(last)
        if pod.phase == "Succeeded":
            self.attempt_succeeded(chain, last, pod)
        else:
            self.attempt_failed(chain, failure_of(pod), pod)

    def running(self, chain: Chain, last: Attempt, pod: PodObservation, *, now: bool = False) -> None:
        """A running attempt: recorded once as running (see RUNNING_RECORD_DELAY; `now`: the pass
        writes this attempt anyway), stopped at timeoutSeconds."""
        stage = chain.stage
        if last.state == AttemptState.PENDING:
            record_at = self.now if pod.started is None else pod.started + RUNNING_RECORD_DELAY
            if now or self.now >= record_at:
                last = self.mark_running(chain, last, pod)
            else:
                self.at(record_at)
        if stage.timeout_seconds is None:
            return
        ends = (last.start_time or pod.started or self.now) + timedelta(seconds=stage.timeout_seconds)
        if self.now >= ends:
            last = self.mark_running(chain, last, pod)  # its run is recorded before its end
            self.delete_pod(pod, "attempt timeout")
            too_long = f"attempt ran longer than timeoutSeconds ({stage.timeout_seconds}s)"
            self.attempt_failed(chain, Failure(FailureReason.DEADLINE_EXCEEDED, None, too_long), None)
        else:
            self.at(ends)

    def ran(self, chain: Chain, last: Attempt, pod: PodObservation) -> Attempt:
        """A pod that ended: if its container ran (it succeeded, or exited with a code) and the
        attempt was not recorded Running yet, it is now, at the pod's own start time — unless the
        audit outbox is full, where only ends are recorded (AUDIT_OUTBOX_HARD_LIMIT)."""
        ran = pod.phase == "Succeeded" or pod.exit_code is not None
        if not ran or self.backlog_full:
            return last
        return self.mark_running(chain, last, pod)

    def mark_running(self, chain: Chain, last: Attempt, pod: PodObservation) -> Attempt:
        """Record a pending attempt as running since its pod started (within [its creation, now])."""
        if last.state != AttemptState.PENDING:
            return last
        started = min(max(pod.started or self.now, last.create_time), self.now)
        last = last.model_copy(update={"state": AttemptState.RUNNING, "start_time": started, "message": None})
        chain.replace_last(last)
        message = f"{chain.what} attempt {last.attempt} running"
        self.record(Transition.ATTEMPT_RUNNING, message, stage=chain.stage.name, attempt=last, time=started)
        return last

    def pending(self, chain: Chain, last: Attempt, pod: PodObservation) -> None:
        """A pod not running yet: its waiting reason shown, stopped at startupTimeoutSeconds."""
        stage = chain.stage
        waiting = pod.waiting_reason or ("Unschedulable" if pod.unschedulable else None)
        detail = pod.waiting_message or pod.unschedulable or ""
        message = f"{waiting}: {detail}".rstrip(": ")[:1024] if waiting else None  # schedulers write long ones
        if message != last.message:
            chain.replace_last(last.model_copy(update={"message": message}))
        ends = last.create_time + timedelta(seconds=stage.startup_timeout_seconds)
        if self.now >= ends:
            self.delete_pod(pod, "startup timeout")
            why = f"pod not running after startupTimeoutSeconds ({stage.startup_timeout_seconds}s)"
            if message:
                why += f": {message}"
            self.attempt_failed(chain, Failure(FailureReason.STARTUP_TIMEOUT, None, why), None)
        else:
            self.at(ends)

    def recreate_missing(self, chain: Chain, last: Attempt) -> None:
        """The attempt was recorded but its pod never seen: (re)issue the create; 409 adopts."""
        stage = chain.stage
        ends = last.create_time + timedelta(seconds=stage.startup_timeout_seconds)
        if self.now >= ends:
            why = f"pod not created within startupTimeoutSeconds ({stage.startup_timeout_seconds}s)"
            self.attempt_failed(chain, Failure(FailureReason.STARTUP_TIMEOUT, None, why), None)
            return
        try:
            manifest = self.manifest(chain, last.attempt)
        except TemplateError as exc:  # the same inputs rendered when it was recorded: a status edited by hand
            ended = {"state": AttemptState.FAILED, "finish_time": self.now, "reason": exc.reason, "charged": False}
            chain.replace_last(last.model_copy(update=ended))
            self.template_failed(chain, exc)
            return
        self.create.append(CreatePod(stage.name, last.attempt, last.pod_name, manifest, chain.item))
        self.at(ends)

    def pod_rejected(self, chain: Chain, message: str) -> None:
        """The API server refused the attempt's pod (4xx): an identical pod would be refused again,
        so the stage fails now, whatever the retry rules say, with the API server's own words."""
        failure = Failure(FailureReason.POD_REJECTED, None, f"the API server refused the pod: {message}"[:1024])
        last = chain.last
        assert last is not None
        failed = last.model_copy(
            update={
                "state": AttemptState.FAILED,
                "finish_time": self.now,
                "reason": failure.reason.value,
                "message": failure.message,
                "charged": False,
            }
        )
        chain.replace_last(failed)
        self.record(
            Transition.ATTEMPT_FAILED,
            f"{chain.what} attempt {failed.attempt} failed: {failure.message}",
            reason=failure.reason.value,
            stage=chain.name,
            attempt=failed,
        )
        decision = RetryDecision(
            rule="podRejected", action=RetryAction.FAIL_JOB, failure_reason=failure.reason.value, retries_left=0
        )
        self.stage_failed(chain, decision, Reason.STAGE_FAILED, f"{chain.what}: {failure.message}")

    def attempt_succeeded(self, chain: Chain, last: Attempt, pod: PodObservation) -> None:
        stage = chain.stage
        try:
            outputs, problem = outputs_of(pod.termination_message)
        except InvalidOutputs as exc:
            self.attempt_failed(chain, Failure(FailureReason.INVALID_OUTPUTS, pod.exit_code, str(exc)), pod)
            return
        message = problem or (pod.termination_message if outputs is None else None)
        done = last.model_copy(
            update={
                "state": AttemptState.SUCCEEDED,
                "start_time": last.start_time or pod.started or last.create_time,
                "finish_time": pod.finished or self.now,
                "exit_code": pod.exit_code if pod.exit_code is not None else 0,
                "reason": "Completed",
                "message": message[:1024] if message else None,
            }
        )
        chain.replace_last(done)
        self.record(
            Transition.ATTEMPT_SUCCEEDED,
            f"{chain.what} attempt {done.attempt} succeeded",
            reason="Completed",  # the attempt's own reason, as for a failure
            stage=stage.name,
            attempt=done,
            detail={"outputs": outputs} if outputs else None,
        )
        if isinstance(chain, ItemView):
            self.item_succeeded(chain, outputs)
            return
        assert isinstance(chain, StageView)
        chain.update(state=StageState.SUCCEEDED, completion_time=self.now, outputs=outputs, message=problem)
        self.record(Transition.STAGE_SUCCEEDED, f"stage {stage.name} succeeded", stage=stage.name)

    def attempt_failed(self, chain: Chain, failure: Failure, pod: PodObservation | None) -> None:
        """Record the failure, then apply the first matching rule: retry, ignore, or fail the job."""
        assert self.spec is not None
        stage = chain.stage
        last = chain.last
        assert last is not None
        policy = effective_policy(self.spec.retry, stage.retry)
        match = match_rule(policy, failure)
        charged = match.action == RetryAction.RETRY
        failed = last.model_copy(
            update={
                "state": AttemptState.FAILED,
                "start_time": last.start_time or (pod.started if pod else None),
                "finish_time": (pod.finished if pod and pod.finished else None) or self.now,
                "exit_code": failure.exit_code,
                "reason": failure.reason.value,
                "message": failure.message[:1024] or None,
                "charged": charged,
            }
        )
        chain.replace_last(failed)
        used = chain.charged_failures + (1 if charged else 0)
        chain.set(charged_failures=used)
        code = f" (exit {failure.exit_code})" if failure.exit_code is not None else ""
        self.record(
            Transition.ATTEMPT_FAILED,
            f"{chain.what} attempt {failed.attempt} failed: {failure.reason.value}{code}"
            + (f": {failure.message}" if failure.message else ""),
            reason=failure.reason.value,
            stage=stage.name,
            attempt=failed,
        )
        left = max(0, policy.limit - used)
        decision = RetryDecision(
            rule=match.rule,
            action=match.action,
            failure_reason=failure.reason.value,
            exit_code=failure.exit_code,
            retries_left=left,
        )
        if match.action == RetryAction.FAIL_JOB:
            message = f"{chain.what} failed{code}: {match.rule} says FailJob"
            self.stage_failed(chain, decision, Reason.STAGE_FAILED, message)
            return
        if charged and used > policy.limit:
            message = f"{chain.what} failed {used} times{code}; retry limit {policy.limit} reached"
            self.stage_failed(
                chain, decision.model_copy(update={"rule": "limit"}), Reason.BACKOFF_LIMIT_EXCEEDED, message
            )
            return
        if chain.attempt_count >= MAX_ATTEMPTS_PER_STAGE:
            message = f"{chain.what} reached {MAX_ATTEMPTS_PER_STAGE} attempts"
            self.stage_failed(
                chain, decision.model_copy(update={"rule": "maxAttempts"}), Reason.BACKOFF_LIMIT_EXCEEDED, message
            )
            return
        # An uncharged (Ignore) retry waits as long as the next charged retry would.
        retry_number = used if charged else used + 1
        seed = f"{stage.name}/{failed.attempt}" if chain.item is None else f"{stage.name}/{chain.item}/{failed.attempt}"
        delay = retry_delay(policy, retry_number, f"{self.job.meta.uid}/{seed}")
        self.schedule_retry(chain, failed, decision.model_copy(update={"delay_seconds": delay}))

    def schedule_retry(self, chain: Chain, failed: Attempt, decision: RetryDecision) -> None:
        """Wait `decision.delay_seconds` from the failed attempt's end, unless that passes the deadline."""
        delay = decision.delay_seconds or 0.0
        due = (failed.finish_time or self.now) + timedelta(seconds=delay)
        deadline = self.deadline()
        if deadline is not None and due > deadline:
            message = f"{chain.what}: the retry in {delay:g}s would start after the job's deadline"
            self.stage_failed(chain, decision, Reason.DEADLINE_EXCEEDED, message)
            return
        chain.set(state=StageState.BACKOFF_WAITING, next_attempt_time=due, last_retry_decision=decision)
        left = f"{decision.retries_left} {'retry' if decision.retries_left == 1 else 'retries'} left"
        self.record(
            Transition.RETRY_SCHEDULED,
            f"{chain.what} attempt {failed.attempt + 1} in {delay:g}s ({decision.rule}: {decision.action.value}, "
            f"{left})",
            stage=chain.name,
            attempt=failed,
            detail={**decision.to_api(), "nextAttemptTime": due.isoformat()},
        )
        self.at(due)  # a wait already over starts in this pass (core.flow starts what is due)

    def stage_failed(self, chain: Chain, decision: RetryDecision, reason: Reason, message: str) -> None:
        """The chain gave up: a plain stage fails (and so the job's stages, core.flow); an item fails for
        good, which the fan-out's failure policy weighs (core.fanout)."""
        if isinstance(chain, ItemView):
            self.item_failed(chain, reason.value, message, decision.to_api())
            return
        assert isinstance(chain, StageView)
        chain.update(
            state=StageState.FAILED,
            completion_time=self.now,
            last_retry_decision=decision,
            next_attempt_time=None,
            message=message,
        )
        self.record(Transition.STAGE_FAILED, message, reason=reason.value, stage=chain.name, detail=decision.to_api())
        self.gave_up(chain, reason, message)
