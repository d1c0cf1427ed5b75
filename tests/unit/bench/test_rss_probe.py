"""The bench's memory probes: the operator's RSS timeline and the tracemalloc variant's dumps."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tracemalloc
from pathlib import Path

import psutil
import pytest
from bench import operator_variants, operatorproc
from bench.operatorproc import MIB, OperatorProcess
from bench.report import _peak_when


def _process(tmp_path: Path) -> OperatorProcess:
    return OperatorProcess("ns", tmp_path / "operator.log", workers=None, database_url=None)


def test_peak_when_names_the_highest_point_of_the_timeline() -> None:
    assert _peak_when([[10.0, 120.5], [20.0, 310.0], [30.0, 200.0]]) == " (sampled highest 310.0 MiB, 20 s after start)"


@pytest.mark.parametrize("timeline", [None, [], "not a list"])
def test_peak_when_says_nothing_without_a_timeline(timeline: object) -> None:
    assert _peak_when(timeline) == ""


def test_timeline_is_in_mib(tmp_path: Path) -> None:
    proc = _process(tmp_path)
    proc.rss_timeline = [(10.0, 100 * MIB), (20.0, 150 * MIB + MIB // 2), (30.0, 90 * MIB)]
    assert proc.timeline_mib() == [[10.0, 100.0], [20.0, 150.5], [30.0, 90.0]]


def test_the_sampler_keeps_the_highest_sample_of_each_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operatorproc, "SAMPLE_SECONDS", 0.01)
    monkeypatch.setattr(operatorproc, "TIMELINE_SECONDS", 0.05)
    proc = _process(tmp_path)
    proc.ps = psutil.Process(os.getpid())
    sampler = threading.Thread(target=proc._sample, daemon=True)
    sampler.start()
    deadline = time.monotonic() + 10
    while len(proc.rss_timeline) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc._stop.set()
    sampler.join(5)
    points = proc.rss_timeline[:3]
    assert len(points) == 3
    assert [t for t, _ in points] == sorted(t for t, _ in points)
    assert all(0 < rss <= proc.rss_peak for _, rss in points)


def test_a_dump_names_the_allocation_sites_and_the_rss(tmp_path: Path) -> None:
    out = tmp_path / "sites.txt"
    tracemalloc.start(2)
    try:
        kept = [bytearray(1024) for _ in range(2000)]  # ~2 MiB from this line
        operator_variants._dump_allocations(out)
    finally:
        tracemalloc.stop()
    text = out.read_text()
    first = text.splitlines()[0]
    assert first.startswith("traced: ")
    assert "highest" in first
    assert "RSS" in first
    assert "test_rss_probe.py" in text
    assert len(kept) == 2000


def test_rss_reads_this_process() -> None:
    assert 0 < operator_variants._rss_mib() < psutil.virtual_memory().total / MIB


def test_the_peak_watcher_writes_the_sites_once_memory_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sites.txt"
    monkeypatch.setenv(operator_variants.TRACEMALLOC_OUT, str(out))
    monkeypatch.setattr(operator_variants, "PEAK_FLOOR_MIB", 1.0)
    monkeypatch.setattr(operator_variants, "PEAK_STEP_MIB", 1.0)
    monkeypatch.setattr(operator_variants, "PEAK_POLL_SECONDS", 0.01)
    peak = tmp_path / ("sites.txt" + operator_variants.PEAK_SUFFIX)

    async def scenario() -> list[bytearray]:
        watcher = asyncio.create_task(operator_variants._watch_peak())
        kept = [bytearray(1024) for _ in range(4000)]  # ~4 MiB traced
        for _ in range(500):
            if peak.exists():
                break
            await asyncio.sleep(0.01)
        watcher.cancel()
        return kept

    tracemalloc.start(2)
    try:
        kept = asyncio.run(scenario())
    finally:
        tracemalloc.stop()
    assert peak.read_text().startswith("traced: ")
    assert not out.exists()  # the end-of-run file is the harness's (SIGUSR1), not the watcher's
    assert len(kept) == 4000
