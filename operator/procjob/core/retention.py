"""Which finished jobs go: the per-namespace cap on finished jobs kept (oldest first).

ttlSecondsAfterFinished is decided per job by `decide`; the cap needs every finished job of a
namespace at once, so the controller asks this pure function with what its cache holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Finished:
    key: str  # namespace/name
    uid: str
    namespace: str
    completed: datetime


def over_cap(finished: Iterable[Finished], cap: int) -> list[Finished]:
    """The finished jobs beyond `cap` in each namespace, the oldest (by completion) first."""
    by_namespace: dict[str, list[Finished]] = {}
    for job in finished:
        by_namespace.setdefault(job.namespace, []).append(job)
    doomed: list[Finished] = []
    for jobs in by_namespace.values():
        jobs.sort(key=lambda j: (j.completed, j.key))
        doomed.extend(jobs[: max(0, len(jobs) - cap)])
    return doomed
