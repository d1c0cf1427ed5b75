"""QueueAdmission against a real Cache and fake clocks: the slot rules of a shared cluster — a
reservation released at once when the job did not start, a suspended job gives its slot back, a
retried job queues like a new one, a priority is capped by the platform's settings, and position
refreshes are budgeted whatever the queue's length."""

from __future__ import annotations

from typing import Any

from procjob.adapters.metrics import Metrics
from procjob.controller.admission import RESERVATION_TTL, QueueAdmission
from procjob.controller.cache import Cache
from procjob.controller.settings import OperatorSettings
from procjob.core.queueing import POSITION_REFRESH_BUDGET
from procjob.models.job import ProcessingJob
from tests.unit.controller.fakes import FakeClock

STARTED = "2026-01-02T03:00:00Z"


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(name: str, ns: str = "a", *, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{ns}-{name}",
            "generation": 1,
            "creationTimestamp": f"2026-01-02T03:00:{len(name):02d}Z",
            "resourceVersion": "1",
        },
        "spec": {"stages": [{"name": "s", "image": "i"}], **spec},
        "status": status or {},
    }


def failed_status() -> dict[str, Any]:
    cond = {"type": "Succeeded", "status": "False", "reason": "BackoffLimitExceeded", "lastTransitionTime": STARTED}
    return {"startTime": STARTED, "completionTime": STARTED, "conditions": [cond]}


def setup(*bodies: dict[str, Any], **settings: Any) -> tuple[QueueAdmission, Cache, Monotonic]:
    cache = Cache()
    for b in bodies:
        cache.observe_job(b)
    mono = Monotonic()
    admission = QueueAdmission(cache, OperatorSettings(**settings), Metrics(), FakeClock(), mono)
    return admission, cache, mono


def parsed(cache: Cache, key: str) -> ProcessingJob:
    found = cache.job(key)
    assert found is not None
    return ProcessingJob.from_api(found)


def test_a_released_reservation_frees_the_slot_at_once() -> None:
    admission, cache, mono = setup(body("a1"), body("a2"), max_running_jobs=1)
    assert admission.ticket(parsed(cache, "a/a1")).admitted
    assert not admission.ticket(parsed(cache, "a/a2")).admitted
    assert not admission.ticket(parsed(cache, "a/a1")).admitted  # reserved: it counts as running
    admission.release("a/a1")  # its status write met a 409: it did not start
    mono.now += 0.5
    assert not admission.ticket(parsed(cache, "a/a2")).admitted  # a1 is first in line again
    assert admission.ticket(parsed(cache, "a/a1")).admitted  # at once, not after RESERVATION_TTL


def test_an_unreleased_reservation_holds_the_slot_until_it_expires() -> None:
    admission, cache, mono = setup(body("a1"), body("a2"), max_running_jobs=1)
    assert admission.ticket(parsed(cache, "a/a1")).admitted
    mono.now += RESERVATION_TTL - 1
    assert not admission.ticket(parsed(cache, "a/a1")).admitted
    mono.now += 2
    assert admission.ticket(parsed(cache, "a/a1")).admitted


def test_priority_is_capped_by_the_platform() -> None:
    low = body("low", ns="ns-low", priority=0)
    high = body("greedy-high", ns="ns-greedy", priority=1000)  # created after low
    admission, cache, _ = setup(low, high, max_running_jobs=1, namespace_max_priority=(("ns-greedy", 0),))
    assert admission.ticket(parsed(cache, "ns-greedy/greedy-high")).admitted is False  # capped to 0: FIFO decides
    assert admission.ticket(parsed(cache, "ns-low/low")).admitted
    uncapped, cache, _ = setup(low, high, max_running_jobs=1)
    assert uncapped.ticket(parsed(cache, "ns-greedy/greedy-high")).admitted  # without the cap it jumps ahead


def test_a_suspended_started_job_holds_no_slot() -> None:
    # suspending clears startTime (core.decide): the job is neither running nor waiting
    admission, cache, _ = setup(body("a1", suspend=True), body("a2"), max_running_jobs=1)
    assert admission.ticket(parsed(cache, "a/a2")).admitted


def test_a_retried_failed_job_waits_for_a_slot_like_a_new_one() -> None:
    running = body("r1", status={"startTime": STARTED})
    retried = body("f1", status=failed_status())
    retried["metadata"]["annotations"] = {"procjob.dev/retry": "now"}
    admission, cache, _ = setup(running, retried, max_running_jobs=1)
    ticket = admission.ticket(parsed(cache, "a/f1"))
    assert not ticket.admitted  # the limit holds for retries too


def test_without_limits_everything_is_admitted() -> None:
    admission, cache, _ = setup(body("a1"))
    assert admission.ticket(parsed(cache, "a/a1")).admitted
    admission.release("a/a1")  # harmless without a reservation


def test_a_free_slot_names_only_the_jobs_it_admits() -> None:
    admission, _, _ = setup(*(body(f"j{i:04d}") for i in range(30)), max_running_jobs=2)
    assert sorted(admission.admissible()) == ["a/j0000", "a/j0001"]


def test_position_refreshes_are_budgeted_nearest_the_front_first_whatever_the_queue_length() -> None:
    # Every admission moves every queued job up: 1,000 queued jobs must not ask for 1,000 writes.
    admission, cache, mono = setup(*(body(f"j{i:04d}") for i in range(1000)), max_running_jobs=2)
    first = admission.stale_positions()
    assert first == [f"a/j{i:04d}" for i in range(2, 2 + POSITION_REFRESH_BUDGET)]  # the two admissible are not
    for key in first:
        ticket = admission.ticket(parsed(cache, key))  # the reconcile writes the position it was given
        assert not ticket.admitted
        assert ticket.queue is not None
        assert ticket.queue.position is not None
    second = admission.stale_positions()
    assert second == [f"a/j{i:04d}" for i in range(2 + POSITION_REFRESH_BUDGET, 2 + 2 * POSITION_REFRESH_BUDGET)]
    assert len(admission.stale_positions(budget=10_000)) == 1000 - 2 - POSITION_REFRESH_BUDGET
    mono.now += 3600
    assert len(admission.stale_positions()) == POSITION_REFRESH_BUDGET


def test_without_limits_nothing_is_due() -> None:
    admission, _, _ = setup(*(body(f"j{i:04d}") for i in range(5)))
    assert admission.admissible() == []
    assert admission.stale_positions() == []
