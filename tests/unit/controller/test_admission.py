"""QueueAdmission against a real Cache and fake clocks: the slot rules of a shared cluster — a
reservation released at once when the job did not start, a suspended job gives its slot back, a
retried job queues like a new one, a priority is capped by the platform's settings, and position
refreshes are budgeted whatever the queue's length."""

from __future__ import annotations

from typing import Any

from procjob.adapters.metrics import Metrics
from procjob.controller.admission import RECOMPUTE_INTERVAL, RESERVATION_TTL, QueueAdmission
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


def counting_passes(cache: Cache) -> list[int]:
    """Counts the passes over the cached jobs (each computation of the queue order makes one)."""
    passes = [0]
    outlines = cache.outlines

    def counted() -> list[Any]:
        passes[0] += 1
        return outlines()

    cache.outlines = counted  # type: ignore[method-assign]
    return passes


def test_admissions_from_one_pass_need_no_new_pass() -> None:
    # A pass after every admission made a 10,000-job backlog cost 0.7 of a core (the chaos flood).
    admission, cache, _ = setup(*(body(f"j{i:04d}") for i in range(1000)), max_running_jobs=3)
    passes = counting_passes(cache)
    assert [admission.ticket(parsed(cache, f"a/j{i:04d}")).admitted for i in range(4)] == [True, True, True, False]
    assert passes == [1]
    assert not admission.ticket(parsed(cache, "a/j0003")).admitted  # the three reservations hold
    assert passes == [1]


def test_a_new_job_in_a_full_queue_waits_for_the_next_pass_without_forcing_one() -> None:
    admission, cache, mono = setup(*(body(f"j{i:04d}") for i in range(100)), max_running_jobs=2)
    assert sorted(admission.admissible()) == ["a/j0000", "a/j0001"]  # both slots are spoken for
    passes = counting_passes(cache)
    cache.observe_job(body("zz-late"))
    ticket = admission.ticket(parsed(cache, "a/zz-late"))
    assert (ticket.admitted, passes) == (False, [0])
    assert ticket.queue is not None
    assert ticket.queue.position is None  # not placed yet
    mono.now += RECOMPUTE_INTERVAL
    ticket = admission.ticket(parsed(cache, "a/zz-late"))
    assert ticket.queue is not None
    assert (ticket.queue.position, passes) == (99, [1])  # behind the 98 that wait (the 2 admissible leave the queue)


def test_a_new_job_starts_at_once_while_its_namespace_and_the_cluster_have_a_spare_slot() -> None:
    admission, cache, _ = setup(body("a1"), body("b1", ns="b"), max_running_jobs=3, max_running_jobs_per_namespace=1)
    assert sorted(admission.admissible()) == ["a/a1", "b/b1"]  # one spare slot, but not for a or b
    passes = counting_passes(cache)
    cache.observe_job(body("a2"))
    assert not admission.ticket(parsed(cache, "a/a2")).admitted  # a is full: no pass forced
    assert passes == [0]
    cache.observe_job(body("c1", ns="c"))
    assert admission.ticket(parsed(cache, "c/c1")).admitted  # c has room: a pass at once, and it starts
    assert passes == [1]


def test_a_queued_jobs_place_counts_only_the_jobs_ahead_that_will_not_start_now() -> None:
    admission, cache, _ = setup(*(body(f"j{i:04d}") for i in range(5)), max_running_jobs=2)
    passes = counting_passes(cache)
    assert admission.ticket(parsed(cache, "a/j0000")).admitted
    waiting = admission.ticket(parsed(cache, "a/j0002"))  # j0001 is chosen too, not admitted yet
    assert waiting.queue is not None
    assert (waiting.admitted, waiting.queue.position, passes) == (False, 1, [1])
    assert admission.ticket(parsed(cache, "a/j0001")).admitted
    later = admission.ticket(parsed(cache, "a/j0004"))
    assert later.queue is not None
    assert (later.queue.position, passes) == (3, [1])
