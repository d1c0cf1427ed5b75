"""Experimental operator variants, to measure a recommended fix before anyone edits operator/.

    python -m bench.operator_variants --variants tracemalloc -- run --namespace NS ...

Each variant changes the operator at start-up, from the outside, the way the recommended change to
operator/ would; everything after `--` goes to `procjob` unchanged. The benchmark uses this only
with `bench.run --operator-variants ...`, and labels such results as experiments.

Variants measured here and since adopted in operator/ (their results are in results/*-exp-*):
kopf-lite (kopf's diffbase and progress storages as no-ops: procjob.handlers.NoDiffBase/NoProgress),
slim-cache (no metadata.managedFields in the job cache: procjob.controller.cache.Cache.observe_job),
quiet-events (no Event for routine stage transitions: `procjob run --events important`).

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
from pathlib import Path
from typing import Any

VARIANTS = ("tracemalloc",)
TRACEMALLOC_OUT = "BENCH_TRACEMALLOC_OUT"  # where SIGUSR1 writes the top allocation sites
PEAK_SUFFIX = ".peak"  # beside it: the sites at the highest traced memory seen
PEAK_STEP_MIB = 32.0  # a new peak file once the traced memory passes the last one's by this much
PEAK_FLOOR_MIB = 64.0  # below this, no peak file
PEAK_POLL_SECONDS = 1.0
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
