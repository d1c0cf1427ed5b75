"""Leader election's rules, pure (the I/O is in adapters.lease, the loop in controller.leadership).

client-go's model, clocks included. Times here are seconds on the deciding replica's own monotonic
clock, never another replica's timestamps: clocks of different nodes disagree, but they run at the
same rate.

- A candidate may take the Lease when nobody holds it, when it holds it already, or when the
  Lease has not changed for its duration *as this candidate observed it*: the expiry counts from
  the moment the candidate first saw the current version, not from the renewTime the holder wrote.
- A leader may write only while its last successful renewal — counted from when that renewal was
  sent — is younger than its renew deadline; past it, it must stop at once (client-go exits). The
  renew deadline is shorter than the lease, and a candidate saw the renewal no earlier than it
  was sent, so the leader has stopped before anyone else may take the Lease: two writers never
  overlap. (The status writes' resourceVersion preconditions are the second fence.)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime

from procjob.models.lease import LeaseRecord


@dataclass(frozen=True, slots=True)
class Observed:
    """The Lease as a candidate last read it, and since when (its own clock) it has looked so."""

    record: LeaseRecord | None
    since: float


def observe(previous: Observed | None, record: LeaseRecord | None, now: float) -> Observed:
    """The new observation: unchanged (the same resourceVersion) keeps its time; any write to the
    Lease — a renewal, a new holder — restarts the count."""
    if previous is not None and previous.record == record:
        return previous
    return Observed(record, now)


def may_take(observed: Observed, me: str, now: float) -> bool:
    """Whether `me` may write itself into the Lease now."""
    record = observed.record
    if record is None or not record.holder or record.holder == me:
        return True
    return now >= observed.since + record.duration_seconds


def lease_seconds(lease: float) -> int:
    """leaseDurationSeconds (an integer): a fractional lease rounds up — others wait longer, never less."""
    return max(1, math.ceil(lease))


def may_write(renewed: float | None, renew_deadline: float, now: float) -> bool:
    """Whether a leader whose last successful renewal was sent at `renewed` (None: never, or
    leadership given up) may still write at `now`."""
    return renewed is not None and now < renewed + renew_deadline


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


def released(record: LeaseRecord, now: datetime) -> LeaseRecord:
    """The Lease given up by a leader that stopped writing (client-go's ReleaseOnCancel): no
    holder, so a standby takes it at its next try instead of waiting out the lease."""
    return dataclasses.replace(record, holder="", renew_time=now, acquire_time=now, duration_seconds=1)
