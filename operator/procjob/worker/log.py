"""Worker logs: one JSON object per line on stderr, one line per event.

The kubelet keeps a pod's stderr, so that is where a worker reports what it did. Callers pass only
safe values: URLs through `redact_url`, header names but never header values, no credentials.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import httpx


def event(name: str, **fields: object) -> None:
    """Write one log line: ``{"ts": ..., "event": name, **fields}``."""
    record: dict[str, object] = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": name}
    record.update(fields)
    sys.stderr.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
    sys.stderr.flush()


def redact_url(url: str | httpx.URL) -> str:
    """A URL fit for logs and messages: no user info, no query string (signatures live there)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    netloc = parsed.host if ":" not in parsed.host else f"[{parsed.host}]"
    if parsed.port is not None:
        netloc = f"{netloc}:{parsed.port}"
    query = "?<redacted>" if parsed.query else ""
    return f"{parsed.scheme}://{netloc}{parsed.path}{query}"
