"""The keyed work queue: de-duplication, one worker per key, dirty re-queue, three lanes taking weighted turns,
timers."""

from __future__ import annotations

import asyncio

import pytest

from procjob.controller.queue import TURNS, Lane, WorkQueue


async def drain(queue: WorkQueue) -> list[str]:
    """Every key ready now, in service order (each marked done at once)."""
    served = []
    while len(queue):
        key = await asyncio.wait_for(queue.get(), 1)
        queue.done(key)
        served.append(key)
    return served


async def test_keys_are_deduplicated_and_served_fifo() -> None:
    queue = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert len(queue) == 3
    assert await drain(queue) == ["a", "b", "c"]


async def test_urgent_keys_are_served_before_normal_ones_and_a_promotion_is_served_once() -> None:
    queue = WorkQueue()
    for key in ("new-1", "new-2", "running", "new-3"):
        queue.add(key)
    queue.add("pod-changed", urgent=True)
    queue.add("running", urgent=True)  # queued normal, promoted
    queue.add("new-2")  # already queued: stays where it is
    assert len(queue) == 5
    assert await drain(queue) == ["pod-changed", "running", "new-1", "new-2", "new-3"]
    assert len(queue) == 0


async def test_while_every_lane_waits_pod_changes_and_new_jobs_take_turns_and_echoes_get_one_in_seven() -> None:
    queue = WorkQueue()
    for i in range(6):
        queue.add(f"echo-{i}")
        queue.add(f"new-{i}", new=True)
        queue.add(f"pod-{i}", urgent=True)
    served = await drain(queue)
    assert served[:14] == [
        *("pod-0", "new-0", "pod-1", "new-1", "pod-2", "new-2", "echo-0"),
        *("pod-3", "new-3", "pod-4", "new-4", "pod-5", "new-5", "echo-1"),
    ]
    assert served[14:] == [f"echo-{i}" for i in range(2, 6)], "then the lane left, without idle turns"


async def test_the_turns_give_urgent_and_new_keys_three_of_seven_and_the_rest_one() -> None:
    assert len(TURNS) == 7
    assert (TURNS.count(Lane.URGENT), TURNS.count(Lane.NEW), TURNS.count(Lane.NORMAL)) == (3, 3, 1)


async def test_an_empty_lanes_turn_goes_to_the_next_lane_in_order() -> None:
    queue = WorkQueue()
    for i in range(3):
        queue.add(f"echo-{i}")
        queue.add(f"pod-{i}", urgent=True)
    assert await drain(queue) == ["pod-0", "pod-1", "pod-2", "echo-0", "echo-1", "echo-2"]
    queue = WorkQueue()
    for i in range(3):
        queue.add(f"echo-{i}")
        queue.add(f"new-{i}", new=True)
    assert await drain(queue) == ["new-0", "new-1", "new-2", "echo-0", "echo-1", "echo-2"]


@pytest.mark.parametrize("burst", ["urgent", "normal", "urgent and normal"])
@pytest.mark.parametrize("arrives_after", [0, 1, 5, 50])
async def test_a_new_job_in_a_burst_waits_for_at_most_two_other_keys(burst: str, arrives_after: int) -> None:
    """However many pod changes (and echoes) are queued, and whenever the new job comes in."""
    queue = WorkQueue()
    for i in range(200):
        if "urgent" in burst:
            queue.add(f"pod-{i}", urgent=True)
        if "normal" in burst:
            queue.add(f"echo-{i}")
    for _ in range(arrives_after):
        queue.done(await queue.get())
    queue.add("new", new=True)
    served = await drain(queue)
    assert served.index("new") <= 2


@pytest.mark.parametrize("arrives_after", [0, 1, 5, 50])
async def test_a_pod_change_in_a_burst_of_new_jobs_waits_for_at_most_two_other_keys(arrives_after: int) -> None:
    """Admission never starves the transitions of running jobs."""
    queue = WorkQueue()
    for i in range(200):
        queue.add(f"new-{i}", new=True)
        queue.add(f"echo-{i}")
    for _ in range(arrives_after):
        queue.done(await queue.get())
    queue.add("pod", urgent=True)
    served = await drain(queue)
    assert served.index("pod") <= 2


async def test_a_key_moves_only_to_a_faster_lane_and_is_served_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("a", new=True)  # promoted to the new lane
    queue.add("a")  # a slower lane: stays where it is
    queue.add("b", new=True)
    queue.add("b", urgent=True)
    queue.add("b", new=True)
    queue.add("c")
    assert len(queue) == 3
    assert await drain(queue) == ["b", "a", "c"]


async def test_a_served_key_added_again_is_served_once_even_with_a_stale_entry_left() -> None:
    queue = WorkQueue()
    queue.add("x")
    queue.add("y")
    queue.add("x", urgent=True)
    assert await asyncio.wait_for(queue.get(), 1) == "x"
    queue.done("x")
    queue.add("x")  # back in the normal lane; its old (promoted) entry is still in the deque
    assert await drain(queue) == ["x", "y"]


async def test_a_key_added_while_active_is_requeued_once_when_done_keeping_its_urgency() -> None:
    queue = WorkQueue()
    queue.add("busy")
    queue.add("other")
    key = await queue.get()
    assert key == "busy"
    queue.add("busy")
    queue.add("busy", urgent=True)
    queue.add("busy", new=True)
    assert len(queue) == 1, "an active key is not queued twice"
    queue.done("busy")
    assert await drain(queue) == ["busy", "other"]


async def test_get_waits_for_a_key() -> None:
    queue = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.add("late")
    assert await asyncio.wait_for(waiter, 1) == "late"


async def test_timers_the_earlier_wins_and_urgency_is_kept() -> None:
    queue = WorkQueue()
    queue.add("plain")
    queue.add_after("t", 0.05, urgent=True)
    queue.add_after("t", 10)  # later: ignored, the urgent timer stays
    assert queue.delayed == 1
    await asyncio.sleep(0.1)
    assert queue.delayed == 0
    assert await drain(queue) == ["t", "plain"]

    queue.add_after("u", 10)
    queue.add_after("u", 0.02, urgent=True)  # earlier: replaces the pending one
    queue.add("plain")
    await asyncio.sleep(0.06)
    assert await drain(queue) == ["u", "plain"]
    queue.add_after("now", 0)
    assert await drain(queue) == ["now"]


async def test_drop_cancels_the_timer_and_rate_limiting_backs_off_until_forgotten() -> None:
    queue = WorkQueue()
    queue.add_after("gone", 0.02)
    queue.drop("gone")
    await asyncio.sleep(0.05)
    assert len(queue) == 0

    delays = [queue.add_rate_limited("flaky", base=1.0, cap=3.0) for _ in range(4)]
    assert delays == [1.0, 2.0, 3.0, 3.0]
    queue.forget("flaky")
    assert queue.add_rate_limited("flaky", base=1.0) == 1.0
    queue.close()
    assert queue.delayed == 0
