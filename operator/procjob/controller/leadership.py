"""Leader election over a Lease (client-go's timings: lease 15 s, renew deadline 10 s, retry 2 s).

Every replica watches and keeps its caches warm; only the leader reconciles and writes. A
candidate tries to take the Lease every `retry` seconds; the leader renews it as often. The rules
(core.leadership) count on each replica's own monotonic clock, from when a renewal was sent or a
Lease version first seen.

Two fences keep an old leader from writing once another may lead:
- the loop: a leader that has not renewed within `renew_deadline` — or that finds the Lease held by
  someone else — stops leading and calls `on_lost`, which ends the process, as client-go does;
- the guard, `may_write()`, asked right before every write (the API client's writes, the audit
  and log archive's database writes): a process that was frozen (SIGSTOP, a paused VM, a stalled
  event loop) wakes up with its in-flight reconciles and timers due *before* the loop has had a
  turn to notice; the guard sees by its own clock that the deadline passed, refuses the write and
  stops the process there.
Status writes also carry their resourceVersion preconditions, the fence of last resort for a write
already sent when the process froze.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from procjob.adapters.audit import ArchivedLog, AuditUnavailable, JobSummary
from procjob.adapters.kube import ApiError, Conflict
from procjob.adapters.lease import Requester, get_lease, write_lease
from procjob.adapters.metrics import Metrics
from procjob.controller.logarchive import LogStore
from procjob.controller.relay import AuditSink
from procjob.core import leadership as rules
from procjob.models.audit import AuditRecord
from procjob.models.lease import LEASE_NAME, LeaseRecord

log = logging.getLogger("procjob.leader")

FAILURES = (ApiError, OSError, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Timings:
    lease: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0


def uptime() -> float:
    """The clock of the leadership rules: CLOCK_BOOTTIME, which keeps counting while the machine
    is suspended (CLOCK_MONOTONIC does not, and the other replicas' time goes on)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class LeaderElector:
    def __init__(
        self,
        client: Requester,
        namespace: str,
        identity: str,
        *,
        on_started: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        metrics: Metrics,
        timings: Timings = Timings(),
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = uptime,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = LEASE_NAME,
    ) -> None:
        self.client, self.namespace, self.identity, self.name = client, namespace, identity, name
        self.on_started, self.on_lost, self.metrics = on_started, on_lost, metrics
        self.timings, self.clock, self.monotonic, self.sleep = timings, clock, monotonic, sleep
        self._renewed: float | None = None  # when the last successful renewal was sent; None: not leading
        self._observed: rules.Observed | None = None
        self._seen_holder: str | None = None
        self._problem: str | None = None  # the last failure logged (each new one is logged once)

    @property
    def leading(self) -> bool:
        return self._renewed is not None

    @property
    def holder(self) -> str | None:
        """Who holds the Lease, as last read (None: nobody, or not read yet)."""
        return self._seen_holder or None

    # ------------------------------------------------------------------------------ the fence
    def may_write(self) -> bool:
        """Asked right before every write: True while this replica leads by its own clock. Past the
        renew deadline it stops leading here and now (on_lost ends the process) and says False."""
        return self._within_deadline("a write was refused")

    def _within_deadline(self, context: str) -> bool:
        now = self.monotonic()
        if rules.may_write(self._renewed, self.timings.renew_deadline, now):
            return True
        if self._renewed is not None:
            age, deadline = now - self._renewed, self.timings.renew_deadline
            self._stop(f"{context}: its last renewal is {age:.1f}s old, past the renew deadline ({deadline:g}s)")
        return False

    # ------------------------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Forever: try to lead; once leading, renew; stop the process when leadership is lost."""
        while True:
            if self.leading and not self._within_deadline("its renew loop woke up late"):
                return  # frozen, or the event loop stalled: stopped
            sent, was_leading = self.monotonic(), self.leading
            if await self._attempt(sent):
                if not self.leading:
                    await self._lead(sent)
                else:
                    self._renewed = sent
            elif was_leading and not self.leading:
                return  # stopped during the attempt (past its deadline): never renewed late
            elif self.leading:
                self.metrics.leader_renew_failures.inc()
                taken = self._taken_by_other()
                if taken is not None:
                    self._stop(f"the Lease is held by {taken or 'nobody'} now")
                    return
                if not self._within_deadline("it could not renew"):
                    return
            await self.sleep(self.timings.retry)

    async def _lead(self, sent: float) -> None:
        self._renewed = sent
        self.metrics.leader.set(1)
        self.metrics.leadership_transitions.labels(to="leader").inc()
        log.info("leader election: %s leads (lease %s/%s)", self.identity, self.namespace, self.name)
        await self.on_started()

    def _stop(self, why: str) -> None:
        """Stop leading at once: the fence refuses every write from now on; on_lost ends the process."""
        self._renewed = None
        self.metrics.leader.set(0)
        self.metrics.leadership_transitions.labels(to="standby").inc()
        log.error("leader election: %s stops leading: %s; exiting", self.identity, why)
        self.on_lost()

    def _taken_by_other(self) -> str | None:
        """The holder ('' for nobody) of a Lease last seen held by someone else; None if ours or unseen."""
        record = self._observed.record if self._observed is not None else None
        if record is None or record.holder == self.identity:
            return None
        return record.holder or ""

    async def _attempt(self, sent: float) -> bool:
        """One try, bounded: a leader's by what is left of its renew deadline (a renewal that hangs
        must not outlive it), a candidate's by the renew deadline."""
        left = self.timings.renew_deadline
        if self._renewed is not None:
            left = self._renewed + self.timings.renew_deadline - sent
        try:
            async with asyncio.timeout(max(left, 0.0)):
                return await self._try()
        except TimeoutError:
            self._failed(f"no answer within {max(left, 0.0):.1f}s")
            return False

    async def _try(self) -> bool:
        """Take or renew the Lease; False when someone else holds it or the API server did not
        answer (a 409 means another candidate wrote first)."""
        try:
            record = await get_lease(self.client, self.namespace, self.name)
            taking = rules.may_take(self._see(record), self.identity, self.monotonic())
            if taking and self.leading and not self._within_deadline("it was stopped while renewing"):
                return False  # past the deadline between the read and now (SIGSTOP): never renew late
            if taking:
                mine = rules.claimed(record, self.identity, self.clock(), rules.lease_seconds(self.timings.lease))
                self._see(await write_lease(self.client, self.namespace, self.name, mine))
        except Conflict as exc:
            log.debug("leader election: another candidate wrote the Lease first (%s)", exc)
            return False
        except FAILURES as exc:
            self._failed(" ".join(f"{type(exc).__name__}: {exc}".split()))
            return False
        if self._problem is not None:
            log.info("leader election: %s can use the Lease again", self.identity)
            self._problem = None
        return taking

    def _failed(self, problem: str) -> None:
        """A Lease request failed (the API server, RBAC, the network): logged once per problem —
        a standby that cannot read the Lease would otherwise stand by in silence forever."""
        if problem != self._problem:
            log.warning(
                "leader election: %s cannot use the Lease %s/%s: %s", self.identity, self.namespace, self.name, problem
            )
        self._problem = problem

    def _see(self, record: LeaseRecord | None) -> rules.Observed:
        """Note the Lease as read now; a standby logs each new holder it sees."""
        self._observed = rules.observe(self._observed, record, self.monotonic())
        holder = record.holder if record is not None else None
        if holder and holder not in (self._seen_holder, self.identity):
            log.info("leader election: %s leads; %s stands by", holder, self.identity)
        self._seen_holder = holder
        return self._observed

    # --------------------------------------------------------------------------- shutting down
    async def release(self) -> None:
        """On shutdown, after the writers stopped: give the Lease up (holder ''), so that a standby
        takes over at its next try instead of after the lease — a rolling update's failover."""
        if not self.leading:
            return
        self._renewed = None
        self.metrics.leader.set(0)
        self.metrics.leadership_transitions.labels(to="standby").inc()
        try:
            record = await get_lease(self.client, self.namespace, self.name)
            if record is None or record.holder != self.identity:
                log.info("leader election: %s stops leading (shutting down)", self.identity)
                return
            await write_lease(self.client, self.namespace, self.name, rules.released(record, self.clock()))
        except FAILURES as exc:
            log.warning("leader election: %s stops leading; the Lease was not released (%s)", self.identity, exc)
            return
        log.info("leader election: %s stops leading: released the Lease (shutting down)", self.identity)


class FencedStore:
    """The audit database as the relay and the log archive write it, each write asked of the
    fence first (raises AuditUnavailable, which both treat as 'keep it and retry later' — the
    records stay in the job's status outbox for the next leader)."""

    def __init__(self, store: AuditSink, logs: LogStore, fence: Callable[[], bool]) -> None:
        self.store, self.logs, self.fence = store, logs, fence

    def _check(self) -> None:
        if not self.fence():
            raise AuditUnavailable("this replica does not lead: it writes nothing")

    async def insert(self, records: Sequence[AuditRecord]) -> int:
        self._check()
        return await self.store.insert(records)

    async def upsert_jobs(self, jobs: Sequence[JobSummary]) -> int:
        self._check()
        return await self.store.upsert_jobs(jobs)

    async def ping(self) -> None:
        await self.store.ping()

    async def logs_archived(self, job_uid: str, stage: str, attempt: int, item: int | None = None) -> bool:
        return await self.logs.logs_archived(job_uid, stage, attempt, item)

    async def save_logs(self, logs: Sequence[ArchivedLog]) -> int:
        self._check()
        return await self.logs.save_logs(logs)
