"""Small, pure time helpers (no clock: every `now` is passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from procjob.models.timestamps import parse_time

__all__ = ["earliest", "human_duration", "parse_time", "utc"]  # parse_time is models.timestamps


def human_duration(delta: timedelta) -> str:
    """`45s`, `3m07s`, `2h05m`, `3d04h` — the style kubectl uses."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def earliest(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
