"""Choosing the jobs a fault deletes mid-stage: waited for when none runs at that moment."""

from __future__ import annotations

from chaos.faults import wait_for_victims


async def test_jobs_to_delete_are_waited_for_when_none_runs_yet() -> None:
    calls = iter([[], [], [{"n": 1}], [{"n": 1}, {"n": 2}]])
    assert await wait_for_victims(lambda: next(calls), 2, within=5, enough_after=5) == [{"n": 1}, {"n": 2}]
    assert await wait_for_victims(lambda: [{"n": 1}], 2, within=5, enough_after=0) == [{"n": 1}]
    assert await wait_for_victims(list, 2, within=0, enough_after=0) == []
