"""The operator's pod caps: at most `--max-running-pods` pods of all jobs and `--max-running-pods-per-job`
pods of one job are running at once (pods that have not finished, those being deleted included: their
containers may still run), so that a job of 10,000 items cannot flood the cluster.

`--max-running-jobs` still counts jobs (controller.admission); a running job whose new attempts find no
pod left keeps its job slot and waits. Each reconcile asks `allowance` how many new pods the job may
create, passes it to `decide` (pods_left) and at once, before any await, records what it decided to
create (`granted`), so two reconciles never hand out the same room: a granted pod counts until the
cache shows it (or RESERVATION_TTL passes: its create failed).

Who gets room that frees up: a decision that wanted more pods than it got (`starved`) puts its job on
the waiting list; after every reconcile, as many waiting jobs as there is room are woken, in the
queue's order: higher `spec.priority` first, then the job that started first, then by name. Within a
job, the core starts due retries first, then new items in index order; a stage's items therefore never
overtake an older job's, and a burst of new jobs never starves the items of a running one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from procjob.controller.cache import Cache
from procjob.core.decision import CreatePod
from procjob.core.observe import PodObservation
from procjob.models.job import ProcessingJob

DEFAULT_MAX_PODS_PER_JOB = 100
RECOUNT_INTERVAL = 0.1  # seconds between counts of every running pod in the cache
RESERVATION_TTL = 30.0  # a granted pod counts this long at most before the cache shows it

WaitKey = tuple[int, datetime, str]  # (-priority, start time, job key)


def running(pods: Sequence[PodObservation]) -> int:
    """Pods that may still run: not Succeeded or Failed (being deleted counts)."""
    return sum(1 for pod in pods if not pod.terminal)


class PodCaps:
    def __init__(
        self,
        cache: Cache,
        max_total: int | None,
        max_per_job: int | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.max_total = max_total
        self.max_per_job = max_per_job
        self.monotonic = monotonic
        self._granted: dict[tuple[str, str], tuple[str, float]] = {}  # (namespace, pod) -> (job key, expiry)
        self._counted_at = -1e9
        self._running = 0
        self._waiting: dict[str, WaitKey] = {}

    @property
    def limited(self) -> bool:
        return self.max_total is not None or self.max_per_job is not None

    def _pending(self, key: str | None = None, shown: Sequence[PodObservation] = ()) -> int:
        """Granted pods the cache does not show yet (of one job, whose pods are `shown`; or of all). A
        grant is dropped when the total's count includes its pod (`_recount`), or at once when there is no
        total to count; never earlier, else a pod would count neither as granted nor as running."""
        now = self.monotonic()
        names = {pod.name for pod in shown}
        for spot, (job, expiry) in list(self._granted.items()):
            if expiry < now or (self.max_total is None and job == key and spot[1] in names):
                del self._granted[spot]
        return sum(
            1 for (_, name), (job, _) in self._granted.items() if key is None or (job == key and name not in names)
        )

    def _recount(self) -> None:
        now = self.monotonic()
        if now - self._counted_at < RECOUNT_INTERVAL:
            return
        self._counted_at = now
        total = 0
        seen: set[tuple[str, str]] = set()
        for (namespace, _), pods in list(self.cache.pods.items()):
            for pod in pods.values():
                seen.add((namespace, pod.name))
                total += 0 if pod.terminal else 1
        for spot in [s for s in self._granted if s in seen]:
            del self._granted[spot]  # the cache has it now: counted above
        self._running = total

    def allowance(self, job: ProcessingJob, pods: Sequence[PodObservation]) -> int | None:
        """How many new pods this job may create now (None: no cap)."""
        if not self.limited:
            return None
        left: list[int] = []
        if self.max_per_job is not None:
            left.append(self.max_per_job - running(pods) - self._pending(job.meta.key, pods))
        if self.max_total is not None:
            self._recount()
            left.append(self.max_total - self._running - self._pending())
        return max(0, min(left))

    def granted(self, job: ProcessingJob, creates: Sequence[CreatePod]) -> None:
        """A decision's creates: they count from now on (until the cache shows them)."""
        if not self.limited:
            return
        expiry = self.monotonic() + RESERVATION_TTL
        for create in creates:
            self._granted[(job.meta.namespace, create.name)] = (job.meta.key, expiry)

    def release(self, job: ProcessingJob, creates: Sequence[CreatePod]) -> None:
        """Creates that were not made after all (the status write met a conflict)."""
        for create in creates:
            self._granted.pop((job.meta.namespace, create.name), None)

    def waiting(self, job: ProcessingJob, pods: Sequence[PodObservation], starved: bool) -> None:
        """Whether the job wants pods it did not get for lack of room in the total (it waits in the
        queue's order). One held back by its own cap is not: its own pods' ends wake it."""
        key = job.meta.key
        own_cap = self.max_per_job is not None and running(pods) + self._pending(key, pods) >= self.max_per_job
        if not starved or own_cap:
            self._waiting.pop(key, None)
            return
        priority = job.spec.priority if job.spec is not None else 0
        self._waiting[key] = (-priority, job.status.start_time or job.meta.creation_time, key)

    def forget(self, key: str) -> None:
        self._waiting.pop(key, None)

    def due(self) -> list[str]:
        """Waiting jobs to reconcile now: as many as there is room for, in the queue's order."""
        if not self._waiting:
            return []
        room = len(self._waiting)
        if self.max_total is not None:
            self._recount()
            room = self.max_total - self._running - self._pending()
        if room <= 0:
            return []
        order = sorted(self._waiting, key=lambda k: self._waiting[k])
        return order[:room]

    def after(
        self,
        job: ProcessingJob,
        pods: Sequence[PodObservation],
        creates: Sequence[CreatePod],
        *,
        starved: bool,
        written: bool,
    ) -> list[str]:
        """After a pass: creates not made (its status write failed) give their room back; a job short of
        room waits; the other jobs that may have room now are returned, to be reconciled."""
        if not written:
            self.release(job, creates)
        self.waiting(job, pods, starved and written)
        return [key for key in self.due() if key != job.meta.key]
