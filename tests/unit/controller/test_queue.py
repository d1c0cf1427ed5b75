"""The keyed work queue: de-duplication, one worker per key, dirty re-queue, two lanes, timers."""

from __future__ import annotations

import asyncio

from procjob.controller.queue import URGENT_STREAK, WorkQueue


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


async def test_normal_keys_get_a_turn_after_a_streak_of_urgent_ones() -> None:
    queue = WorkQueue()
    queue.add("new-1")
    queue.add("new-2")
    for i in range(2 * URGENT_STREAK + 1):
        queue.add(f"pod-{i}", urgent=True)
    served = await drain(queue)
    urgent = [f"pod-{i}" for i in range(2 * URGENT_STREAK + 1)]
    assert served == [*urgent[:URGENT_STREAK], "new-1", *urgent[URGENT_STREAK : 2 * URGENT_STREAK], "new-2", urgent[-1]]


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
