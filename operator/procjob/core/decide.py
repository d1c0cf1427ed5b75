"""`decide(job, pods, now) -> Decision`: the whole reconcile logic, pure.

Level-triggered: from the job (spec + status) and its pods as they are now, compute the status
they imply and the pod actions that move the world towards the spec. Nothing here remembers
anything between calls; running it twice on the same input gives the same output, which is what
makes the operator correct after a crash at any line.

Order of concerns in one pass (each a small method of `_Pass`):
deletion → terminal (absorbing) → invalid spec → cancel → queue → start → deadline → suspend /
resume → the stage machine (attempt by attempt) → pod GC and strays → conditions and summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from procjob.core.backoff import effective_policy, retry_delay
from procjob.core.classify import Failure, failure_of, match_rule
from procjob.core.conditions import SUCCEEDED, SUSPENDED, job_conditions, phase_of, set_condition
from procjob.core.config import CoreConfig
from procjob.core.decision import CreatePod, Decision, DeletePod, FinalizerAction
from procjob.core.events import mirror_events
from procjob.core.naming import pod_name
from procjob.core.observe import PodObservation
from procjob.core.outputs import InvalidOutputs, outputs_of
from procjob.core.podspec import build_pod
from procjob.core.templating import TemplateError
from procjob.core.timefmt import earliest, human_duration
from procjob.core.validation import validate_spec
from procjob.models.audit import AuditEntry
from procjob.models.job import FINALIZER, ProcessingJob
from procjob.models.lifecycle import finished, retryable, succeeded_condition
from procjob.models.spec import FailureReason, PodGC, RetryAction
from procjob.models.status import (
    AUDIT_BACKLOG_LIMIT,
    MAX_ATTEMPTS_KEPT,
    Attempt,
    AttemptState,
    ConditionStatus,
    ProcessingJobStatus,
    Reason,
    RetryDecision,
    StageState,
    StageStatus,
)
from procjob.models.transitions import Transition

MAX_RETRY_REQUEST = 64  # characters of a procjob.dev/retry value (status.lastRetryRequest's bound)
# A pod still there this long after its grace period ended (a lost node) is deleted by force.
TERMINATING_PATIENCE = timedelta(seconds=60)
# A hard bound on attempts of one stage, whatever the rules say (Ignore retries are not charged).
MAX_ATTEMPTS_PER_STAGE = 100


def decide(
    job: ProcessingJob,
    pods: Iterable[PodObservation],
    now: datetime,
    config: CoreConfig | None = None,
    *,
    admitted: bool = True,
    gone: Mapping[str, str] | None = None,
    rejected: Mapping[str, str] | None = None,
) -> Decision:
    """The status the job should have now, and the actions that get the world there.

    `pods` may include any pods; only those in the job's namespace, labelled with its UID and
    controlled by it (the controller ownerReference) count: a tenant's look-alike pod never does.
    `admitted` says whether the queue lets the job start (or resume, or re-run) now; see
    `needs_admission`. `gone` names pods seen deleted (name -> UID) and `rejected` the pods the API
    server refused to create (name -> its message), both remembered by the controller.
    """
    ns, uid = job.meta.namespace, job.meta.uid
    own = [p for p in pods if p.job_uid == uid and p.owner_uid == uid and p.namespace in ("", ns)]
    return _Pass(job, own, now, config or CoreConfig(), gone or {}, rejected or {}).run(admitted)


def retry_ack(request: str) -> str:
    """How a procjob.dev/retry value is acknowledged in status.lastRetryRequest (at most 64
    characters): as it is, or a digest of a longer value, which is refused (RetryIgnored)."""
    if len(request) <= MAX_RETRY_REQUEST:
        return request
    return "sha256:" + hashlib.sha256(request.encode("utf-8", "replace")).hexdigest()[:56]


def needs_admission(job: ProcessingJob) -> bool:
    """Whether this pass may start the job, which takes a queue slot: a job that has not started
    (new, or suspended after it started: suspend releases the slot, as in Kueue and batch/v1 Job),
    or a job with a new retry request (a retried job queues like a new one)."""
    if job.meta.deletion_time is not None or job.spec is None or job.spec.cancel:
        return False
    if job.status.start_time is None:
        return True
    request = job.meta.retry_request
    return request is not None and request != "" and retry_ack(request) != job.status.last_retry_request


@dataclass
class _StageView:
    """Mutable working copy of one stage's status during a pass."""

    index: int
    status: StageStatus

    @property
    def succeeded(self) -> bool:
        return self.status.state == StageState.SUCCEEDED

    @property
    def last(self) -> Attempt | None:
        return self.status.attempts[-1] if self.status.attempts else None

    def update(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def replace_last(self, attempt: Attempt) -> None:
        self.update(attempts=[*self.status.attempts[:-1], attempt])


class _Pass:
    """One reconcile pass. Accumulates the new status, transitions and actions."""

    def __init__(
        self,
        job: ProcessingJob,
        pods: list[PodObservation],
        now: datetime,
        config: CoreConfig,
        gone: Mapping[str, str],
        rejected: Mapping[str, str],
    ) -> None:
        self.job = job
        self.gone = gone
        self.rejected = rejected
        self.spec = job.spec
        self.now = now
        self.config = config
        self.pods = {p.name: p for p in pods}
        self.status = job.status
        self.outbox = job.status.audit
        self.transitions: list[AuditEntry] = []
        self.create: list[CreatePod] = []
        self.delete: dict[str, DeletePod] = {}
        self.timers: list[datetime | None] = []
        self.stages: list[_StageView] = []
        self.backlogged = False  # the audit outbox is full: no new attempts
        if self.spec is not None:
            by_name = {s.name: s for s in job.status.stages}
            self.stages = [
                _StageView(i, by_name.get(s.name) or StageStatus(name=s.name, state=StageState.PENDING))
                for i, s in enumerate(self.spec.stages)
            ]

    # ----------------------------------------------------------------------------- bookkeeping
    def record(
        self,
        type_: Transition,
        message: str,
        *,
        reason: str = "",
        stage: str | None = None,
        attempt: Attempt | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        entry = AuditEntry(
            seq=self.outbox.last_seq + len(self.transitions) + 1,
            type=type_,
            reason=reason or type_,
            message=message[:1024],
            stage=stage,
            attempt=attempt.attempt if attempt else None,
            pod_name=attempt.pod_name if attempt else None,
            exit_code=attempt.exit_code if attempt else None,
            time=self.now,
            detail=detail or {},
        )
        self.transitions.append(entry)

    def delete_pod(self, pod: PodObservation, why: str) -> None:
        """Delete a pod once per pass; the first, most specific reason is kept (not "not the current attempt")."""
        if not pod.deleting and pod.name not in self.delete:
            self.delete[pod.name] = DeletePod(pod.name, pod.uid or None, why)

    def at(self, when: datetime | None) -> None:
        self.timers.append(when)

    @property
    def terminal(self) -> bool:
        return finished(succeeded_condition(self.status.conditions)[0])

    @property
    def suspended(self) -> bool:
        return any(c.type == SUSPENDED and c.status == ConditionStatus.TRUE for c in self.status.conditions)

    # ----------------------------------------------------------------------------------- flow
    def run(self, admitted: bool) -> Decision:
        finalizer: FinalizerAction | None = None
        if self.job.meta.deletion_time is not None:
            return self.deleting()
        if self.config.audit_enabled and FINALIZER not in self.job.meta.finalizers:
            finalizer = FinalizerAction.ADD
        retried = self.retry_requested()
        if self.terminal and not retried:
            self.gc_pods()
            return self.result(finalizer)
        if not self.status.audit.last_seq and not self.status.conditions:
            self.record(Transition.JOB_CREATED, "job created")
        if self.spec is None:
            self.fail_job(Reason.INVALID_SPEC, self.job.spec_error or "invalid spec", invalid=True)
            return self.result(finalizer)
        problems = validate_spec(self.spec, self.config)
        if problems:
            self.fail_job(Reason.INVALID_SPEC, "; ".join(problems), invalid=True)
            return self.result(finalizer)
        if self.spec.cancel:
            self.stop_current("Cancelled", StageState.CANCELLED)
            self.end_job(ConditionStatus.FALSE, Reason.CANCELLED, "cancelled", Transition.JOB_CANCELLED)
            return self.result(finalizer)
        if self.status.start_time is None:
            if self.suspend_wanted():  # suspended before it started, or again: it holds no queue slot
                self.suspend()
                return self.result(finalizer)
            if not admitted:
                self.queued()
                return self.result(finalizer)
            self.status = self.status.model_copy(update={"start_time": self.now, "queue": None})
            resuming = self.suspended and any(v.status.attempt_count for v in self.stages)
            if not retried and not resuming:
                self.record(Transition.JOB_STARTED, "job started")
        deadline = self.deadline()
        if deadline is not None and self.now >= deadline:
            self.stop_current("DeadlineExceeded", StageState.FAILED, failed=True)
            self.fail_job(
                Reason.DEADLINE_EXCEEDED,
                f"job ran past activeDeadlineSeconds ({self.spec.active_deadline_seconds}s)",
            )
            return self.result(finalizer)
        self.at(deadline)
        if self.suspend_wanted():
            self.suspend()
            return self.result(finalizer)
        if self.suspended:
            self.status = self.status.model_copy(
                update={
                    "conditions": set_condition(
                        self.status.conditions,
                        SUSPENDED,
                        ConditionStatus.FALSE,
                        "Resumed",
                        "resumed",
                        self.now,
                        self.job.meta.generation,
                    )
                }
            )
            self.record(Transition.JOB_RESUMED, "job resumed")
        self.advance()
        return self.result(finalizer)

    @property
    def backlog_full(self) -> bool:
        """The audit outbox holds AUDIT_BACKLOG_LIMIT entries: from here on only what ends the work
        in progress is recorded (see AUDIT_OUTBOX_HARD_LIMIT); what a user can repeat at will —
        suspend and resume, retry requests — and new attempts wait until PostgreSQL catches up."""
        pending = len(self.outbox.pending) + len(self.transitions)
        return self.config.audit_enabled and pending >= AUDIT_BACKLOG_LIMIT

    def suspend_wanted(self) -> bool:
        """spec.suspend, unless changing the suspension now would grow a full outbox."""
        assert self.spec is not None
        if self.spec.suspend != self.suspended and self.backlog_full:
            self.backlogged = True
            return self.suspended
        return self.spec.suspend

    def retry_requested(self) -> bool:
        """A new procjob.dev/retry value on a terminal job: re-run a Failed job from its failed stage.

        Every new value is acknowledged in status.lastRetryRequest, acted on or not, so that a value
        set while the job was still running cannot re-run it later by surprise. Only a job that
        Failed can be retried (not Succeeded, Cancelled or InvalidSpec). The retried stage gets a
        fresh retry budget; the job queues again (see `needs_admission`) and its deadline clock
        restarts when it starts. A value over 64 characters is acknowledged by digest and ignored.
        """
        request = self.job.meta.retry_request
        if not request or retry_ack(request) == self.status.last_retry_request or self.backlog_full:
            return False
        self.status = self.status.model_copy(update={"last_retry_request": retry_ack(request)})
        if len(request) > MAX_RETRY_REQUEST:
            size = len(request)
            message = f"procjob.dev/retry ignored: the value has {size} characters (at most {MAX_RETRY_REQUEST})"
            self.record(Transition.RETRY_IGNORED, message, reason="RetryIgnored")
            return False
        if self.spec is None or not retryable(*succeeded_condition(self.status.conditions)):
            self.record(
                Transition.RETRY_IGNORED,
                f"retry request {request} ignored: the job has not failed",
                reason="RetryIgnored",
            )
            return False
        failed = [v for v in self.stages if v.status.state == StageState.FAILED]
        for view in failed:  # (none: the job failed between stages; the next one simply starts)
            view.update(
                state=StageState.BACKOFF_WAITING,
                next_attempt_time=self.now,
                completion_time=None,
                charged_failures=0,
                message=None,
            )
        self.status = self.status.model_copy(
            update={
                "conditions": set_condition(
                    self.status.conditions,
                    SUCCEEDED,
                    ConditionStatus.UNKNOWN,
                    Reason.RUNNING,
                    f"retry requested at {request}",
                    self.now,
                    self.job.meta.generation,
                ),
                "completion_time": None,
                "duration": None,
                "start_time": None,  # queues like a new job; the deadline counts from its new start
            }
        )
        names = ", ".join(v.status.name for v in failed) or "the next stage"
        self.record(Transition.JOB_RETRIED, f"retry requested at {request}: re-running {names}", reason="Retried")
        return True

    def deadline(self) -> datetime | None:
        assert self.spec is not None
        if self.spec.active_deadline_seconds is None or self.status.start_time is None:
            return None
        return self.status.start_time + timedelta(seconds=self.spec.active_deadline_seconds)

    # ------------------------------------------------------------------------------ lifecycle
    def deleting(self) -> Decision:
        """The job is being deleted: stop pods; record it once; let go when the outbox is empty."""
        for pod in self.pods.values():
            if pod.live:
                self.delete_pod(pod, "job deleted")
        recorded = self.outbox.deletion_recorded
        if self.config.audit_enabled and not recorded:
            self.record(Transition.JOB_DELETED, "job deleted")
            self.outbox = self.outbox.model_copy(update={"deletion_recorded": True})
        finalizer = None
        flushed = not self.config.audit_enabled or (recorded and not self.outbox.pending)
        if FINALIZER in self.job.meta.finalizers and flushed:
            finalizer = FinalizerAction.REMOVE
        return self.result(finalizer, summarize=False)

    def queued(self) -> None:
        if succeeded_condition(self.status.conditions)[1] != Reason.QUEUED:
            self.record(Transition.JOB_QUEUED, "waiting for a free slot", reason=Reason.QUEUED)

    def suspend(self) -> None:
        """Stop the attempt in progress and give the queue slot back: as with batch/v1 Job,
        `startTime` is cleared, so the job queues again when resumed and its activeDeadlineSeconds
        counts from the resumption."""
        if not self.suspended:
            self.record(Transition.JOB_SUSPENDED, "job suspended")
        self.stop_current("Suspended", StageState.SUSPENDED)
        self.status = self.status.model_copy(
            update={
                "start_time": None,
                "conditions": set_condition(
                    self.status.conditions,
                    SUSPENDED,
                    ConditionStatus.TRUE,
                    "Suspended",
                    "spec.suspend is true",
                    self.now,
                    self.job.meta.generation,
                ),
            }
        )

    def stop_current(self, why: str, stage_state: StageState, *, failed: bool = False) -> None:
        """Stop the attempt in progress (suspend, cancel, job deadline); stop every live pod.

        An attempt whose pod has already succeeded is recorded as the success it is, not stopped:
        a resumed job must not run a finished stage again.
        """
        for view in self.stages:
            last = view.last
            if last is not None and last.state in (AttemptState.PENDING, AttemptState.RUNNING):
                pod = self.pods.get(last.pod_name)
                if pod is not None and pod.phase == "Succeeded" and last.pod_uid in (None, pod.uid):
                    self.attempt_succeeded(view, last.model_copy(update={"pod_uid": pod.uid}), pod)
                    continue
                state = AttemptState.FAILED if failed else AttemptState.STOPPED
                stopped = last.model_copy(
                    update={"state": state, "finish_time": self.now, "reason": why, "charged": False}
                )
                view.replace_last(stopped)
                view.update(state=stage_state, next_attempt_time=None)
                self.record(
                    Transition.ATTEMPT_STOPPED if not failed else Transition.ATTEMPT_FAILED,
                    f"stage {view.status.name} attempt {last.attempt} stopped: {why}",
                    reason=why,
                    stage=view.status.name,
                    attempt=stopped,
                )
            elif view.status.state in (StageState.BACKOFF_WAITING, StageState.RUNNING) and stage_state in (
                StageState.CANCELLED,
                StageState.FAILED,
            ):
                view.update(state=stage_state, next_attempt_time=None)
        for pod in self.pods.values():
            if pod.live:
                self.delete_pod(pod, why)

    def fail_job(self, reason: Reason, message: str, *, invalid: bool = False) -> None:
        if invalid:
            self.record(Transition.INVALID_SPEC, message, reason=Reason.INVALID_SPEC)
        self.end_job(ConditionStatus.FALSE, reason, message, Transition.JOB_FAILED)

    def end_job(self, status: ConditionStatus, reason: Reason, message: str, transition: Transition) -> None:
        self.status = self.status.model_copy(
            update={
                "conditions": set_condition(
                    self.status.conditions,
                    SUCCEEDED,
                    status,
                    reason,
                    message,
                    self.now,
                    self.job.meta.generation,
                ),
                "completion_time": self.now,
                "queue": None,
            }
        )
        self.record(transition, message, reason=reason)
        self.gc_pods()

    # ------------------------------------------------------------------------- stage machine
    def advance(self) -> None:
        """Walk the stages in order; work on the first that has not succeeded."""
        assert self.spec is not None
        for view in self.stages:
            if view.status.state == StageState.SUCCEEDED:
                continue
            self.step(view)
            if not view.succeeded or self.terminal:
                return
        done = len(self.stages)  # every stage succeeded, and a success never ends the job on its own
        self.end_job(
            ConditionStatus.TRUE,
            Reason.SUCCEEDED,
            f"all {done} stages succeeded" if done != 1 else "the stage succeeded",
            Transition.JOB_SUCCEEDED,
        )

    def step(self, view: _StageView) -> None:
        """Advance one stage as far as the observed world allows in this pass."""
        last = view.last
        if last is None or last.state == AttemptState.STOPPED:
            self.start_attempt(view)
            return
        if last.state in (AttemptState.PENDING, AttemptState.RUNNING):
            self.track(view, last)
        last = view.last
        assert last is not None
        if last.state == AttemptState.FAILED and view.status.state == StageState.BACKOFF_WAITING:
            due = view.status.next_attempt_time
            if due is None or self.now >= due:
                self.start_attempt(view)
            else:
                self.at(due)

    def start_attempt(self, view: _StageView) -> None:
        assert self.spec is not None
        stage = self.spec.stages[view.index]
        if self.backlog_full:
            self.backlogged = True
            return
        if self.terminating():
            return  # the previous attempt's container may still run: no overlap
        number = view.status.attempt_count + 1
        name = pod_name(self.job.meta.name, self.job.meta.uid, stage.name, number)
        outputs = {v.status.name: v.status.outputs for v in self.stages[: view.index]}
        try:
            manifest = build_pod(self.job, view.index, number, outputs, self.config)
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

    def template_failed(self, view: _StageView, exc: TemplateError) -> None:
        """A template that cannot be rendered (e.g. a missing output) fails the stage and the job."""
        name = view.status.name
        view.update(state=StageState.FAILED, completion_time=self.now, message=str(exc)[:1024])
        self.record(Transition.STAGE_FAILED, f"stage {name}: {exc}", reason=exc.reason, stage=name)
        self.fail_job(Reason.STAGE_FAILED, f"stage {name}: {exc}")

    def track(self, view: _StageView, last: Attempt) -> None:
        """Follow the live attempt's pod: running, finished, vanished, timed out."""
        assert self.spec is not None
        stage = self.spec.stages[view.index]
        pod = self.pods.get(last.pod_name)
        if pod is not None and last.pod_uid is not None and pod.uid != last.pod_uid:
            self.delete_pod(pod, "not the pod this attempt created")
            pod = None
        if pod is None:
            if last.pod_name in self.rejected:
                self.pod_rejected(view, self.rejected[last.pod_name])
            elif last.pod_uid is None and last.pod_name not in self.gone:
                self.recreate_missing(view, last)
            else:  # seen, or seen deleted before its UID was recorded: it may have run
                self.attempt_failed(view, Failure(FailureReason.POD_DELETED, None, "the pod was deleted"), None)
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
            if last.state == AttemptState.PENDING:
                last = last.model_copy(
                    update={
                        "state": AttemptState.RUNNING,
                        "start_time": pod.started or self.now,
                        "message": None,
                    }
                )
                view.replace_last(last)
                self.record(
                    Transition.ATTEMPT_RUNNING,
                    f"stage {stage.name} attempt {last.attempt} running",
                    stage=stage.name,
                    attempt=last,
                )
            if stage.timeout_seconds is not None:
                ends = (last.start_time or self.now) + timedelta(seconds=stage.timeout_seconds)
                if self.now >= ends:
                    self.delete_pod(pod, "attempt timeout")
                    too_long = f"attempt ran longer than timeoutSeconds ({stage.timeout_seconds}s)"
                    self.attempt_failed(view, Failure(FailureReason.DEADLINE_EXCEEDED, None, too_long), None)
                else:
                    self.at(ends)
        else:
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

    def recreate_missing(self, view: _StageView, last: Attempt) -> None:
        """The attempt was recorded but its pod never seen: (re)issue the create; 409 adopts."""
        assert self.spec is not None
        stage = self.spec.stages[view.index]
        ends = last.create_time + timedelta(seconds=stage.startup_timeout_seconds)
        if self.now >= ends:
            why = f"pod not created within startupTimeoutSeconds ({stage.startup_timeout_seconds}s)"
            self.attempt_failed(view, Failure(FailureReason.STARTUP_TIMEOUT, None, why), None)
            return
        outputs = {v.status.name: v.status.outputs for v in self.stages[: view.index]}
        try:
            manifest = build_pod(self.job, view.index, last.attempt, outputs, self.config)
        except TemplateError as exc:  # the same inputs rendered when it was recorded: a status edited by hand
            ended = {"state": AttemptState.FAILED, "finish_time": self.now, "reason": exc.reason, "charged": False}
            view.replace_last(last.model_copy(update=ended))
            self.template_failed(view, exc)
            return
        self.create.append(CreatePod(stage.name, last.attempt, last.pod_name, manifest))
        self.at(ends)

    def pod_rejected(self, view: _StageView, message: str) -> None:
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

    def attempt_succeeded(self, view: _StageView, last: Attempt, pod: PodObservation) -> None:
        assert self.spec is not None
        stage = self.spec.stages[view.index]
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

    def attempt_failed(self, view: _StageView, failure: Failure, pod: PodObservation | None) -> None:
        """Record the failure, then apply the first matching rule: retry, ignore, or fail the job."""
        assert self.spec is not None
        stage = self.spec.stages[view.index]
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

    def schedule_retry(self, view: _StageView, failed: Attempt, decision: RetryDecision) -> None:
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
        if due <= self.now:
            self.start_attempt(view)
        else:
            self.at(due)

    def stage_failed(self, view: _StageView, decision: RetryDecision, reason: Reason, message: str) -> None:
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
        self.fail_job(reason, message)

    # ------------------------------------------------------------------------------- cleanup
    def gc_pods(self) -> None:
        """Finished jobs: stop anything live; delete finished pods as podGC says."""
        policy = PodGC.NEVER if self.spec is None else self.spec.pod_gc
        succeeded = succeeded_condition(self.status.conditions)[0] == ConditionStatus.TRUE
        collect = policy == PodGC.ON_COMPLETION or (policy == PodGC.ON_SUCCESS and succeeded)
        for pod in self.pods.values():
            if pod.live or (collect and not pod.deleting):
                self.delete_pod(pod, "podGC" if not pod.live else "job finished")

    def terminating(self) -> bool:
        """Whether a pod of the job is on its way out but may still run (a new attempt waits)."""
        leaving = [p for p in self.pods.values() if p.deleting and not p.terminal]
        for pod in leaving:
            self.settle(pod)
        return bool(leaving)

    def settle(self, pod: PodObservation) -> None:
        """Wait for a terminating pod; one still there TERMINATING_PATIENCE after its grace period
        ended (its node is gone or stopped answering) is deleted by force, so nothing waits forever."""
        ends = (pod.deletion_time or self.now) + TERMINATING_PATIENCE
        if self.now >= ends:
            self.delete[pod.name] = DeletePod(pod.name, pod.uid or None, "stuck terminating", force=True)
        else:
            self.at(ends)

    def strays(self) -> None:
        """Invariant: at most one live pod per job, the current attempt's — the pod of an attempt
        still Pending or Running, read from the stage statuses as this pass leaves them."""
        current = {
            view.last.pod_name
            for view in self.stages
            if view.last is not None and view.last.state in (AttemptState.PENDING, AttemptState.RUNNING)
        }
        for pod in self.pods.values():
            if pod.live and pod.name not in current:
                self.delete_pod(pod, "not the current attempt")

    # -------------------------------------------------------------------------------- result
    def result(self, finalizer: FinalizerAction | None, *, summarize: bool = True) -> Decision:
        if summarize and not self.terminal:
            self.strays()
        status = self.status
        if summarize and self.spec is not None:
            status = self.summarize(status)
        elif summarize:  # an unparsable spec: no stages to summarize, only the condition to show
            succeeded = next((c for c in status.conditions if c.type == SUCCEEDED), None)
            status = status.model_copy(
                update={
                    "observed_generation": self.job.meta.generation,
                    "phase": phase_of(status),
                    "message": succeeded.message if succeeded else None,
                }
            )
        outbox = self.outbox.model_copy(
            update={
                "last_seq": self.outbox.last_seq + len(self.transitions),
                "pending": [*self.outbox.pending, *self.transitions] if self.config.audit_enabled else [],
            }
        )
        if not self.config.audit_enabled:
            outbox = outbox.model_copy(update={"flushed_seq": outbox.last_seq})
        status = status.model_copy(update={"audit": outbox})
        events = mirror_events(self.transitions, routine=self.config.routine_events)
        return Decision(
            status=status,
            create=tuple(self.create),
            delete=tuple(self.delete.values()),
            events=events,
            transitions=tuple(self.transitions),
            requeue_at=earliest(*(t for t in self.timers if t is not None and t > self.now)),
            finalizer=finalizer,
        )

    def summarize(self, status: ProcessingJobStatus) -> ProcessingJobStatus:
        """Conditions, phase, printer-column fields, all derived from the stage statuses."""
        assert self.spec is not None
        stages = [v.status for v in self.stages]
        current = next((s for s in stages if s.state != StageState.SUCCEEDED), None)
        reached = sum(1 for s in stages if s.state != StageState.PENDING)
        conditions = job_conditions(
            status.conditions,
            stages,
            current,
            self.now,
            self.job.meta.generation,
            queued=status.start_time is None,
            suspended=self.suspend_wanted(),
            backlogged=self.backlogged,
        )
        status = status.model_copy(
            update={
                "stages": stages,
                "conditions": conditions,
                "observed_generation": self.job.meta.generation,
                "current_stage": current.name if current and not self.terminal else None,
                "progress": f"{max(reached, 1 if status.start_time else 0)}/{len(stages)}",
                "attempts": sum(s.attempt_count for s in stages),
            }
        )
        cond = next(c for c in conditions if c.type == SUCCEEDED)
        duration = None
        if status.start_time and status.completion_time:
            duration = human_duration(status.completion_time - status.start_time)
        return status.model_copy(update={"phase": phase_of(status), "message": cond.message, "duration": duration})
