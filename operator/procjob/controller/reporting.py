"""What the reconciler tells the world besides the job itself: Kubernetes Events (a lossy mirror,
posted in the background, never blocking a reconcile) and metrics of each applied pass.

A job's progress Events (its start, a stage's start and success: `Event.progress`) are held for up
to EVENT_HOLD seconds and posted with the job's next Event: a Normal one (the job's end, a
suspension, the finally stages...) carries them before its own message, under its own reason; a
Warning is preceded by them, posted alone, so `kubectl describe` keeps the order. Posted alone
(also after EVENT_HOLD, or before a message would pass 1024 characters), they are one Event named
by the newest one's reason (how far the job got: Started, StageSucceeded...).
Every transition is still mirrored, and a job's healthy run of up to EVENT_HOLD seconds costs one
Event instead of one per pass. The hold is 30 s, not 5: in a burst (300 three-stage jobs at once, the
quick bench) a job's stages take 10-15 s each, and a 5 s hold posted each stage's progress alone,
1.8 Events per stage of the operator's own against 0.8 when paced; the job's live state is in its
status (`kubectl get pj`) at once, only `kubectl describe`'s Events wait. What is held when the
process stops is lost, like any Event in flight (the audit is the record).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from procjob.adapters.kube import ApiError, KubeClient
from procjob.adapters.metrics import Metrics
from procjob.core.decision import Decision, Event, EventType
from procjob.models.job import JobMeta
from procjob.models.lifecycle import body_state, finished, outcome, succeeded_condition
from procjob.models.status import ProcessingJobStatus
from procjob.models.transitions import Transition

log = logging.getLogger("procjob.reconcile")

EVENT_CONCURRENCY = 16
EVENT_HOLD = 30.0  # seconds a job's progress Events are gathered into one (see the module's docstring)
EVENT_MESSAGE_CHARS = 1024  # what an Event's message may hold (longer ones are cut)
SEPARATOR = "; "


@dataclass
class _Held:
    """A job's progress Events gathered since the first of them (all Normal)."""

    meta: JobMeta
    events: list[Event] = field(default_factory=list)
    now: datetime | None = None  # the newest pass's time
    timer: asyncio.TimerHandle | None = None

    @property
    def messages(self) -> list[str]:
        return [e.message for e in self.events]

    def fits(self, message: str) -> bool:
        return sum(len(m) + len(SEPARATOR) for m in self.messages) + len(message) <= EVENT_MESSAGE_CHARS

    @property
    def reason(self) -> str:
        """Posted alone, they are named by the newest one's reason: how far the job got."""
        return self.events[-1].reason


class EventPoster:
    """Posts Events in background tasks, at most EVENT_CONCURRENCY at once; a failure is counted
    and dropped (the audit is the record). Progress Events are held per job (`hold` seconds)."""

    def __init__(self, client: KubeClient, metrics: Metrics, instance: str, *, hold: float = EVENT_HOLD) -> None:
        self.client = client
        self.metrics = metrics
        self.instance = instance
        self.hold = hold
        self.tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(EVENT_CONCURRENCY)
        self._held: dict[str, _Held] = {}  # job UID -> its progress Events not posted yet

    def post_decision(self, meta: JobMeta, decision: Decision, now: datetime) -> None:
        for event in decision.events:
            if event.progress and self.hold > 0:
                self._gather(meta, event, now)
                continue
            held = self._held.get(meta.uid)
            if held is not None and event.type == EventType.NORMAL and held.fits(event.message):
                self._drop(meta.uid)
                message = SEPARATOR.join([*held.messages, event.message])
                self.post(meta, event.type.value, event.reason, message, now)
                continue
            self._release(meta.uid)
            self.post(meta, event.type.value, event.reason, event.message, now)

    def flush(self) -> None:
        """Post every held Event now."""
        for uid in list(self._held):
            self._release(uid)

    @property
    def held(self) -> int:
        return len(self._held)

    def _gather(self, meta: JobMeta, event: Event, now: datetime) -> None:
        held = self._held.get(meta.uid)
        if held is not None and not held.fits(event.message):
            self._release(meta.uid)
            held = None
        if held is None:
            held = self._held[meta.uid] = _Held(meta)
            held.timer = asyncio.get_running_loop().call_later(self.hold, self._release, meta.uid)
        held.events.append(event)
        held.now = now

    def _drop(self, uid: str) -> _Held | None:
        held = self._held.pop(uid, None)
        if held is not None and held.timer is not None:
            held.timer.cancel()
        return held

    def _release(self, uid: str) -> None:
        held = self._drop(uid)
        if held is None:
            return
        now = held.now
        assert now is not None
        self.post(held.meta, EventType.NORMAL.value, held.reason, SEPARATOR.join(held.messages), now)

    def post(self, meta: JobMeta, type_: str, reason: str, message: str, now: datetime) -> None:
        task = asyncio.create_task(self._post(meta, type_, reason, message[:EVENT_MESSAGE_CHARS], now))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def post_on_body(self, body: dict[str, Any], reason: str, message: str, now: datetime) -> None:
        """A Warning on an object that may not even parse (only its metadata is needed)."""
        meta = body.get("metadata") or {}
        if meta.get("uid") and meta.get("name") and meta.get("creationTimestamp"):
            self.post(JobMeta.from_api(meta), "Warning", reason, message, now)

    async def _post(self, meta: JobMeta, type_: str, reason: str, message: str, now: datetime) -> None:
        async with self._slots:
            try:
                await self.client.post_event(
                    namespace=meta.namespace,
                    name=meta.name,
                    uid=meta.uid,
                    type_=type_,
                    reason=reason,
                    message=message,
                    now=now,
                    instance=self.instance,
                )
                self.metrics.events_posted.inc()
            except (TimeoutError, ApiError, OSError, aiohttp.ClientError) as exc:
                self.metrics.events_dropped.inc()
                log.debug("event %s for %s dropped: %s", reason, meta.key, exc)


def count_pass(metrics: Metrics, decision: Decision, stored: ProcessingJobStatus) -> bool:
    """Metrics of one applied pass; True when the job has just finished (a queue slot is free)."""
    for t in decision.transitions:
        if t.type == Transition.ATTEMPT_STARTED:
            metrics.attempts_started.inc()
        elif t.type == Transition.ATTEMPT_FAILED:
            metrics.attempts_failed.labels(reason=t.reason).inc()
        elif t.type == Transition.RETRY_SCHEDULED:
            metrics.retries.labels(action=str(t.detail.get("action", "Retry"))).inc()
    status = decision.status
    state, reason = succeeded_condition(status.conditions)
    ended = outcome(state, reason)
    if ended is None or finished(succeeded_condition(stored.conditions)[0]):
        return False
    metrics.jobs_finished.labels(outcome=ended, reason=reason or "").inc()
    if status.start_time and status.completion_time:
        seconds = (status.completion_time - status.start_time).total_seconds()
        metrics.job_duration.labels(outcome=ended).observe(seconds)
    for stage in status.stages:
        if stage.start_time and stage.completion_time:
            seconds = (stage.completion_time - stage.start_time).total_seconds()
            metrics.stage_duration.labels(outcome=stage.state.value).observe(seconds)
    return True


def active_job_counts(bodies: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Jobs in progress by state (the `procjob_jobs_active` gauge), from the cached objects."""
    counts: dict[str, int] = {"Queued": 0, "Running": 0, "BackoffWaiting": 0, "Suspended": 0}
    for body in bodies:
        state, reason = body_state(body)
        if state == "Unknown":
            counts[reason if reason in counts else "Running"] += 1
    return counts
