"""A coordination.k8s.io/v1 Lease as the leader election reads it (adapters.lease does the I/O,
core.leadership the rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

LEASE_NAME = "procjob-operator"  # the Lease's default name (--leader-election-lease-name)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str | None
    renew_time: datetime | None
    duration_seconds: int
    transitions: int = 0
    acquire_time: datetime | None = None
    resource_version: str | None = None  # None: the Lease does not exist yet
