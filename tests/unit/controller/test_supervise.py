"""supervise(): a loop that raises is logged, counted and restarted with a capped backoff; liveness
fails only while a loop keeps crashing within the window. Fake clock and sleep: no real waiting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from procjob.adapters.metrics import Metrics
from procjob.controller.supervise import Loops, supervise


class FakeTime:
    """A monotonic clock that only `sleep` moves; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def sample(metrics: Metrics, name: str, loop: str) -> float:
    return metrics.registry.get_sample_value(name, {"loop": loop}) or 0.0


def crashing(times: int, then: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], Coroutine[Any, Any, None]]:
    """A factory whose first `times` coroutines raise, then `then()`."""
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise RuntimeError(f"crash {calls}")
        await then()

    return body


async def forever() -> None:
    await asyncio.Event().wait()


async def done() -> None:
    return None


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def loops(fake: FakeTime) -> Loops:
    return Loops(clock=fake.clock, window=300, max_crashes=5)


async def run_until_blocked(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.create_task(coro)
    for _ in range(50):
        await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_crashing_loop_is_logged_counted_and_restarted_with_a_growing_capped_delay(
    fake: FakeTime, loops: Loops, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    caplog.set_level(logging.ERROR, logger="procjob.supervise")
    factory = crashing(4, forever)
    task = await run_until_blocked(
        supervise("relay", factory, loops=loops, metrics=metrics, restart_delay=1, max_delay=5, sleep=fake.sleep)
    )
    assert fake.sleeps == [1, 2, 4, 5], "doubling, capped at max_delay"
    assert sample(metrics, "procjob_loop_restarts_total", "relay") == 4
    assert sample(metrics, "procjob_loop_up", "relay") == 1, "running again"
    assert loops.state("relay").running
    assert loops.state("relay").last_error == "RuntimeError: crash 4"
    assert sum("loop relay crashed" in r.getMessage() for r in caplog.records) == 4
    assert all(r.exc_info for r in caplog.records), "with the traceback"
    assert loops.live() == (True, "1 loops running"), "four crashes in the window are not a crash loop yet"
    await stop(task)
    assert not loops.state("relay").running
    assert sample(metrics, "procjob_loop_up", "relay") == 0


async def test_a_loop_that_keeps_crashing_within_the_window_is_not_live_until_it_calms_down(
    fake: FakeTime, loops: Loops
) -> None:
    task = await run_until_blocked(
        supervise("relay", crashing(5, forever), loops=loops, metrics=Metrics(), max_delay=1, sleep=fake.sleep)
    )
    live, why = loops.live()
    assert not live
    assert why == "loop relay crashed 5 times in 300s (last: RuntimeError: crash 5)"
    fake.now += 301
    assert loops.live()[0], "crashes older than the window are forgotten"
    await stop(task)


async def test_a_must_run_loop_that_returns_is_restarted_like_a_crash(fake: FakeTime, loops: Loops) -> None:
    metrics = Metrics()
    factory = crashing(0, done)
    task = await run_until_blocked(supervise("gauges", factory, loops=loops, metrics=metrics, sleep=fake.sleep))
    assert sample(metrics, "procjob_loop_restarts_total", "gauges") >= 5
    assert loops.state("gauges").last_error == "returned, but it must run until the operator stops"
    assert not loops.live()[0]
    await stop(task)


async def test_a_one_shot_task_that_returns_is_finished_and_live(fake: FakeTime, loops: Loops) -> None:
    metrics = Metrics()
    await supervise("migrate", crashing(2, done), loops=loops, metrics=metrics, must_run=False, sleep=fake.sleep)
    state = loops.state("migrate")
    assert state.finished
    assert state.starts == 3
    assert not state.running
    assert loops.live() == (True, "0 loops running")


async def test_cancellation_passes_through_at_once_and_is_not_a_crash(fake: FakeTime, loops: Loops) -> None:
    metrics = Metrics()
    task = await run_until_blocked(supervise("relay", forever, loops=loops, metrics=metrics, sleep=fake.sleep))
    await stop(task)
    assert fake.sleeps == []
    assert sample(metrics, "procjob_loop_restarts_total", "relay") == 0
    assert not loops.state("relay").crashes
