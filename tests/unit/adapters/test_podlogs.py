"""The tail of a container's log: a ring buffer that never holds more than its bound, and the read
that asks the API for lines, stops at its transfer and time bounds, and sorts failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import pytest

from procjob.adapters.kube import ApiError, NotFound
from procjob.adapters.podlogs import LogUnavailable, TailBuffer, read_tail


def lines(count: int, width: int = 10) -> bytes:
    """`count` lines of exactly `width` bytes (newline included), numbered."""
    return b"".join(f"{i:0{width - 1}d}\n".encode() for i in range(count))


class FakeSource:
    """pods/log as the API serves it: the last `tailLines` lines of `log`, in chunks."""

    def __init__(
        self, log: bytes = b"", *, chunk: int = 1000, error: Exception | None = None, stall_after: int | None = None
    ) -> None:
        self.log = log
        self.chunk = chunk
        self.error = error
        self.stall_after = stall_after  # bytes sent before the stream hangs
        self.calls: list[dict[str, str]] = []
        self.closed = 0

    async def stream_pod_log(
        self, namespace: str, name: str, params: dict[str, str], *, seconds: float, chunk: int = 65536
    ) -> AsyncGenerator[bytes, None]:
        self.calls.append(dict(params, _where=f"{namespace}/{name}"))
        if self.error is not None:
            raise self.error
        kept = self.log.splitlines(keepends=True)[-int(params["tailLines"]) :]
        data = b"".join(kept)
        try:
            for start in range(0, len(data), self.chunk):
                if self.stall_after is not None and start >= self.stall_after:
                    await asyncio.sleep(3600)
                yield data[start : start + self.chunk]
        finally:
            self.closed += 1


def test_the_buffer_keeps_the_last_bytes_from_the_first_whole_line() -> None:
    buffer = TailBuffer(25)
    for _ in range(10):
        buffer.feed(b"abcd\nefgh\n")
        assert buffer._held - len(buffer._chunks[-1]) < buffer.limit  # never a chunk more than needed
    assert buffer.received == 100
    assert buffer.newlines == 20
    assert buffer.dropped == 100 - buffer._held
    assert buffer.content() == b"efgh\nabcd\nefgh\nabcd\nefgh\n"  # the last 25 bytes begin with a whole line
    buffer.feed(b"ab")
    assert buffer.content() == b"abcd\nefgh\nabcd\nefgh\nab"  # the fragment "gh\n" before it goes


@pytest.mark.parametrize(
    ("feeds", "expected"),
    [
        pytest.param([b"short\n"], b"short\n", id="a log under the bound is kept whole"),
        pytest.param([b"x" * 30], b"x" * 10, id="a chunk over the bound keeps its last bytes"),
        pytest.param([b"0123456789"], b"0123456789", id="a chunk of exactly the bound is kept"),
        pytest.param([b"ab\n", b"y" * 10], b"y" * 10, id="a big chunk after a small one replaces it"),
        pytest.param([b"no newline at all, long"], b"e at all, long"[-10:], id="without a line break the cut stays"),
        pytest.param([b"x" * 9 + b"\n", b"z"], b"z", id="the fragment before the first line break goes"),
        pytest.param([b"x" * 20 + b"\n"], b"xxxxxxxxx\n", id="a line break that is the last byte keeps the line"),
    ],
)
def test_the_buffer(feeds: list[bytes], expected: bytes) -> None:
    buffer = TailBuffer(10)
    for chunk in feeds:
        buffer.feed(chunk)
    assert buffer.content() == expected


def test_a_buffer_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        TailBuffer(0)


async def test_a_short_log_is_read_whole() -> None:
    source = FakeSource(b"hello\nworld\n")
    tail = await read_tail(source, "ns", "pod", "main", max_bytes=1024, seconds=5)
    assert (tail.content, tail.received, tail.truncated, tail.complete) == (b"hello\nworld\n", 12, False, True)
    assert source.calls == [{"container": "main", "tailLines": "64", "_where": "ns/pod"}]


async def test_a_long_log_keeps_its_end() -> None:
    source = FakeSource(lines(5000), chunk=4096)
    tail = await read_tail(source, "ns", "pod", "main", max_bytes=1600, seconds=5)
    assert source.calls[0]["tailLines"] == "100"  # 1600 bytes / 16
    assert tail.content == lines(5000)[-1000:]  # the last 100 lines of 10 bytes are 1000 bytes
    assert tail.truncated  # as many lines as asked for: earlier ones may exist
    assert tail.complete


async def test_short_lines_fill_the_bound_with_whole_lines() -> None:
    source = FakeSource(lines(5000, width=40), chunk=333)
    tail = await read_tail(source, "ns", "pod", "main", max_bytes=1600, seconds=5)
    assert tail.content == lines(5000, width=40)[-1600:]
    assert tail.received == 4000
    assert tail.truncated


async def test_long_lines_past_the_transfer_bound_are_asked_for_again_in_fewer_lines() -> None:
    log = lines(3000, width=1000)  # 100 lines asked for (1600 / 16) would be 100 kB
    source = FakeSource(log, chunk=1000)
    tail = await read_tail(source, "ns", "pod", "main", max_bytes=1600, seconds=5, max_transfer=20_000)
    assert [c["tailLines"] for c in source.calls] == ["100", "1"]
    assert tail.content == log[-1000:]  # the last line: the end of the log, not the start of the window
    assert tail.complete
    assert source.closed == 2  # the first stream was closed when the bound stopped it


async def test_one_endless_line_stops_at_the_transfer_bound() -> None:
    source = FakeSource(b"x" * 100_000, chunk=1000)
    tail = await read_tail(source, "ns", "pod", "main", max_bytes=1600, seconds=5, max_transfer=10_000)
    assert len(source.calls) == 1  # no line break seen: asking for fewer lines cannot help
    assert (len(tail.content), tail.received, tail.truncated, tail.complete) == (1600, 10_000, True, False)


async def test_a_read_cut_by_its_time_bound_keeps_what_it_has() -> None:
    source = FakeSource(lines(100), chunk=100, stall_after=300)
    tail = await read_tail(source, "ns", "pod", "main", max_bytes=4096, seconds=0.2)
    assert tail.content == lines(100)[:300]
    assert (tail.truncated, tail.complete) == (True, False)


async def test_a_read_that_gets_nothing_in_time_raises() -> None:
    source = FakeSource(lines(100), stall_after=0)
    with pytest.raises(TimeoutError):
        await read_tail(source, "ns", "pod", "main", max_bytes=4096, seconds=0.1)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        pytest.param(ApiError(400, "BadRequest", 'container "main" is waiting to start'), True, id="400 unavailable"),
        pytest.param(NotFound(404, "NotFound", 'pods "p" not found'), True, id="404 the pod is gone"),
        pytest.param(ApiError(500, "InternalError", "dial tcp: i/o timeout"), False, id="500 retried"),
        pytest.param(ApiError(429, "TooManyRequests", "slow down"), False, id="429 retried"),
    ],
)
async def test_failures_are_sorted(error: ApiError, unavailable: bool) -> None:
    source = FakeSource(error=error)
    expected: Callable[..., object] = LogUnavailable if unavailable else ApiError
    with pytest.raises(expected) as raised:  # type: ignore[call-overload]
        await read_tail(source, "ns", "pod", "main", max_bytes=4096, seconds=1)
    assert error.message in str(raised.value)
