"""Queue order for jobs waiting to start: priority, then namespaces in turn, then FIFO.

Pure: given the waiting jobs and the free capacity, return the order and which may start. Higher
`spec.priority` first; within one priority, namespaces take turns (the namespace whose oldest
waiting job is oldest goes first) so one namespace's burst cannot starve another; within a
namespace, first created first.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Waiting:
    key: str  # namespace/name
    namespace: str
    priority: int
    created: datetime
    name: str


def queue_order(waiting: Iterable[Waiting]) -> list[Waiting]:
    by_priority: dict[int, dict[str, list[Waiting]]] = defaultdict(lambda: defaultdict(list))
    for job in waiting:
        by_priority[job.priority][job.namespace].append(job)
    order: list[Waiting] = []
    for priority in sorted(by_priority, reverse=True):
        lanes = [deque(sorted(jobs, key=lambda j: (j.created, j.name))) for jobs in by_priority[priority].values()]
        lanes.sort(key=lambda lane: (lane[0].created, lane[0].namespace))
        while lanes:
            for lane in list(lanes):
                order.append(lane.popleft())
                if not lane:
                    lanes.remove(lane)
    return order


def admissible(
    order: Sequence[Waiting],
    running_total: int,
    running_by_namespace: Mapping[str, int],
    max_total: int | None,
    max_per_namespace: int | None,
) -> set[str]:
    """Keys that may start now, taking the order as far as the limits allow.

    A job whose namespace is full is skipped (it keeps its place) and the next one is considered:
    a full namespace must not block the others.
    """
    free = None if max_total is None else max(0, max_total - running_total)
    used: dict[str, int] = dict(running_by_namespace)
    chosen: set[str] = set()
    for job in order:
        if free is not None and free <= 0:
            break
        if max_per_namespace is not None and used.get(job.namespace, 0) >= max_per_namespace:
            continue
        chosen.add(job.key)
        used[job.namespace] = used.get(job.namespace, 0) + 1
        if free is not None:
            free -= 1
    return chosen
