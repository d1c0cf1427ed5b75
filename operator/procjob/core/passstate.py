"""The working state of one reconcile pass (see `procjob.core.decide`): the stage views being
rewritten, the transitions recorded, the pod actions gathered, the timers; and what every part of
the pass shares — ending the job, collecting pods, and turning it all into a `Decision`
(summarized by `core.summary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from procjob.core import summary
from procjob.core.chains import StageView
from procjob.core.conditions import SUCCEEDED, SUSPENDED, phase_of, set_condition
from procjob.core.config import CoreConfig
from procjob.core.dag import Graph
from procjob.core.decision import CreatePod, Decision, DeletePod, FinalizerAction
from procjob.core.events import mirror_events
from procjob.core.observe import PodObservation
from procjob.core.timefmt import earliest
from procjob.models.audit import AuditEntry
from procjob.models.job import ProcessingJob
from procjob.models.lifecycle import finished, succeeded_condition
from procjob.models.spec import PodGC
from procjob.models.status import (
    AUDIT_BACKLOG_LIMIT,
    Attempt,
    AttemptState,
    ConditionStatus,
    Reason,
    StageState,
    StageStatus,
)
from procjob.models.transitions import Transition

# A pod still there this long after its grace period ended (a lost node) is deleted by force.
TERMINATING_PATIENCE = timedelta(seconds=60)
# podGC deletes a finished job's pods with one request (Decision.collect) when at least this many
# go, all of its pods, every one ended; fewer, or beside a pod still stopping, one DELETE each.
COLLECT_AT_LEAST = 2


class PassState:
    """One reconcile pass's accumulators, and the steps every part of the pass uses."""

    def __init__(
        self,
        job: ProcessingJob,
        pods: list[PodObservation],
        now: datetime,
        config: CoreConfig,
        gone: Mapping[str, str],
        rejected: Mapping[str, str],
        vanished: Mapping[str, PodObservation],
        pods_left: int | None = None,
    ) -> None:
        self.job = job
        self.pods_left = pods_left  # pods this pass may still create (None: no limit; see decide)
        self.starved = False  # an attempt could have started but no pod was left
        self.resolved: dict[str, list[Any]] = {}  # a fanned-out stage's items, read once per pass
        self.gone = gone
        self.rejected = rejected
        self.vanished = vanished
        self.spec = job.spec
        self.now = now
        self.config = config
        self.pods = {p.name: p for p in pods}
        self.status = job.status
        self.outbox = job.status.audit
        self.transitions: list[AuditEntry] = []
        self.create: list[CreatePod] = []
        self.delete: dict[str, DeletePod] = {}
        self.collect: list[DeletePod] = []  # a finished job's finished pods, deleted together (gc_pods)
        self.timers: list[datetime | None] = []
        self.stages: list[StageView] = []  # spec order: the stages, then the finally stages
        self.main: list[StageView] = []  # the stages in the order a pass looks at them (core.dag)
        self.finale: list[StageView] = []  # the finally stages, likewise
        self.by_name: dict[str, StageView] = {}
        self.graph = Graph((), {})
        self.finally_graph = Graph((), {})
        self.backlogged = False  # the audit outbox is full: no new attempts
        if self.spec is not None:
            by_name = {s.name: s for s in job.status.stages}
            main = len(self.spec.stages)
            self.stages = [
                StageView(i, s, by_name.get(s.name) or StageStatus(name=s.name, state=StageState.PENDING), i >= main)
                for i, s in enumerate(self.spec.all_stages)
            ]
            self.graph = Graph.of(self.spec.stages)
            self.finally_graph = Graph.of(self.spec.finally_ or [])
            self.by_name = {v.status.name: v for v in self.stages}
            self.main = [self.by_name[name] for name in self.graph.order()]
            self.finale = [self.by_name[name] for name in self.finally_graph.order()]

    def record(
        self,
        type_: Transition,
        message: str,
        *,
        reason: str = "",
        stage: str | None = None,
        attempt: Attempt | None = None,
        detail: dict[str, Any] | None = None,
        item: int | None = None,
        time: datetime | None = None,
    ) -> None:
        """An audit entry (and the Event mirror's source) for this pass; `time` when it happened
        earlier than now (a pod's start seen late, see core.attempts)."""
        item = attempt.item if attempt is not None and attempt.item is not None else item
        if item is not None:  # an item of a fanned-out stage: in the detail (the audit's columns are the stage's)
            detail = {"item": item, **(detail or {})}
        entry = AuditEntry(
            seq=self.outbox.last_seq + len(self.transitions) + 1,
            type=type_,
            reason=reason or type_,
            message=message[:1024],
            stage=stage,
            attempt=attempt.attempt if attempt else None,
            pod_name=attempt.pod_name if attempt else None,
            exit_code=attempt.exit_code if attempt else None,
            time=time or self.now,
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

    @property
    def finalizing(self) -> bool:
        """The stages have ended and spec.finally runs (status.finally records how they ended)."""
        return self.status.finally_ is not None and not self.terminal

    def deadline(self) -> datetime | None:
        """activeDeadlineSeconds from startTime; once the finally stages run, finallyDeadlineSeconds from
        their start instead."""
        assert self.spec is not None
        if self.status.finally_ is not None:
            return self.status.finally_.start_time + timedelta(seconds=self.spec.finally_deadline)
        if self.spec.active_deadline_seconds is None or self.status.start_time is None:
            return None
        return self.status.start_time + timedelta(seconds=self.spec.active_deadline_seconds)

    def invalid_spec(self, message: str) -> None:
        """A spec the operator cannot run ends the job before any pod (and without its finally stages)."""
        self.record(Transition.INVALID_SPEC, message, reason=Reason.INVALID_SPEC)
        self.end_job(ConditionStatus.FALSE, Reason.INVALID_SPEC, message, Transition.JOB_FAILED)

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

    def gc_pods(self) -> None:
        """Finished jobs: stop anything live; delete finished pods as podGC says, once their logs are
        archived (see `log_pending`). When every pod of the job has ended, they go together, in one
        request (`collect`), after the last log is in; else one DELETE each as soon as it may go."""
        policy = PodGC.NEVER if self.spec is None else self.spec.pod_gc
        succeeded = succeeded_condition(self.status.conditions)[0] == ConditionStatus.TRUE
        gc = policy == PodGC.ON_COMPLETION or (policy == PodGC.ON_SUCCESS and succeeded)
        going: list[PodObservation] = []
        waiting = live = 0
        for pod in self.pods.values():
            if pod.live:
                live += 1
                self.delete_pod(pod, "job finished")
            elif gc and not pod.deleting:
                if self.log_pending(pod):  # sets the timer of its bound
                    waiting += 1
                else:
                    going.append(pod)
        together = not live and len(going) + waiting == len(self.pods)
        if together and waiting:
            return  # the others wait for the last log (at most until its bound)
        if together and len(going) >= COLLECT_AT_LEAST:
            self.collect = [DeletePod(p.name, p.uid or None, "podGC") for p in going]
            return
        for pod in going:
            self.delete_pod(pod, "podGC")

    def log_pending(self, pod: PodObservation) -> bool:
        """Whether a finished pod must be kept for its log archive: archiving is on, the log is not
        stored yet, and less than `log_archive_wait_seconds` have passed since the attempt ended (the
        container's finish, else the job's end). Then a timer for that bound: the archive never
        blocks a job for longer, whatever happens to it."""
        wait = self.config.log_archive_wait_seconds
        ended = pod.finished or self.status.completion_time
        if wait is None or pod.log_archived or not pod.terminal or ended is None:
            return False
        until = ended + timedelta(seconds=wait)
        if self.now >= until:
            return False
        self.at(until)
        return True

    def logs_pending(self) -> bool:
        """Whether any finished pod of the job waits for its log archive (deleting the job would
        delete the pods with it)."""
        waiting = [pod for pod in self.pods.values() if self.log_pending(pod)]  # each sets its timer
        return bool(waiting)

    def terminating(self, stage: str, item: int | None = None) -> bool:
        """Whether a pod of the stage (the item) is on its way out but may still run (its new attempt
        waits: two attempts of one chain never overlap)."""
        leaving = [
            p
            for p in self.pods.values()
            if p.deleting and not p.terminal and p.stage in (stage, None) and p.item == item
        ]
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
        """Invariant: at most one live pod per stage, its current attempt's — the pod of an attempt
        still Pending or Running, read from the stage statuses as this pass leaves them."""
        chains = [*self.stages, *(item for view in self.stages for item in view.items.values())]
        current = {
            chain.last.pod_name
            for chain in chains
            if chain.last is not None and chain.last.state in (AttemptState.PENDING, AttemptState.RUNNING)
        }
        for pod in self.pods.values():
            if pod.live and pod.name not in current:
                self.delete_pod(pod, "not the current attempt")

    def result(
        self, finalizer: FinalizerAction | None, *, summarize: bool = True, delete_job: bool = False
    ) -> Decision:
        for view in self.stages:
            view.flush()
        if summarize and not self.terminal:
            self.strays()
        status = self.status
        if summarize and self.spec is not None:
            status = summary.summarize(self, status)
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
            collect=tuple(self.collect),
            events=events,
            transitions=tuple(self.transitions),
            requeue_at=earliest(*(t for t in self.timers if t is not None and t > self.now)),
            finalizer=finalizer,
            delete_job=delete_job,
            starved=self.starved,
        )
