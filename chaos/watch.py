"""A list + watch that survives the faults the suite injects (the observer's only way of seeing).

Unlike bench.api's watch, it never gives up: a refused connection (the API server killed), a
stream cut short, a 5xx or 429 while the API server starts, all end in a reconnect after a short
pause (0.1 s doubling to 1 s), resuming from the last resourceVersion seen. Only a 410 Gone (the
version is too old: the API server restarted, or its cache moved past it) forces a re-list, and a
re-list can hide what changed meanwhile: each one is reported to `gap` with the time the stream
was lost and the time the re-list arrived, so the checker knows which moments nobody watched.
Items of a (re-)list are delivered as events of type LISTED.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

Sink = Callable[[float, str, dict[str, Any]], None]
GapSink = Callable[[str, float, float], None]

PAUSE_FIRST, PAUSE_MAX = 0.1, 1.0


class Gone(Exception):
    """410: the resourceVersion is no longer served; re-list."""


class Watch:
    def __init__(self, session: aiohttp.ClientSession, path: str, sink: Sink, gap: GapSink, **params: str) -> None:
        self.session, self.path, self.sink, self.gap, self.params = session, path, sink, gap, params
        self.rv = ""
        self.ready = asyncio.Event()

    async def run(self) -> None:
        lost_at: float | None = None  # when the stream was lost, if a re-list may hide something
        pause = PAUSE_FIRST
        while True:
            try:
                if not self.rv:
                    await self._list()
                    if lost_at is not None:
                        self.gap(self.path, lost_at, time.time())
                        lost_at = None
                await self._stream()
                pause = PAUSE_FIRST  # a clean end (the server's timeout): resume at once
                continue
            except Gone:
                lost_at = lost_at or time.time()
                self.rv = ""
                continue
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError, ServerBusy):
                lost_at = lost_at or time.time()
            await asyncio.sleep(pause)
            pause = min(PAUSE_MAX, pause * 2)

    async def _list(self) -> None:
        params = {**self.params, "limit": "500"}
        items: list[dict[str, Any]] = []
        while True:
            async with self.session.get(self.path, params=params, timeout=aiohttp.ClientTimeout(total=60)) as resp:
                if resp.status >= 300:
                    raise ServerBusy(f"LIST {self.path}: HTTP {resp.status}")
                body = await resp.json(content_type=None)
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            if not meta.get("continue"):
                break
            params["continue"] = meta["continue"]
        now = time.time()
        for item in items:
            self.sink(now, "LISTED", item)
        self.rv = str(meta.get("resourceVersion") or "")
        self.ready.set()

    async def _stream(self) -> None:
        query = {**self.params, "watch": "1", "resourceVersion": self.rv, "allowWatchBookmarks": "true"}
        query["timeoutSeconds"] = "120"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=150)
        async with self.session.get(self.path, params=query, timeout=timeout) as resp:
            if resp.status == 410:
                raise Gone
            if resp.status >= 300:
                raise ServerBusy(f"WATCH {self.path}: HTTP {resp.status}")
            buffer = b""
            async for chunk in resp.content.iter_any():
                now = time.time()
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        self._event(now, json.loads(line))

    def _event(self, now: float, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone
            raise ServerBusy(f"WATCH {self.path}: {obj.get('message')}")
        self.rv = str((obj.get("metadata") or {}).get("resourceVersion") or self.rv)
        if kind != "BOOKMARK":
            self.sink(now, str(kind), obj)


class ServerBusy(Exception):
    """An answer that is not a watch: the API server starting, throttling or failing; try again."""
