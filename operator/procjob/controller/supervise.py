"""Supervision of the operator's long-lived loops: restarted when they raise; liveness from that.

A loop started with `asyncio.create_task` that raises is over for good, and nothing says so until
something downstream starves (the audit relay died that way: every outbox filled). `supervise()`
runs a loop from its factory; when the coroutine raises, the exception is logged with its traceback,
counted in `procjob_loop_restarts_total{loop=…}`, and the loop starts again after a capped,
growing delay (`restart_delay` doubling per crash within the window, at most `max_delay`).
`procjob_loop_up{loop=…}` is 1 while it runs.

`Loops` keeps each loop's state and answers /healthz: not live while some loop crashed
`max_crashes` times within `window` seconds (restarting the process is then the better cure, and
it makes the crash loop visible); live otherwise, including while a loop waits to restart after an
occasional crash. Loop names are fixed by the code (bounded metric labels).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from procjob.adapters.metrics import Metrics

log = logging.getLogger("procjob.supervise")

RESTART_DELAY = 1.0
MAX_DELAY = 60.0
CRASH_WINDOW = 300.0
MAX_CRASHES = 5


@dataclass
class LoopState:
    """What is known of one supervised loop."""

    name: str
    running: bool = False
    finished: bool = False  # a one-shot loop that returned (must_run=False)
    starts: int = 0
    crashes: deque[float] = field(default_factory=deque)  # clock() of recent crashes
    last_error: str | None = None


class Loops:
    """The supervised loops of one process, and whether they are live."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        window: float = CRASH_WINDOW,
        max_crashes: int = MAX_CRASHES,
    ) -> None:
        self.clock = clock
        self.window = window
        self.max_crashes = max_crashes
        self._states: dict[str, LoopState] = {}

    def state(self, name: str) -> LoopState:
        return self._states.setdefault(name, LoopState(name))

    def recent_crashes(self, name: str) -> int:
        """Crashes of the loop within the window (older ones are dropped)."""
        crashes = self.state(name).crashes
        while crashes and crashes[0] <= self.clock() - self.window:
            crashes.popleft()
        return len(crashes)

    def live(self) -> tuple[bool, str]:
        """(live, why) for /healthz."""
        failing = [s for s in self._states.values() if self.recent_crashes(s.name) >= self.max_crashes]
        if failing:
            return False, "; ".join(
                f"loop {s.name} crashed {len(s.crashes)} times in {self.window:.0f}s (last: {s.last_error})"
                for s in failing
            )
        running = sum(1 for s in self._states.values() if s.running)
        return True, f"{running} loops running"

    def crashed(self, name: str, error: str) -> int:
        """Record a crash; return the crashes within the window, this one included."""
        state = self.state(name)
        state.crashes.append(self.clock())
        state.last_error = error
        return self.recent_crashes(name)


async def supervise(
    name: str,
    factory: Callable[[], Coroutine[Any, Any, None]],
    *,
    loops: Loops,
    metrics: Metrics,
    restart_delay: float = RESTART_DELAY,
    max_delay: float = MAX_DELAY,
    must_run: bool = True,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `factory()` until cancelled, restarting it when it raises.

    `must_run=True` (a loop that should never end): returning is a crash too. `must_run=False` (a
    one-shot task such as applying migrations): returning ends the supervision, as finished.
    Cancellation (shutdown) is passed through at once.
    """
    state = loops.state(name)
    up = metrics.loop_up.labels(loop=name)
    while True:
        state.running, state.starts = True, state.starts + 1
        up.set(1)
        try:
            await factory()
        except Exception as exc:
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            log.exception("loop %s crashed; restarting it", name)
        else:
            if not must_run:
                state.finished = True
                return
            error = "returned, but it must run until the operator stops"
            log.error("loop %s %s; restarting it", name, error)
        finally:
            state.running = False
            up.set(0)
        crashes = loops.crashed(name, error)
        metrics.loop_restarts.labels(loop=name).inc()
        await sleep(min(max_delay, restart_delay * 2 ** max(0, crashes - 1)))
