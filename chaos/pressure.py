"""How long the machine kept runnable work waiting for a CPU: Linux's pressure stall information.

`/proc/pressure/cpu`'s `some total=` counts the microseconds during which at least one runnable
task waited for a CPU. The driver samples it every half second (`sample`, `Sampler`); a takeover's
bound gets, as its scheduling allowance, the stall the kernel measured in the bound's own window
(`stalled`): nothing on an idle machine, at most the window itself (the bound at most doubles) on
one where every moment something waited. Without PSI (an older kernel, another OS) the allowance is
0 and the bound is the nominal one.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

PSI_CPU = Path("/proc/pressure/cpu")
EVERY = 0.5  # seconds between samples


def sample(path: Path = PSI_CPU) -> float | None:
    """Seconds of CPU stall ('some') since boot, or None without PSI."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            return int(fields["total"]) / 1e6 if "total" in fields else None
    return None


class Sampler:
    """(time, stall seconds) every EVERY seconds while running; `samples` goes into driver.json."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []

    async def run(self) -> None:
        while True:
            value = await asyncio.to_thread(sample)
            if value is None:
                return
            self.samples.append((round(time.time(), 3), round(value, 4)))
            await asyncio.sleep(EVERY)


def _at(samples: list[tuple[float, float]], t: float) -> float | None:
    """The stall counter at time t, interpolated between the samples around it."""
    before = [s for s in samples if s[0] <= t]
    after = [s for s in samples if s[0] >= t]
    if not before or not after:
        return None
    (t0, v0), (t1, v1) = before[-1], after[0]
    return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def stalled(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of CPU stall in [start, end] (0 when the samples do not cover it), at most end - start."""
    first, last = _at(samples, start), _at(samples, end)
    if first is None or last is None:
        return 0.0
    return round(min(max(last - first, 0.0), end - start), 2)
