"""Failpoints for crash tests (PROCJOB_FAILPOINTS, tests only): the process exits at a named line,
as a SIGKILL arriving exactly there would (exit code 137, nothing flushed, nothing cleaned up).

`NAME` exits the first time the line is reached; `NAME@N` the N-th time (the chaos suite picks N
from its seed to crash at a moment it does not choose itself). The reconciler's points:

- `pod-before-create`: the status that records an attempt is written; its pod is not created yet;
- `pod-after-create`: the attempt's pod is created (or adopted); its UID is not yet in the status.

`audit-after-insert` (the relay: records inserted, the status not yet trimmed) is read by
controller.assembly directly and takes no count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

log = logging.getLogger("procjob.failpoints")

EXIT_CODE = 137  # what a shell reports for a SIGKILLed process


def parse(specs: Iterable[str]) -> dict[str, int]:
    """{name: the occurrence that exits} from `NAME` / `NAME@N` items; ValueError on a bad count."""
    armed: dict[str, int] = {}
    for spec in specs:
        name, _, count = spec.strip().partition("@")
        if not name:
            continue
        if count and (not count.isdigit() or int(count) < 1):
            raise ValueError(f"PROCJOB_FAILPOINTS: {spec!r}: the count after @ must be a whole number >= 1")
        armed[name] = int(count) if count else 1
    return armed


class Failpoints:
    def __init__(self, specs: Iterable[str] = (), *, exit: Callable[[int], object] = os._exit) -> None:
        self._armed = parse(specs)
        self._reached: dict[str, int] = {}
        self._exit = exit

    def reach(self, name: str) -> None:
        """Count one pass over the line `name`; exit the process if this is the armed occurrence."""
        target = self._armed.get(name)
        if target is None:
            return
        seen = self._reached[name] = self._reached.get(name, 0) + 1
        if seen == target:
            log.error("failpoint %s: exiting at occurrence %d", name, seen)
            logging.shutdown()
            self._exit(EXIT_CODE)
