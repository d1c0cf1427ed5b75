"""Reading the tail of a container's log through the API server (`pods/log`), bounded in memory,
transfer and time, for the log archive.

The API's `limitBytes` counts from the start of the log, so the last bytes cannot be asked for. The
read asks for the last `tail_lines` lines instead (a hint: `max_bytes // 16` lines cover `max_bytes`
unless lines are shorter than 16 bytes on average) and streams them through `TailBuffer`, which
never holds more than `max_bytes` plus one chunk. When the tail window is larger than
`max_transfer` (very long lines), the read stops there and asks again for as many lines as
`max_bytes` holds at the length of the lines seen, so that what is kept is the end of the log. The
whole read of one container ends within `seconds`; a read cut by a bound keeps what it
has and says so (`complete=False`).

Failures: `LogUnavailable` when the API server says the log cannot be read (400: the container
never ran or the node no longer has it; 404: the pod is gone) — retrying will not help. Anything
else (5xx, 429, network, a timeout before any byte) is raised for the caller to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from procjob.adapters.kube import ApiError

LINE_BYTES_HINT = 16  # the average line length assumed when asking for lines to cover max_bytes
TRANSFER_FACTOR = 32  # max_transfer = this many times max_bytes, unless given
MIN_TRANSFER = 16 * 1024 * 1024
NEWLINE = ord("\n")


class LogUnavailable(Exception):
    """The API server says this container's log cannot be read (it never ran, or it is gone)."""


class LogSource(Protocol):
    """What the reader needs of the API client (procjob.adapters.kube.KubeClient)."""

    def stream_pod_log(
        self, namespace: str, name: str, params: dict[str, str], *, seconds: float, chunk: int = ...
    ) -> AsyncGenerator[bytes, None]: ...


@dataclass(frozen=True)
class LogTail:
    """The end of one container's log: `content` (at most the bound), how many bytes were received,
    whether earlier lines may exist that `content` lacks, whether the read reached the end."""

    content: bytes
    received: int
    truncated: bool
    complete: bool


class TailBuffer:
    """The last `limit` bytes of a byte stream, holding at most `limit` plus the chunk being added."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("TailBuffer needs a limit of at least one byte")
        self.limit = limit
        self.received = 0
        self.dropped = 0
        self.newlines = 0
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._last_dropped: int | None = None  # the byte just before what is held, once bytes were dropped

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        self.newlines += chunk.count(b"\n")
        if len(chunk) >= self.limit:
            if len(chunk) > self.limit:
                self._last_dropped = chunk[-self.limit - 1]
            elif self._chunks:
                self._last_dropped = self._chunks[-1][-1]
            self.dropped += self._held + len(chunk) - self.limit
            self._chunks.clear()
            chunk = chunk[-self.limit :]
            self._held = 0
        self._chunks.append(chunk)
        self._held += len(chunk)
        while self._held - len(self._chunks[0]) >= self.limit:
            first = self._chunks.popleft()
            self._held -= len(first)
            self.dropped += len(first)
            self._last_dropped = first[-1]

    def content(self) -> bytes:
        """What is held, cut to `limit`; once bytes were dropped it starts at the first whole line
        (when a line break is held), so that the first line shown is not a fragment."""
        data = b"".join(self._chunks)
        excess = len(data) - self.limit
        before = data[excess - 1] if excess > 0 else self._last_dropped
        data = data[max(0, excess) :]
        if before is not None and before != NEWLINE:
            start = data.find(b"\n")
            if 0 <= start < len(data) - 1:
                data = data[start + 1 :]
        return data


async def read_tail(
    source: LogSource,
    namespace: str,
    pod: str,
    container: str,
    *,
    max_bytes: int,
    seconds: float,
    max_transfer: int | None = None,
) -> LogTail:
    """The end of a container's log, at most `max_bytes`, read within `seconds`."""
    transfer = max_transfer or max(MIN_TRANSFER, TRANSFER_FACTOR * max_bytes)
    lines = max(1, max_bytes // LINE_BYTES_HINT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    buffer, complete = await _read(source, namespace, pod, container, lines, max_bytes, transfer, deadline)
    if not complete and buffer.received >= transfer and buffer.newlines:
        # Long lines: ask for as many as max_bytes holds at the length seen, so the end is kept.
        fewer = max(1, min(lines - 1, max_bytes * buffer.newlines // buffer.received))
        again, done = await _read(source, namespace, pod, container, fewer, max_bytes, transfer, deadline)
        if again.received:
            buffer, complete, lines = again, done, fewer
    truncated = buffer.dropped > 0 or buffer.newlines >= lines or not complete
    return LogTail(buffer.content(), buffer.received, truncated, complete)


async def _read(
    source: LogSource,
    namespace: str,
    pod: str,
    container: str,
    lines: int,
    max_bytes: int,
    transfer: int,
    deadline: float,
) -> tuple[TailBuffer, bool]:
    """One request: (the buffer, whether the stream reached its end before a bound)."""
    buffer = TailBuffer(max_bytes)
    params = {"container": container, "tailLines": str(lines)}
    remaining = max(0.001, deadline - asyncio.get_running_loop().time())
    try:
        async with asyncio.timeout(remaining):
            stream = source.stream_pod_log(namespace, pod, params, seconds=remaining)
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    buffer.feed(chunk)
                    if buffer.received >= transfer:
                        return buffer, False
    except ApiError as exc:
        if exc.status in (400, 404):
            raise LogUnavailable(f"{exc.status} {exc.reason}: {exc.message}") from None
        raise
    except TimeoutError:
        if not buffer.received:
            raise
        return buffer, False
    return buffer, True
