"""The stage machine of one pass: attempt by attempt — start, follow the pod, succeed, fail,
classify, retry with backoff, or fail the stage (and so the job's stages). Pure, like all of core.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any

from procjob.core.backoff import effective_policy, retry_delay
from procjob.core.classify import Failure, failure_of, match_rule
from procjob.core.decision import CreatePod
from procjob.core.naming import pod_name
from procjob.core.observe import PodObservation
from procjob.core.outputs import InvalidOutputs, outputs_of
from procjob.core.passstate import PassState, StageView
from procjob.core.podspec import build_pod
from procjob.core.templating import TemplateError, upstream
from procjob.models.spec import FailureReason, RetryAction
from procjob.models.status import (
    MAX_ATTEMPTS_KEPT,
    Attempt,
    AttemptState,
    Reason,
    RetryDecision,
    StageState,
)
from procjob.models.transitions import Transition

# A hard bound on attempts of one stage, whatever the rules say (Ignore retries are not charged).
MAX_ATTEMPTS_PER_STAGE = 100


class StageMachine(PassState, ABC):
    """One stage's attempts: start one, follow its pod, record its end, retry or give up. Which stages
    move in a pass, and what a stage that gives up means for the job, is the flow's (core.flow)."""

    @abstractmethod
    def stages_failed(self, reason: Reason, message: str) -> None:
        """A main stage failed for good: the job's stages have failed (core.flow.Flow)."""

    def gave_up(self, view: StageView, reason: Reason, message: str) -> None:
        """A stage failed for good. A main stage fails the job's stages; a finally stage's failure is
        reported by the finally walk once every finally stage has ended."""
        if not view.final:
            self.stages_failed(reason, message)

    def manifest(self, view: StageView, attempt: int) -> dict[str, Any]:
        """The attempt's pod, its templates rendered from the outputs of the stages upstream of it (and
        for a finally stage, how the stages ended). Raises TemplateError."""
        assert self.spec is not None
        names = upstream(self.spec, view.index)
        outputs = {v.status.name: v.status.outputs for v in self.stages if v.status.name in names}
        ended = self.status.finally_
        facts = (ended.outcome, ended.reason) if view.final and ended is not None else None
        return build_pod(self.job, view.index, attempt, outputs, self.config, ended=facts)

    def start_attempt(self, view: StageView) -> None:
        stage = view.stage
        if self.backlog_full:
            self.backlogged = True
            return
        if self.terminating(stage.name):
            return  # the previous attempt's container may still run: no overlap
        number = view.status.attempt_count + 1
        name = pod_name(self.job.meta.name, self.job.meta.uid, stage.name, number)
        try:
            manifest = self.manifest(view, number)
        except TemplateError as exc:
            self.template_failed(view, exc)
            return
        attempt = Attempt(attempt=number, pod_name=name, state=AttemptState.PENDING, create_time=self.now)
        first = view.status.attempt_count == 0
        view.update(
            state=StageState.RUNNING,
            attempt_count=number,
            attempts=[*view.status.attempts, attempt][-MAX_ATTEMPTS_KEPT:],
            start_time=view.status.start_time or self.now,
            next_attempt_time=None,
        )
        if first:
            self.record(Transition.STAGE_STARTED, f"stage {stage.name} started", stage=stage.name)
        self.record(
            Transition.ATTEMPT_STARTED,
            f"stage {stage.name} attempt {number} started",
            stage=stage.name,
            attempt=attempt,
        )
        self.create.append(CreatePod(stage.name, number, name, manifest))
        self.at(self.now + timedelta(seconds=stage.startup_timeout_seconds))

    def template_failed(self, view: StageView, exc: TemplateError) -> None:
        """A template that cannot be rendered (e.g. a missing output) fails the stage for good."""
        name = view.status.name
        view.update(state=StageState.FAILED, completion_time=self.now, message=str(exc)[:1024])
        self.record(Transition.STAGE_FAILED, f"stage {name}: {exc}", reason=exc.reason, stage=name)
        self.gave_up(view, Reason.STAGE_FAILED, f"stage {name}: {exc}")

    def track(self, view: StageView, last: Attempt) -> None:
        """Follow the live attempt's pod: running, finished, vanished, timed out."""
        pod = self.pods.get(last.pod_name)
        if pod is not None and last.pod_uid is not None and pod.uid != last.pod_uid:
            self.delete_pod(pod, "not the pod this attempt created")
            pod = None
        if pod is None:
            self.pod_missing(view, last)
            return
        if last.pod_uid is None:
            last = last.model_copy(update={"pod_uid": pod.uid})
            view.replace_last(last)
        if pod.phase == "Succeeded":
            self.attempt_succeeded(view, last, pod)
        elif pod.phase == "Failed":
            self.attempt_failed(view, failure_of(pod), pod)
        elif pod.deleting:
            self.settle(pod)  # the watch will tell us when it is gone
        elif pod.phase == "Running" or (pod.phase == "Unknown" and last.state == AttemptState.RUNNING):
            # Unknown: the node stopped reporting; the attempt is still running as far as we know.
            self.running(view, last, pod)
        else:
            self.pending(view, last, pod)

    def pod_missing(self, view: StageView, last: Attempt) -> None:
        """The attempt's pod is not there: refused, never created, or gone after it was seen."""
        if last.pod_name in self.rejected:
            self.pod_rejected(view, self.rejected[last.pod_name])
        elif last.pod_uid is None and last.pod_name not in self.gone:
            self.recreate_missing(view, last)
        elif last.pod_name in self.disrupted:  # evicted, or its node went: its end was not seen
            reason = self.disrupted[last.pod_name]
            self.attempt_failed(view, Failure(FailureReason.DISRUPTION, None, f"the pod was deleted: {reason}"), None)
        else:  # seen, or seen deleted before its UID was recorded: it may have run
            self.attempt_failed(view, Failure(FailureReason.POD_DELETED, None, "the pod was deleted"), None)

    def running(self, view: StageView, last: Attempt, pod: PodObservation) -> None:
        """A running attempt: recorded once as running, stopped at timeoutSeconds."""
        stage = view.stage
        if last.state == AttemptState.PENDING:
            last = last.model_copy(
                update={"state": AttemptState.RUNNING, "start_time": pod.started or self.now, "message": None}
            )
            view.replace_last(last)
            message = f"stage {stage.name} attempt {last.attempt} running"
            self.record(Transition.ATTEMPT_RUNNING, message, stage=stage.name, attempt=last)
        if stage.timeout_seconds is None:
            return
        ends = (last.start_time or self.now) + timedelta(seconds=stage.timeout_seconds)
        if self.now >= ends:
            self.delete_pod(pod, "attempt timeout")
            too_long = f"attempt ran longer than timeoutSeconds ({stage.timeout_seconds}s)"
            self.attempt_failed(view, Failure(FailureReason.DEADLINE_EXCEEDED, None, too_long), None)
        else:
            self.at(ends)

    def pending(self, view: StageView, last: Attempt, pod: PodObservation) -> None:
        """A pod not running yet: its waiting reason shown, stopped at startupTimeoutSeconds."""
        stage = view.stage
        waiting = pod.waiting_reason or ("Unschedulable" if pod.unschedulable else None)
        detail = pod.waiting_message or pod.unschedulable or ""
        message = f"{waiting}: {detail}".rstrip(": ")[:1024] if waiting else None  # schedulers write long ones
        if message != last.message:
            view.replace_last(last.model_copy(update={"message": message}))
        ends = last.create_time + timedelta(seconds=stage.startup_timeout_seconds)
        if self.now >= ends:
            self.delete_pod(pod, "startup timeout")
            why = f"pod not running after startupTimeoutSeconds ({stage.startup_timeout_seconds}s)"
            if message:
                why += f": {message}"
            self.attempt_failed(view, Failure(FailureReason.STARTUP_TIMEOUT, None, why), None)
        else:
            self.at(ends)

    def recreate_missing(self, view: StageView, last: Attempt) -> None:
        """The attempt was recorded but its pod never seen: (re)issue the create; 409 adopts."""
        stage = view.stage
        ends = last.create_time + timedelta(seconds=stage.startup_timeout_seconds)
        if self.now >= ends:
            why = f"pod not created within startupTimeoutSeconds ({stage.startup_timeout_seconds}s)"
            self.attempt_failed(view, Failure(FailureReason.STARTUP_TIMEOUT, None, why), None)
            return
        try:
            manifest = self.manifest(view, last.attempt)
        except TemplateError as exc:  # the same inputs rendered when it was recorded: a status edited by hand
            ended = {"state": AttemptState.FAILED, "finish_time": self.now, "reason": exc.reason, "charged": False}
            view.replace_last(last.model_copy(update=ended))
            self.template_failed(view, exc)
            return
        self.create.append(CreatePod(stage.name, last.attempt, last.pod_name, manifest))
        self.at(ends)

    def pod_rejected(self, view: StageView, message: str) -> None:
        """The API server refused the attempt's pod (4xx): an identical pod would be refused again,
        so the stage fails now, whatever the retry rules say, with the API server's own words."""
        failure = Failure(FailureReason.POD_REJECTED, None, f"the API server refused the pod: {message}"[:1024])
        last = view.last
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
        view.replace_last(failed)
        self.record(
            Transition.ATTEMPT_FAILED,
            f"stage {view.status.name} attempt {failed.attempt} failed: {failure.message}",
            reason=failure.reason.value,
            stage=view.status.name,
            attempt=failed,
        )
        decision = RetryDecision(
            rule="podRejected", action=RetryAction.FAIL_JOB, failure_reason=failure.reason.value, retries_left=0
        )
        self.stage_failed(view, decision, Reason.STAGE_FAILED, f"stage {view.status.name}: {failure.message}")

    def attempt_succeeded(self, view: StageView, last: Attempt, pod: PodObservation) -> None:
        stage = view.stage
        try:
            outputs, problem = outputs_of(pod.termination_message)
        except InvalidOutputs as exc:
            self.attempt_failed(view, Failure(FailureReason.INVALID_OUTPUTS, pod.exit_code, str(exc)), pod)
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
        view.replace_last(done)
        view.update(state=StageState.SUCCEEDED, completion_time=self.now, outputs=outputs, message=problem)
        self.record(
            Transition.ATTEMPT_SUCCEEDED,
            f"stage {stage.name} attempt {done.attempt} succeeded",
            reason="Completed",  # the attempt's own reason, as for a failure
            stage=stage.name,
            attempt=done,
            detail={"outputs": outputs} if outputs else None,
        )
        self.record(Transition.STAGE_SUCCEEDED, f"stage {stage.name} succeeded", stage=stage.name)

    def attempt_failed(self, view: StageView, failure: Failure, pod: PodObservation | None) -> None:
        """Record the failure, then apply the first matching rule: retry, ignore, or fail the job."""
        assert self.spec is not None
        stage = view.stage
        last = view.last
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
        view.replace_last(failed)
        used = view.status.charged_failures + (1 if charged else 0)
        view.update(charged_failures=used)
        code = f" (exit {failure.exit_code})" if failure.exit_code is not None else ""
        self.record(
            Transition.ATTEMPT_FAILED,
            f"stage {stage.name} attempt {failed.attempt} failed: {failure.reason.value}{code}"
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
            message = f"stage {stage.name} failed{code}: {match.rule} says FailJob"
            self.stage_failed(view, decision, Reason.STAGE_FAILED, message)
            return
        if charged and used > policy.limit:
            message = f"stage {stage.name} failed {used} times{code}; retry limit {policy.limit} reached"
            self.stage_failed(
                view, decision.model_copy(update={"rule": "limit"}), Reason.BACKOFF_LIMIT_EXCEEDED, message
            )
            return
        if view.status.attempt_count >= MAX_ATTEMPTS_PER_STAGE:
            message = f"stage {stage.name} reached {MAX_ATTEMPTS_PER_STAGE} attempts"
            self.stage_failed(
                view, decision.model_copy(update={"rule": "maxAttempts"}), Reason.BACKOFF_LIMIT_EXCEEDED, message
            )
            return
        # An uncharged (Ignore) retry waits as long as the next charged retry would.
        retry_number = used if charged else used + 1
        delay = retry_delay(policy, retry_number, f"{self.job.meta.uid}/{stage.name}/{failed.attempt}")
        self.schedule_retry(view, failed, decision.model_copy(update={"delay_seconds": delay}))

    def schedule_retry(self, view: StageView, failed: Attempt, decision: RetryDecision) -> None:
        """Wait `decision.delay_seconds` from the failed attempt's end, unless that passes the deadline."""
        name = view.status.name
        delay = decision.delay_seconds or 0.0
        due = (failed.finish_time or self.now) + timedelta(seconds=delay)
        deadline = self.deadline()
        if deadline is not None and due > deadline:
            message = f"stage {name}: the retry in {delay:g}s would start after the job's deadline"
            self.stage_failed(view, decision, Reason.DEADLINE_EXCEEDED, message)
            return
        view.update(state=StageState.BACKOFF_WAITING, next_attempt_time=due, last_retry_decision=decision)
        left = f"{decision.retries_left} {'retry' if decision.retries_left == 1 else 'retries'} left"
        self.record(
            Transition.RETRY_SCHEDULED,
            f"stage {name} attempt {failed.attempt + 1} in {delay:g}s ({decision.rule}: {decision.action.value}, "
            f"{left})",
            stage=name,
            attempt=failed,
            detail={**decision.to_api(), "nextAttemptTime": due.isoformat()},
        )
        self.at(due)  # a wait already over starts in this pass (core.flow starts what is due)

    def stage_failed(self, view: StageView, decision: RetryDecision, reason: Reason, message: str) -> None:
        view.update(
            state=StageState.FAILED,
            completion_time=self.now,
            last_retry_decision=decision,
            next_attempt_time=None,
            message=message,
        )
        self.record(
            Transition.STAGE_FAILED, message, reason=reason.value, stage=view.status.name, detail=decision.to_api()
        )
        self.gave_up(view, reason, message)
