"""Load levelling: at most N running jobs (cluster-wide and per namespace); the rest wait in order.

A running job is one that has started (`status.startTime` set) and has not ended — a job waiting
for a retry holds its slot, so a failing job cannot let a burst overtake it, and its pods come
back without waiting in the queue again. A suspended job gives its slot back (its startTime is
cleared) and queues again when resumed; a retried job queues like a new one (see
`core.decide.needs_admission`). Priorities are capped by the platform's settings
(`--max-priority`, `--namespace-max-priority`). Order and the pure rules: procjob.core.queueing.

Position and ETA are written to a queued job's status, but not on every change: a job's shown
position is rewritten when it changes and the job is among the next 10, or when the last write
is older than POSITION_REFRESH seconds, and the periodic refresh asks for at most
POSITION_REFRESH_BUDGET such rewrites a second, nearest the front first. The estimated start comes
from the finish rate of the last THROUGHPUT_WINDOW seconds (the pure rules:
core.queueing.position_stale, eta_seconds).

Two lists for the work queue: `admissible()`, the jobs a free slot lets start now (few: bounded by
the free slots; the urgent lane), and `stale_positions()`, the budgeted position refreshes (the
normal lane). Only the periodic refresh asks for the second: a job's end asks only for the first.

The order is a pass over every cached job (O(N log N)), so it is computed when it can change who
starts — a job's end (`admissible()`), a released reservation, a new job while a slot is free for
its namespace — and otherwise at most every RECOMPUTE_INTERVAL for tickets and the periodic refresh.
An admission needs no new pass: the chosen jobs were chosen together within the free slots, and the
one admitted leaves the set. (With a pass after every admission and on every job's end, a leader
with 10,000 jobs queued spent 0.7 of a core on the order, and the flood drained at 4 jobs/s.)
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from procjob.adapters.metrics import Metrics
from procjob.controller.cache import Cache
from procjob.controller.settings import OperatorSettings
from procjob.core.queueing import (
    POSITION_REFRESH_BUDGET,
    THROUGHPUT_WINDOW,
    Waiting,
    admissible,
    eta_seconds,
    position_stale,
    queue_order,
)
from procjob.models.job import ProcessingJob
from procjob.models.lifecycle import finished
from procjob.models.status import QueueStatus

RECOMPUTE_INTERVAL = 0.5  # seconds a computed queue order serves tickets (see "The order" above)
RESERVATION_TTL = 30.0  # an admitted job counts as running until its start shows in the cache


def capped(raw: object, cap: int | None) -> int:
    """spec.priority, capped by the platform's maximum for the namespace (its author's choice
    cannot buy a place ahead of other tenants beyond what the platform allows)."""
    priority = raw if isinstance(raw, int) and not isinstance(raw, bool) else 0
    return priority if cap is None else min(priority, cap)


@dataclass(frozen=True, slots=True)
class Ticket:
    admitted: bool
    queue: QueueStatus | None = None


class QueueAdmission:
    def __init__(
        self,
        cache: Cache,
        settings: OperatorSettings,
        metrics: Metrics,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.priority_cap = settings.priority_cap
        self.max_total = settings.max_running_jobs
        self.max_per_namespace = settings.max_running_jobs_per_namespace
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self._computed_at = -1e9
        self._positions: dict[str, int] = {}
        self._chosen: set[str] = set()
        self._spare: int | None = None  # slots in all the last pass left unchosen (None: no limit)
        self._ns_taken: dict[str, int] = {}  # per namespace: running, reserved or chosen at the last pass
        self._shown: dict[str, tuple[int, float]] = {}  # key -> (position written, when)
        self._reserved: dict[str, float] = {}  # key -> expiry
        self._finishes: deque[float] = deque()  # monotonic times of recent job ends
        self._known_finished: set[str] = set()
        self._namespaces: set[str] = set()

    @property
    def limited(self) -> bool:
        return self.max_total is not None or self.max_per_namespace is not None

    def forget(self, key: str) -> None:
        self._reserved.pop(key, None)
        self._shown.pop(key, None)
        self._positions.pop(key, None)
        self._known_finished.discard(key)

    def release(self, key: str) -> None:
        """An admitted job did not start after all (its status write met a 409, or its reconcile
        failed): the slot goes back at once instead of after RESERVATION_TTL."""
        if self._reserved.pop(key, None) is not None:
            self._computed_at = -1e9

    # ------------------------------------------------------------------------------ Admission
    def ticket(self, job: ProcessingJob) -> Ticket:
        """Whether a job that needs a slot (`core.decide.needs_admission`) may take one now."""
        if not self.limited:
            return Ticket(True)
        key = job.meta.key
        if job.spec is None or job.spec.cancel or job.spec.suspend:
            return Ticket(False)  # not a candidate: cancel and suspend are handled without a slot
        unplaced = key not in self._positions and key not in self._chosen
        self._recompute(force=unplaced and self._room_for(job.meta.namespace))
        if key in self._chosen:
            self._chosen.discard(key)  # the others chosen with it still fit: no new pass needed
            self._reserved[key] = self.monotonic() + RESERVATION_TTL
            self._shown.pop(key, None)
            self.metrics.admissions.inc()
            queued_for = (self.clock() - job.meta.creation_time).total_seconds()
            self.metrics.queue_wait.observe(max(0.0, queued_for))
            return Ticket(True)
        return Ticket(False, self._display(key))

    def _room_for(self, namespace: str) -> bool:
        """Whether the last pass left a slot nobody was chosen for, in `namespace` and in all: only
        then can a job the pass has not seen start before the next one."""
        if self._spare is not None and self._spare <= 0:
            return False
        return self.max_per_namespace is None or self._ns_taken.get(namespace, 0) < self.max_per_namespace

    def _display(self, key: str) -> QueueStatus:
        position = self._positions.get(key)
        if position is None:
            return QueueStatus()
        now = self.monotonic()
        shown = self._shown.get(key)
        if position_stale(position, shown, now):
            self._shown[key] = (position, now)
        elif shown is not None:
            position = shown[0]  # keep the written value a little longer
        return QueueStatus(position=position, estimated_start_time=self._eta(position, now))

    def _eta(self, position: int, now: float) -> datetime | None:
        while self._finishes and self._finishes[0] < now - THROUGHPUT_WINDOW:
            self._finishes.popleft()
        seconds = eta_seconds(position, self._finishes, now)
        return None if seconds is None else (self.clock() + timedelta(seconds=seconds)).replace(microsecond=0)

    # ------------------------------------------------------------------------------ the order
    def _recompute(self, *, force: bool = False) -> None:
        now = self.monotonic()
        if not force and now - self._computed_at < RECOMPUTE_INTERVAL:
            return
        self._computed_at = now
        waiting: list[Waiting] = []
        running_total = 0
        running_ns: dict[str, int] = {}
        caps: dict[str, int | None] = {}  # the platform's priority cap per namespace, looked up once a pass
        for job in self.cache.outlines():
            key = job.key
            if finished(job.state):
                self._reserved.pop(key, None)
                if key not in self._known_finished:
                    self._known_finished.add(key)
                    self._finishes.append(now)
                continue
            self._known_finished.discard(key)  # a retried job finishes again later
            if job.deleting:
                continue
            reserved = self._reserved.get(key)
            if job.started is not None:
                self._reserved.pop(key, None)
            if job.started is not None or (reserved is not None and reserved > now):
                running_total += 1
                running_ns[job.namespace] = running_ns.get(job.namespace, 0) + 1
                continue
            if job.cancel or job.suspend:
                continue
            if job.created_at is None:
                continue
            if job.namespace not in caps:
                caps[job.namespace] = self.priority_cap(job.namespace)
            priority = capped(job.priority, caps[job.namespace])
            waiting.append(Waiting(key, job.namespace, priority, job.created_at, job.name))
        order = queue_order(waiting, running_ns)
        self._chosen = admissible(order, running_total, running_ns, self.max_total, self.max_per_namespace)
        # a place in the queue counts only the jobs ahead that will not start now: the chosen ones
        # leave it as they are admitted, without another pass
        self._positions = {}
        for w in order:
            if w.key not in self._chosen:
                self._positions[w.key] = len(self._positions) + 1
        self._spare = None if self.max_total is None else self.max_total - running_total - len(self._chosen)
        self._ns_taken = dict(running_ns)
        for key in self._chosen:
            namespace = key.partition("/")[0]
            self._ns_taken[namespace] = self._ns_taken.get(namespace, 0) + 1
        depth: dict[str, int] = dict.fromkeys(self._namespaces, 0)
        for w in order:
            depth[w.namespace] = depth.get(w.namespace, 0) + 1
        for namespace, count in depth.items():
            self.metrics.queue_depth.labels(namespace=namespace).set(count)
        self._namespaces = set(depth)

    def admissible(self) -> list[str]:
        """Queued keys a slot is free for now: reconcile them first."""
        if not self.limited:
            return []
        self._recompute(force=True)
        return list(self._chosen)

    def stale_positions(self, budget: int = POSITION_REFRESH_BUDGET) -> list[str]:
        """At most `budget` queued keys whose shown position is stale, nearest the front first
        (the order as of at most RECOMPUTE_INTERVAL ago: the refresh has just forced it for
        `admissible()`, and a second pass over a long queue would buy nothing)."""
        if not self.limited:
            return []
        self._recompute()
        now = self.monotonic()
        stale = [
            (position, key)
            for key, position in self._positions.items()
            if key not in self._chosen and position_stale(position, self._shown.get(key), now)
        ]
        return [key for _, key in heapq.nsmallest(budget, stale)]


class Admission(Protocol):
    """What the reconciler asks of the queue (QueueAdmission; AdmitAll without one)."""

    def ticket(self, job: ProcessingJob) -> Ticket: ...

    def release(self, key: str) -> None: ...

    def forget(self, key: str) -> None: ...

    def admissible(self) -> list[str]: ...


class AdmitAll:
    """No queue: every job starts at once."""

    def ticket(self, job: ProcessingJob) -> Ticket:
        return Ticket(True)

    def release(self, key: str) -> None:
        return None

    def forget(self, key: str) -> None:
        return None

    def admissible(self) -> list[str]:
        return []
