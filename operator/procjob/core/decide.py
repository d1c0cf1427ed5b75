"""`decide(job, pods, now) -> Decision`: the whole reconcile logic, pure.

Level-triggered: from the job (spec + status) and its pods as they are now, compute the status
they imply and the pod actions that move the world towards the spec. Nothing here remembers
anything between calls; running it twice on the same input gives the same output, which is what
makes the operator correct after a crash at any line.

Order of concerns in one pass (each a small method of `_Pass`):
deletion → terminal (absorbing) → invalid spec → cancel → queue → start → deadline → suspend /
resume → the stages' flow (the graph, then spec.finally) and each stage's attempts → pod GC and
strays → conditions and summary.

Where each part lives: this module (the job's lifecycle), `core.flow` (which stages move, what
their end means, finally), `core.attempts` (one stage's attempts), `core.dag` (the graph),
`core.passstate` (the pass's state, ending the job, pod GC, the Decision), `core.summary` (what the
status shows), `core.events` (Event mirroring), `core.validation` (what the schema cannot check),
`core.outputs` (termination messages as outputs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from procjob.core.attempts import MAX_ATTEMPTS_PER_STAGE
from procjob.core.conditions import SUCCEEDED, SUSPENDED, set_condition
from procjob.core.config import CoreConfig
from procjob.core.decision import Decision, FinalizerAction
from procjob.core.flow import Flow
from procjob.core.observe import PodObservation
from procjob.core.passstate import TERMINATING_PATIENCE
from procjob.core.sanitize import clean_text
from procjob.core.validation import validate_spec
from procjob.models.job import FINALIZER, ProcessingJob
from procjob.models.lifecycle import retryable, succeeded_condition
from procjob.models.status import AttemptState, ConditionStatus, Reason, StageState
from procjob.models.transitions import Transition

MAX_RETRY_REQUEST = 64  # characters of a procjob.dev/retry value (status.lastRetryRequest's bound)
_IN_PROGRESS = (AttemptState.PENDING, AttemptState.RUNNING)
_ENDED = ("Succeeded", "Failed")  # pod phases

__all__ = [
    "MAX_ATTEMPTS_PER_STAGE",
    "MAX_RETRY_REQUEST",
    "TERMINATING_PATIENCE",
    "decide",
    "needs_admission",
    "retry_ack",
]


def decide(
    job: ProcessingJob,
    pods: Iterable[PodObservation],
    now: datetime,
    config: CoreConfig | None = None,
    *,
    admitted: bool = True,
    gone: Mapping[str, str] | None = None,
    rejected: Mapping[str, str] | None = None,
    vanished: Mapping[str, PodObservation] | None = None,
    pods_left: int | None = None,
) -> Decision:
    """The status the job should have now, and the actions that get the world there.

    `pods` may include any pods; only those in the job's namespace, labelled with its UID and
    controlled by it (the controller ownerReference) count: a tenant's look-alike pod never does.
    `admitted` says whether the queue lets the job start (or resume, or re-run) now; see
    `needs_admission`. `gone` names pods seen deleted (name -> UID) and `rejected` the pods the API
    server refused to create (name -> its message), both remembered by the controller; `vanished`
    the last sight of those gone pods that had ended or carried a DisruptionTarget condition (name ->
    observation): their end counts as what it was, not as a deletion. `pods_left`: how many new
    attempts (pods) this pass may start (the operator's pod caps; None: no limit); an attempt that
    could start but finds none left waits, and the Decision says `starved`.
    """
    ns, uid = job.meta.namespace, job.meta.uid
    own = [p for p in pods if p.job_uid == uid and p.owner_uid == uid and p.namespace in ("", ns)]
    state = _Pass(job, own, now, config or CoreConfig(), gone or {}, rejected or {}, vanished or {}, pods_left)
    return state.run(admitted)


def retry_ack(request: str) -> str:
    """How a procjob.dev/retry value is acknowledged in status.lastRetryRequest (at most 64
    characters, valid text): as it is, or a digest of a longer value, which is refused (RetryIgnored)."""
    if len(request) <= MAX_RETRY_REQUEST:
        return clean_text(request)
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


class _Pass(Flow):
    """One reconcile pass: the flow of concerns and the job's lifecycle (queue, suspend, cancel,
    retry requests, deletion); the stages' flow, the stage machine and the shared state are its bases."""

    def run(self, admitted: bool) -> Decision:
        if self.job.meta.deletion_time is not None:
            return self.deleting()
        finalizer = None
        if self.config.audit_enabled and FINALIZER not in self.job.meta.finalizers:
            finalizer = FinalizerAction.ADD
        retried = self.retry_requested()
        if self.terminal and not retried:
            self.gc_pods()
            return self.result(finalizer, delete_job=self.expired())
        if self.started(admitted, retried):
            self.go_on()
        return self.result(finalizer)

    def expired(self) -> bool:
        """A finished job past its ttlSecondsAfterFinished (the operator's default when the job sets
        none) is deleted; until then, a timer for the moment it expires."""
        ttl = self.spec.ttl_seconds_after_finished if self.spec is not None else None
        ttl = self.config.ttl_seconds_after_finished if ttl is None else ttl
        finished_at = self.status.completion_time
        if ttl is None or finished_at is None:
            return False
        expires = finished_at + timedelta(seconds=ttl)
        self.at(expires)
        return self.now >= expires and not self.logs_pending()  # the pods' logs first: they go with the job

    def started(self, admitted: bool, retried: bool) -> bool:
        """Invalid spec, cancel, the queue and the start: False when the pass ends here."""
        if not self.status.audit.last_seq and not self.status.conditions:
            self.record(Transition.JOB_CREATED, "job created")
        if self.spec is None:
            self.invalid_spec(self.job.spec_error or "invalid spec")
            return False
        problems = validate_spec(self.spec, self.config, self.job.meta.namespace)
        if problems:
            self.invalid_spec("; ".join(problems))
            return False
        if self.spec.cancel and not self.finalizing:  # the finally stages are not cancelled: they clean up
            self.stop_current("Cancelled", StageState.CANCELLED, views=self.main)
            self.conclude(ConditionStatus.FALSE, Reason.CANCELLED, "cancelled", Transition.JOB_CANCELLED)
            return False
        if self.status.start_time is None:
            if self.suspend_wanted():  # suspended before it started, or again: it holds no queue slot
                self.suspend()
                return False
            if not admitted:
                self.queued()
                return False
            self.status = self.status.model_copy(update={"start_time": self.now, "queue": None})
            resuming = self.suspended and any(v.status.attempt_count for v in self.stages)
            if not retried and not resuming:
                self.record(Transition.JOB_STARTED, "job started")
        return True

    def go_on(self) -> None:
        """A started job: its deadline, suspend and resume, then the stage machine."""
        assert self.spec is not None
        deadline = self.deadline()
        if deadline is not None and self.now >= deadline and self.finalizing:
            self.stop_current("DeadlineExceeded", StageState.FAILED, failed=True, views=self.finale)
            self.finish_finally(overdue=True)
            return
        if deadline is not None and self.now >= deadline:
            self.stop_current("DeadlineExceeded", StageState.FAILED, failed=True, views=self.main)
            limit = self.spec.active_deadline_seconds
            message = f"job ran past activeDeadlineSeconds ({limit}s)"
            self.conclude(ConditionStatus.FALSE, Reason.DEADLINE_EXCEEDED, message, Transition.JOB_FAILED)
            return
        self.at(deadline)
        if self.suspend_wanted():
            self.suspend()
            return
        if self.suspended:
            conditions = set_condition(
                self.status.conditions,
                SUSPENDED,
                ConditionStatus.FALSE,
                "Resumed",
                "resumed",
                self.now,
                self.job.meta.generation,
            )
            self.status = self.status.model_copy(update={"conditions": conditions})
            self.record(Transition.JOB_RESUMED, "job resumed")
        self.advance()

    def retry_requested(self) -> bool:
        """A new procjob.dev/retry value on a terminal job: re-run a Failed job from its failed stage.

        Every new value is acknowledged in status.lastRetryRequest, acted on or not, so that a value
        set while the job was still running cannot re-run it later by surprise. Only a job that
        Failed can be retried (not Succeeded, Cancelled or InvalidSpec). The retried stage gets a
        fresh retry budget; the job queues again (see `needs_admission`) and its deadline clock
        restarts when it starts. A value over 64 characters is acknowledged by digest and ignored.
        """
        raw = self.job.meta.retry_request
        if not raw or retry_ack(raw) == self.status.last_retry_request or self.backlog_full:
            return False
        request = retry_ack(raw)  # what is shown and stored: at most 64 characters of valid text
        self.status = self.status.model_copy(update={"last_retry_request": request})
        if len(raw) > MAX_RETRY_REQUEST:
            size = len(raw)
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
        failed = [v for v in self.main if v.status.state == StageState.FAILED]
        stopped = [v for v in self.main if v.status.state == StageState.CANCELLED]  # beside the failed one
        for view in (v for v in [*failed, *stopped] if v.stage.fanned):
            self.rearm(view)  # its failed and stopped items run again
        for view in (v for v in failed if not v.stage.fanned):  # (none: the job failed between stages)
            view.update(
                state=StageState.BACKOFF_WAITING,
                next_attempt_time=self.now,
                completion_time=None,
                charged_failures=0,
                message=None,
            )
        finale = [v for v in self.finale if v.status.state != StageState.PENDING]
        for view in [*(v for v in stopped if not v.stage.fanned), *finale]:
            view.items.clear()
            view.update(  # they start again when their upstream stages have succeeded (numbering goes on)
                state=StageState.PENDING, next_attempt_time=None, completion_time=None, charged_failures=0, message=None
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
                "finally_": None,  # the finally stages run again after the stages
            }
        )
        names = ", ".join(v.status.name for v in failed) or "the next stage"
        self.record(Transition.JOB_RETRIED, f"retry requested at {request}: re-running {names}", reason="Retried")
        return True

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

    def settle_ended(self) -> None:
        """Attempts in progress whose pods have ended (or went after their end was seen) are followed
        as any pass follows them — a success, or a failure with its retry decision — before a
        suspension stops what still runs: the pod ended before the suspension was seen (the job's
        and the pods' watches are separate streams), and stopping it instead would erase a failure
        the retry limit counts, and run the attempt again on resume."""
        for view in self.stages:
            for chain in self.chains(view):
                last = chain.last
                if not self.moving(chain) or last is None or last.state not in _IN_PROGRESS:
                    continue
                pod = self.pods.get(last.pod_name)
                if pod is None and last.pod_name in self.gone:
                    gone = self.vanished.get(last.pod_name)
                    if gone is not None and gone.phase in _ENDED and last.pod_uid in (None, gone.uid):
                        self.vanished_end(chain, last, gone)
                elif pod is not None and pod.phase in _ENDED and last.pod_uid in (None, pod.uid):
                    self.track(chain, last)

    def queued(self) -> None:
        if succeeded_condition(self.status.conditions)[1] != Reason.QUEUED:
            self.record(Transition.JOB_QUEUED, "waiting for a free slot", reason=Reason.QUEUED)

    def suspend(self) -> None:
        """Stop the attempt in progress and give the queue slot back: as with batch/v1 Job,
        `startTime` is cleared, so the job queues again when resumed and its activeDeadlineSeconds
        counts from the resumption. An attempt whose pod had already ended is first recorded as it
        ended (see `settle_ended`); when that ends the job, there is nothing left to suspend."""
        self.settle_ended()
        if self.terminal:
            return
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
