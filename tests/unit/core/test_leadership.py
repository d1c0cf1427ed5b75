"""The rules of taking a Lease (client-go's): free, ours, or expired; a new holder is a transition."""

from __future__ import annotations

from datetime import timedelta

from procjob.core.leadership import claimed, may_take
from procjob.models.lease import LeaseRecord
from tests.unit.core.builders import NOW as START


def test_the_rules_of_taking_a_lease() -> None:
    now = START
    held = LeaseRecord("a", now, 15, 0, now, "1")
    assert may_take(None, "b", now)
    assert may_take(held, "a", now)
    assert not may_take(held, "b", now + timedelta(seconds=14))
    assert may_take(held, "b", now + timedelta(seconds=15))
    assert may_take(LeaseRecord(None, None, 15), "b", now)
    assert may_take(LeaseRecord("a", None, 15), "b", now)
    assert claimed(None, "a", now, 15) == LeaseRecord("a", now, 15, 0, now)
    renewed = claimed(held, "a", now + timedelta(seconds=2), 15)
    assert (renewed.holder, renewed.transitions, renewed.acquire_time) == ("a", 0, now)
    taken = claimed(held, "b", now + timedelta(seconds=20), 15)
    assert (taken.holder, taken.transitions) == ("b", 1)
