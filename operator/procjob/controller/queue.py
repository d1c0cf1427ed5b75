"""A keyed work queue, as client-go's: de-duplicated keys, one worker per key at a time, delays.

Watch events only put a job's key here. A key added while it is being processed is marked dirty
and queued again when its worker is done, so the last event is never lost and two workers never
reconcile the same job at once (the one-writer rule for status).

Two lanes: `urgent` keys (a pod of the job changed, a job's backoff or deadline timer fired) are
served before the others (new jobs, status echoes, queue-position refreshes). In a burst of new
jobs the workers would otherwise admit every new job before they notice that a running job's pod
has finished, and each stage transition would wait behind the whole burst. So that new jobs (and
anything else in the normal lane) are never starved, at most URGENT_STREAK urgent keys are served
in a row while normal keys wait.
"""

from __future__ import annotations

import asyncio
from collections import deque

URGENT_STREAK = 3  # urgent keys served in a row before a waiting normal key gets its turn


class WorkQueue:
    def __init__(self) -> None:
        self._urgent: deque[str] = deque()
        self._normal: deque[str] = deque()
        self._queued: dict[str, bool] = {}  # key -> in the urgent lane
        self._active: set[str] = set()
        self._dirty: dict[str, bool] = {}  # key added while active -> urgent
        self._timers: dict[str, tuple[float, bool, asyncio.TimerHandle]] = {}
        self._wakeup = asyncio.Event()
        self._failures: dict[str, int] = {}
        self._streak = 0  # urgent keys served since the last normal one

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def delayed(self) -> int:
        return len(self._timers)

    def add(self, key: str, *, urgent: bool = False) -> None:
        if key in self._active:
            self._dirty[key] = self._dirty.get(key, False) or urgent
            return
        queued = self._queued.get(key)
        if queued is None:
            self._queued[key] = urgent
            (self._urgent if urgent else self._normal).append(key)
            self._wakeup.set()
        elif urgent and not queued:
            # Promote: its entry in the normal lane is skipped when reached (see _pop).
            self._queued[key] = True
            self._urgent.append(key)

    def add_after(self, key: str, delay: float, *, urgent: bool = False) -> None:
        """Add `key` after `delay` seconds; an earlier pending timer for the key wins."""
        if delay <= 0:
            self.add(key, urgent=urgent)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= due:
                if urgent and not existing[1]:
                    self._timers[key] = (existing[0], True, existing[2])
                return
            existing[2].cancel()
            urgent = urgent or existing[1]
        self._timers[key] = (due, urgent, loop.call_at(due, self._fire, key))

    def _fire(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        self.add(key, urgent=timer is not None and timer[1])

    def add_rate_limited(self, key: str, *, base: float = 0.05, cap: float = 30.0) -> float:
        """Requeue after a failure: base * 2^failures, capped. Returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(cap, base * float(2**failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """The key succeeded: reset its failure backoff."""
        self._failures.pop(key, None)

    def drop(self, key: str) -> None:
        """The object is gone: cancel its timer."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[2].cancel()
        self._failures.pop(key, None)

    def _pop(self) -> str | None:
        lanes = [(self._urgent, True), (self._normal, False)]
        if self._streak >= URGENT_STREAK:
            lanes.reverse()
        for lane, urgent in lanes:
            while lane:
                key = lane.popleft()
                if self._queued.get(key) is urgent:  # else a stale entry: served already, or promoted
                    del self._queued[key]
                    self._streak = self._streak + 1 if urgent else 0
                    return key
        return None

    async def get(self) -> str:
        while (key := self._pop()) is None:
            self._wakeup.clear()
            await self._wakeup.wait()
        self._active.add(key)
        return key

    def done(self, key: str) -> None:
        self._active.discard(key)
        urgent = self._dirty.pop(key, None)
        if urgent is not None:
            self.add(key, urgent=urgent)

    def close(self) -> None:
        for *_, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
