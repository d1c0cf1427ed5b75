"""The independent observer: a separate process that watches a namespace and stamps what it sees.

It shares nothing with the systems under test nor with the load generator (its own process, its own
connections), so a busy harness cannot delay its clock readings. For every watch event it keeps a
compact record only when something it cares about changed (first sight, pod phase, job outcome,
deletion), stamped with `time.time()` when the bytes arrived (ms resolution; `creationTimestamp`
has only whole seconds). On SIGTERM it writes the records as JSON lines and exits.

    python -m bench.observer --kubeconfig K --namespace NS --watch pods --watch jobs --out FILE

Record: {"t": epoch seconds, "r": "pod"|"job"|"pj", "e": ADDED|MODIFIED|DELETED, "n": name,
"c": chain label, "s": stage label (int or null), "p": pod phase | job outcome}; and for every
change of a ProcessingJob, one of "r": "pjw" whose "p" is its cause (bench.statuswrites). It prints
`ready` once every watch is established.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import statuswrites
from bench.api import BATCH, JOBS, Api, BenchError

ROOT = Path(__file__).resolve().parents[1]
LABEL_CHAIN = "bench.procjob.dev/chain"
LABEL_STAGE = "bench.procjob.dev/stage"

RESOURCES: dict[str, tuple[str, str]] = {
    # name -> (record kind, path template)
    "pods": ("pod", "/api/v1/namespaces/{ns}/pods"),
    "jobs": ("job", BATCH + "/namespaces/{ns}/jobs"),
    "processingjobs": ("pj", JOBS + "/namespaces/{ns}/processingjobs"),
}


def _labels(obj: dict[str, Any]) -> tuple[str | None, int | None]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    stage = labels.get(LABEL_STAGE)
    return labels.get(LABEL_CHAIN), int(stage) if stage is not None and stage.isdigit() else None


def state_of(kind: str, obj: dict[str, Any]) -> str:
    """What the analysis needs to know about an object: a pod's phase, a job's outcome."""
    status = obj.get("status") or {}
    if kind == "pod":
        return str(status.get("phase") or "")
    conditions = status.get("conditions") or []
    if kind == "job":
        for cond in conditions:
            if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
                return str(cond["type"])
        return ""
    for cond in conditions:  # a ProcessingJob: the Succeeded condition (True, False, Unknown)
        if cond.get("type") == "Succeeded":
            return f"{cond.get('status')}:{cond.get('reason', '')}"
    return ""


class Recorder:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._last: dict[tuple[str, str], str] = {}
        self._marks: dict[str, statuswrites.Mark] = {}  # ProcessingJob UID -> its last version's mark

    def sink(self, kind: str) -> Callable[[float, str, dict[str, Any]], None]:
        def record(now: float, etype: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            if kind == "pj":
                self._census(now, etype, obj)
            key = (kind, str(meta.get("uid")))
            state = state_of(kind, obj)
            if etype != "DELETED" and self._last.get(key) == state:
                return
            self._last[key] = state
            chain, stage = _labels(obj)
            if kind != "pod" and chain is None:
                chain = meta.get("name")
            self.records.append(
                {"t": round(now, 4), "r": kind, "e": etype, "n": meta.get("name"), "c": chain, "s": stage, "p": state}
            )

        return record

    def _census(self, now: float, etype: str, obj: dict[str, Any]) -> None:
        """Classify a ProcessingJob's change against its last version (bench.statuswrites)."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid"))
        if etype == "DELETED":
            self._marks.pop(uid, None)
            return
        self._marks[uid], why = statuswrites.classify(self._marks.get(uid), obj)
        if why is not None:
            chain = _labels(obj)[0] or meta.get("name")
            found = {"t": round(now, 4), "r": statuswrites.RECORD, "e": etype, "n": meta.get("name"), "c": chain}
            self.records.append({**found, "s": None, "p": why})


def write_records(out: Path, records: list[dict[str, Any]]) -> None:
    out.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


async def _all(events: list[asyncio.Event]) -> None:
    for event in events:
        await event.wait()


async def observe(kubeconfig: Path, namespace: str, resources: list[str], out: Path) -> int:
    api = Api(kubeconfig, concurrency=8)
    recorder = Recorder()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Any]] = []
    try:
        readies = []
        for name in resources:
            kind, template = RESOURCES[name]
            ready = asyncio.Event()
            readies.append(ready)
            path = template.format(ns=namespace)
            tasks.append(asyncio.create_task(api.watch(path, recorder.sink(kind), ready=ready)))
        waiting: asyncio.Task[Any] = asyncio.create_task(_all(readies))
        done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task in done:
                task.result()  # a watch that ended before it was ready: raise its error
        print("ready", flush=True)
        stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in tasks if t in done]
        if failed:
            failed[0].result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await api.close()
        await asyncio.to_thread(write_records, out, recorder.records)
    return 0


class Observer:
    """The parent's handle on an observer process: `await start()`, `await stop()` -> records."""

    def __init__(self, kubeconfig: Path, namespace: str, resources: list[str], out: Path) -> None:
        self.argv = [sys.executable, "-m", "bench.observer", "--kubeconfig", str(kubeconfig), "--namespace", namespace]
        for name in resources:
            self.argv += ["--watch", name]
        self.argv += ["--out", str(out)]
        self.out = out
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            self.proc.kill()
            err = (await self.proc.stderr.read()).decode(errors="replace")[-1000:]
            raise BenchError(f"the observer did not start within {within:.0f}s: {err.strip()}")

    async def stop(self, within: float = 30.0) -> list[dict[str, Any]]:
        if self.proc is None:
            return []
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise BenchError(f"the observer did not stop within {within:.0f}s") from None
        assert self.proc.stderr is not None
        err = (await self.proc.stderr.read()).decode(errors="replace")
        if self.proc.returncode != 0 or not self.out.exists():
            raise BenchError(f"the observer failed (exit {self.proc.returncode}): {err.strip()[-1000:]}")
        text = await asyncio.to_thread(self.out.read_text)
        return [json.loads(line) for line in text.splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.observer", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--watch", action="append", choices=sorted(RESOURCES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(observe(args.kubeconfig, args.namespace, args.watch, args.out))
    except Exception as exc:
        print(f"observer failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
