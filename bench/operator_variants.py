"""Experimental operator variants, to measure a recommended fix before anyone edits operator/.

    python -m bench.operator_variants --variants tracemalloc -- run --namespace NS ...

Each variant changes the operator at start-up, from the outside, the way the recommended change to
operator/ would; everything after `--` goes to `procjob` unchanged. The benchmark uses this only
with `bench.run --operator-variants ...`, and labels such results as experiments.

Variants measured here and since adopted in operator/ (their results are in results/*-exp-*):
kopf-lite (kopf's diffbase and progress storages as no-ops: procjob.handlers.NoDiffBase/NoProgress),
slim-cache (no metadata.managedFields in the job cache: procjob.controller.cache.Cache.observe_job),
quiet-events (no Event for routine stage transitions: `procjob run --events important`).

- malloc-trim (a probe): every 10 s, glibc's malloc_trim(0), with the RSS before and after in the
  operator's log: how much of the RSS is memory freed but not returned to the system.
- census (a probe): SIGUSR2 writes `<$BENCH_TRACEMALLOC_OUT>.census`: every container of at least
  500 items alive, its owner (the object and attribute holding it), its length and the deep size of
  what it reaches (each object counted once, largest first).
- tracemalloc (a probe, not a fix): trace allocations; SIGUSR1 writes the largest allocation sites
  still alive to the file named by $BENCH_TRACEMALLOC_OUT (the harness sends it at the end of the
  measured window). The peak matters more than the end (memory is returned after a burst), so a
  watcher also writes them to `<that file>.peak` each time the traced memory passes its last
  written high by `PEAK_STEP_MIB`: that file ends holding the sites at (near) the peak, with the
  RSS beside the traced total (a large difference is memory outside Python's allocators, or
  fragmentation). The watcher runs between awaits: a spike that rises and falls within one
  synchronous stretch (a big answer decoded and dropped) is not caught, but the dumps' "highest"
  figure shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections import deque
from pathlib import Path
from typing import Any

VARIANTS = ("tracemalloc", "malloc-trim", "census")
TRACEMALLOC_OUT = "BENCH_TRACEMALLOC_OUT"  # where SIGUSR1 writes the top allocation sites
PEAK_SUFFIX = ".peak"  # beside it: the sites at the highest traced memory seen
PEAK_STEP_MIB = 32.0  # a new peak file once the traced memory passes the last one's by this much
PEAK_FLOOR_MIB = 64.0  # below this, no peak file
PEAK_POLL_SECONDS = 1.0
CENSUS_MIN_ITEMS = 500  # census: containers at least this large
CENSUS_OPAQUE = ("Memo", "OperatorSettings", "Operator", "module")  # shared by everything: not counted in
TRIM_SECONDS = 10.0  # malloc-trim: how often
_tasks: set[asyncio.Task[None]] = set()


def apply(variants: list[str]) -> None:
    import kopf  # here, after client_libraries_hidden: as `procjob run` imports it (procjob.cli.kopfimport)

    if "tracemalloc" in variants:
        import tracemalloc

        tracemalloc.start(6)

        @kopf.on.startup()
        async def _tracemalloc(**_: Any) -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_allocations)
            _tasks.add(asyncio.get_running_loop().create_task(_watch_peak()))  # held: the loop keeps weak refs

    if "census" in variants:

        @kopf.on.startup()
        async def _census(**_: Any) -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, _write_census)

    if "malloc-trim" in variants:

        @kopf.on.startup()
        async def _malloc_trim(**_: Any) -> None:
            _tasks.add(asyncio.get_running_loop().create_task(_trim_every(TRIM_SECONDS)))


def _deep_size(obj: Any, seen: set[int], depth: int = 0) -> int:
    if id(obj) in seen or depth > 12 or type(obj).__name__ in CENSUS_OPAQUE:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen, depth + 1) + _deep_size(v, seen, depth + 1) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset | deque):
        size += sum(_deep_size(v, seen, depth + 1) for v in obj)
    elif not isinstance(obj, type):
        try:
            if hasattr(obj, "__dict__"):
                size += _deep_size(vars(obj), seen, depth + 1)
            elif hasattr(obj, "__slots__"):
                size += sum(_deep_size(getattr(obj, n, None), seen, depth + 1) for n in obj.__slots__)
        except Exception:  # a proxy or a half-built object: its own size only
            pass
    return size


def _write_census() -> None:
    """The large containers alive (over CENSUS_MIN_ITEMS items): who holds them, how many items, and
    the deep size of their contents (what is reachable from them and not counted before)."""
    import gc

    gc.collect()
    big = [o for o in gc.get_objects() if isinstance(o, dict | list | set | deque) and len(o) >= CENSUS_MIN_ITEMS]
    owners: dict[int, str] = {}
    for obj in gc.get_objects():
        try:
            attrs = obj.__dict__ if not isinstance(obj, type) else None
        except Exception:  # a proxy or a half-built object: not an owner worth naming
            continue
        if isinstance(attrs, dict):
            for name, value in attrs.items():
                if isinstance(value, dict | list | set | deque) and len(value) >= CENSUS_MIN_ITEMS:
                    owners[id(value)] = f"{type(obj).__module__}.{type(obj).__qualname__}.{name}"
    seen: set[int] = set()
    rows = []
    for obj in sorted(big, key=len, reverse=True):
        sample = next(iter(obj.items() if isinstance(obj, dict) else obj), None)
        rows.append((_deep_size(obj, seen), len(obj), owners.get(id(obj), type(obj).__name__), repr(sample)[:160]))
    lines = [f"RSS {_rss_mib():.1f} MiB; containers of >= {CENSUS_MIN_ITEMS} items: {len(big)}"]
    lines += [
        f"{size / 2**20:8.2f} MiB {n:8d} items  {owner}  e.g. {sample}"
        for size, n, owner, sample in sorted(rows, reverse=True)
    ]
    Path(str(_out()) + ".census").write_text("\n".join(lines) + "\n")


async def _trim_every(seconds: float) -> None:
    """Return glibc's free heap pages to the system every `seconds`, logging the RSS before and after:
    what the difference is, memory freed but held (fragmentation), not memory in use."""
    import ctypes
    import logging

    libc = ctypes.CDLL("libc.so.6")
    log = logging.getLogger("bench.variants")
    while True:
        await asyncio.sleep(seconds)
        before = _rss_mib()
        libc.malloc_trim(0)
        log.info("malloc-trim: RSS %.1f -> %.1f MiB", before, _rss_mib())


def _out() -> Path:
    return Path(os.environ.get(TRACEMALLOC_OUT, "tracemalloc.txt"))


def _rss_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _watch_peak() -> None:
    import tracemalloc

    written = PEAK_FLOOR_MIB - PEAK_STEP_MIB
    while True:
        await asyncio.sleep(PEAK_POLL_SECONDS)
        current = tracemalloc.get_traced_memory()[0] / 2**20
        if current >= written + PEAK_STEP_MIB:
            written = current
            _dump_allocations(_out().with_name(_out().name + PEAK_SUFFIX))


def _dump_allocations(out: Path | None = None) -> None:
    import tracemalloc

    current, peak = (v / 2**20 for v in tracemalloc.get_traced_memory())
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    lines = [
        f"traced: {sum(s.size for s in snapshot.statistics('filename')) / 2**20:.1f} MiB "
        f"(now {current:.1f}, highest {peak:.1f}); RSS {_rss_mib():.1f} MiB"
    ]
    for stat in snapshot.statistics("lineno")[:25]:
        lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} blocks  {stat.traceback[0]}")
    lines.append("")
    for stat in snapshot.statistics("traceback")[:8]:
        lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} blocks")
        lines.extend(f"    {frame}" for frame in stat.traceback.format(limit=6))
    (out or _out()).write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    rest = args[args.index("--") + 1 :] if "--" in args else []
    own = args[: args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(prog="python -m bench.operator_variants", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="", help=f"comma-separated: {', '.join(VARIANTS)}")
    chosen = [v for v in parser.parse_args(own).variants.split(",") if v]
    unknown = set(chosen) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    from procjob.cli.kopfimport import client_libraries_hidden
    from procjob.cli.main import main as procjob_main

    with client_libraries_hidden():
        apply(chosen)

    return procjob_main(rest)


if __name__ == "__main__":
    sys.exit(main())
