"""The rules of taking a Lease and of writing while leading (client-go's), on the deciding
replica's own clock: free, ours, or unchanged for its duration since we saw it; a leader writes only
within its renew deadline; a new holder is a transition; a released Lease is free."""

from __future__ import annotations

from datetime import timedelta

import pytest

from procjob.core.leadership import Observed, claimed, lease_seconds, may_take, may_write, observe, released
from procjob.models.lease import LeaseRecord
from tests.unit.core.builders import NOW

HELD = LeaseRecord("a", NOW, 15, 0, NOW, "1")
UNRENEWED = LeaseRecord("a", None, 15)
RENEWED = LeaseRecord("a", NOW + timedelta(seconds=2), 15, 0, NOW, "2")


def test_an_unchanged_lease_keeps_the_time_it_was_first_seen() -> None:
    first = observe(None, HELD, 100.0)
    assert first == Observed(HELD, 100.0)
    assert observe(first, HELD, 110.0) is first


def test_any_write_to_the_lease_restarts_the_count() -> None:
    first = observe(None, HELD, 100.0)
    assert observe(first, RENEWED, 102.0) == Observed(RENEWED, 102.0)
    assert observe(first, None, 103.0) == Observed(None, 103.0)


@pytest.mark.parametrize(
    ("case", "observed", "me", "now", "expected"),
    [
        ("no Lease yet: anyone may create it", Observed(None, 0.0), "b", 0.0, True),
        ("a Lease nobody holds", Observed(LeaseRecord(None, None, 15), 0.0), "b", 0.0, True),
        ("a released Lease (holder '')", Observed(LeaseRecord("", NOW, 1), 0.0), "b", 0.0, True),
        ("our own Lease: a renewal", Observed(HELD, 0.0), "a", 0.0, True),
        ("another's, seen 14s ago", Observed(HELD, 100.0), "b", 114.0, False),
        ("another's, unchanged for its 15s", Observed(HELD, 100.0), "b", 115.0, True),
        ("another's without a renewTime counts from when seen", Observed(UNRENEWED, 100.0), "b", 101.0, False),
    ],
)  # fmt: skip
def test_who_may_take_the_lease(case: str, observed: Observed, me: str, now: float, expected: bool) -> None:
    assert may_take(observed, me, now) is expected, case


def test_the_holders_timestamps_do_not_count_only_when_we_saw_them() -> None:
    """Its renewTime says the Lease ran out an hour ago (a clock far behind ours): first seen now,
    it is still the holder's for its whole duration."""
    stale = LeaseRecord("a", NOW - timedelta(hours=1), 15, 0, NOW - timedelta(hours=1), "7")
    seen = observe(None, stale, 500.0)
    assert not may_take(seen, "b", 514.9)
    assert may_take(seen, "b", 515.0)


@pytest.mark.parametrize(
    ("case", "renewed", "now", "expected"),
    [
        ("never led", None, 0.0, False),
        ("just renewed", 100.0, 100.0, True),
        ("within the deadline", 100.0, 109.9, True),
        ("at the deadline", 100.0, 110.0, False),
        ("long past it (woke up from SIGSTOP)", 100.0, 160.0, False),
    ],
)
def test_a_leader_writes_only_within_its_renew_deadline(
    case: str, renewed: float | None, now: float, expected: bool
) -> None:
    assert may_write(renewed, 10.0, now) is expected, case


def test_a_fractional_lease_rounds_up() -> None:
    assert [lease_seconds(x) for x in (15.0, 3.0, 2.5, 0.2)] == [15, 3, 3, 1]


def test_claiming_renewing_taking_and_releasing() -> None:
    assert claimed(None, "a", NOW, 15) == LeaseRecord("a", NOW, 15, 0, NOW)
    renewed = claimed(HELD, "a", NOW + timedelta(seconds=2), 15)
    assert (renewed.holder, renewed.transitions, renewed.acquire_time) == ("a", 0, NOW)
    assert renewed.renew_time == NOW + timedelta(seconds=2)
    later = NOW + timedelta(seconds=20)
    taken = claimed(HELD, "b", later, 15)
    assert (taken.holder, taken.transitions, taken.acquire_time, taken.resource_version) == ("b", 1, later, "1")
    gone = released(HELD, later)
    assert (gone.holder, gone.duration_seconds, gone.renew_time, gone.resource_version) == ("", 1, later, "1")
    assert claimed(gone, "b", later, 15).transitions == 1
