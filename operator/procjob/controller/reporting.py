"""What the reconciler tells the world besides the job itself: Kubernetes Events (a lossy mirror,
posted in the background, never blocking a reconcile) and metrics of each applied pass."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import aiohttp

from procjob.adapters.kube import ApiError, KubeClient
from procjob.adapters.metrics import Metrics
from procjob.core.decision import Decision
from procjob.models.job import JobMeta
from procjob.models.lifecycle import body_state, finished, outcome, succeeded_condition
from procjob.models.status import ProcessingJobStatus
from procjob.models.transitions import Transition

log = logging.getLogger("procjob.reconcile")

EVENT_CONCURRENCY = 16


class EventPoster:
    """Posts Events in background tasks, at most EVENT_CONCURRENCY at once; a failure is counted
    and dropped (the audit is the record)."""

    def __init__(self, client: KubeClient, metrics: Metrics, instance: str) -> None:
        self.client = client
        self.metrics = metrics
        self.instance = instance
        self.tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(EVENT_CONCURRENCY)

    def post_decision(self, meta: JobMeta, decision: Decision, now: datetime) -> None:
        for event in decision.events:
            self.post(meta, event.type.value, event.reason, event.message, now)

    def post(self, meta: JobMeta, type_: str, reason: str, message: str, now: datetime) -> None:
        task = asyncio.create_task(self._post(meta, type_, reason, message[:1024], now))
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
