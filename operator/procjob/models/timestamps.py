"""Kubernetes timestamps: one parser for every layer (core.timefmt re-exports it)."""

from __future__ import annotations

from datetime import datetime


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 as Kubernetes writes it (`...Z`) to an aware datetime; None for none."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
