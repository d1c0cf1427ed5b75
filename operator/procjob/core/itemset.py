"""Sets of item indexes as short text, the way batch/v1 Indexed Jobs write completedIndexes: `1,3-5,7`.

Pure and bounded: parsing reads at most MAX_ITEMS indexes (anything else in a hand-edited status is
dropped, never a crash), and the text of any set of MAX_ITEMS indexes fits the status field.
"""

from __future__ import annotations

from collections.abc import Iterable

from procjob.models.fanout import MAX_ITEMS


def parse(text: str) -> set[int]:
    """The indexes `text` names; parts that are not `N` or `N-M` within 0..MAX_ITEMS-1 are ignored."""
    found: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            continue
        first, last = int(low), int(high) if dash else int(low)
        found.update(range(first, min(last, MAX_ITEMS - 1) + 1))
    return found


def render(indexes: Iterable[int]) -> str:
    """`1,3-5,7`: runs of consecutive indexes as ranges, in order."""
    parts: list[str] = []
    run: list[int] = []
    for index in sorted(set(indexes)):
        if run and index == run[-1] + 1:
            run.append(index)
            continue
        if run:
            parts.append(_run(run))
        run = [index]
    if run:
        parts.append(_run(run))
    return ",".join(parts)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
