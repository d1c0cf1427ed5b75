"""Leader election's rules, pure (the I/O is in adapters.lease, the loop in controller.leadership).

client-go's model: a candidate may take the Lease when nobody holds it, when it already holds it,
or when the holder has not renewed it for its duration. A leader that cannot renew within its
renew deadline must stop at once, before another candidate can take the Lease — so two leaders
never act at the same time (the status writes' resourceVersion preconditions are the second fence).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from procjob.models.lease import LeaseRecord


def may_take(record: LeaseRecord | None, me: str, now: datetime) -> bool:
    """Whether `me` may write itself into the Lease now."""
    if record is None or not record.holder or record.holder == me:
        return True
    if record.renew_time is None:
        return True
    return now >= record.renew_time + timedelta(seconds=record.duration_seconds)


def claimed(record: LeaseRecord | None, me: str, now: datetime, duration_seconds: int) -> LeaseRecord:
    """The Lease with `me` as holder, renewed now; a change of holder counts as a transition."""
    if record is None:
        return LeaseRecord(me, now, duration_seconds, 0, now)
    if record.holder == me:
        return dataclasses.replace(record, renew_time=now, duration_seconds=duration_seconds)
    return dataclasses.replace(
        record,
        holder=me,
        renew_time=now,
        acquire_time=now,
        duration_seconds=duration_seconds,
        transitions=record.transitions + 1,
    )
