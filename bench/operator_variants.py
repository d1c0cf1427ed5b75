"""Experimental operator variants, to measure a recommended fix before anyone edits operator/.

    python -m bench.operator_variants --variants kopf-lite,quiet-events -- run --namespace NS ...

Each variant changes the operator at start-up, from the outside, the way the recommended change to
operator/ would; everything after `--` goes to `procjob` unchanged. The benchmark uses this only
with `bench.run --operator-variants ...`, and labels such results as experiments.

- kopf-lite: kopf's diffbase and progress storages replaced by no-ops. kopf computes, for every
  watch event, a deep-copied "essence" of the whole object and strips its progress stanzas, only to
  serve on.create/update/field handlers and daemons; procjob registers none (on.event and an index
  only), so nothing reads the result. Proposed fix: the same two assignments in
  procjob.handlers.startup.
- quiet-events: no Kubernetes Event for the routine per-stage transitions (StageStarted,
  AttemptStarted, StageSucceeded); job-level and warning Events stay, and the audit keeps every
  transition. Proposed fix: drop those keys from procjob.core.decide.EVENTS.
- slim-cache: the job cache keeps bodies without metadata.managedFields (about a third of a
  ProcessingJob's JSON; nothing in procjob reads it, and a PUT without the field leaves the
  server's copy alone). Proposed fix: strip it in procjob.controller.cache.Cache.observe_job.
- tracemalloc (a probe, not a fix): trace allocations; SIGUSR1 writes the largest allocation sites
  still alive to the file named by $BENCH_TRACEMALLOC_OUT (the harness sends it at the end of the
  measured window).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import kopf

VARIANTS = ("kopf-lite", "quiet-events", "slim-cache", "tracemalloc")
TRACEMALLOC_OUT = "BENCH_TRACEMALLOC_OUT"  # where SIGUSR1 writes the top allocation sites
QUIET = ("StageStarted", "AttemptStarted", "StageSucceeded")


class NoDiffBase(kopf.DiffBaseStorage):
    """No essence: nothing in procjob compares an object with its last handled state."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return kopf.BodyEssence()

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


class NoProgress(kopf.ProgressStorage):
    """No handler progress: low-level handlers (on.event, index) keep none."""

    def fetch(self, *, key: Any, body: Any) -> Any:
        return None

    def store(self, *, key: Any, record: Any, body: Any, patch: Any) -> None:
        return None

    def purge(self, *, key: Any, body: Any, patch: Any) -> None:
        return None

    def touch(self, *, body: Any, patch: Any, value: Any) -> None:
        return None

    def clear(self, *, essence: Any) -> Any:
        return essence


def apply(variants: list[str]) -> None:
    if "kopf-lite" in variants:

        @kopf.on.startup()
        async def _kopf_lite(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.persistence.diffbase_storage = NoDiffBase()
            settings.persistence.progress_storage = NoProgress()

    if "tracemalloc" in variants:
        import tracemalloc

        tracemalloc.start(6)

        @kopf.on.startup()
        async def _tracemalloc(**_: Any) -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_allocations)

    if "slim-cache" in variants:
        from procjob.controller.cache import Cache

        observe_job = Cache.observe_job

        def slim_observe_job(self: Cache, body: dict[str, Any], *, deleted: bool = False) -> str:
            meta = body.get("metadata")
            if isinstance(meta, dict) and "managedFields" in meta:
                body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
            return observe_job(self, body, deleted=deleted)

        Cache.observe_job = slim_observe_job  # type: ignore[method-assign]

    if "quiet-events" in variants:
        from procjob.core import decide

        for name in QUIET:
            decide.EVENTS.pop(name, None)


def _dump_allocations() -> None:
    import tracemalloc

    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    lines = [f"traced: {sum(s.size for s in snapshot.statistics('filename')) / 2**20:.1f} MiB"]
    for stat in snapshot.statistics("lineno")[:25]:
        lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} blocks  {stat.traceback[0]}")
    lines.append("")
    for stat in snapshot.statistics("traceback")[:8]:
        lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} blocks")
        lines.extend(f"    {frame}" for frame in stat.traceback.format(limit=6))
    Path(os.environ.get(TRACEMALLOC_OUT, "tracemalloc.txt")).write_text("\n".join(lines) + "\n")


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
    apply(chosen)
    from procjob.cli.main import main as procjob_main

    return procjob_main(rest)


if __name__ == "__main__":
    sys.exit(main())
