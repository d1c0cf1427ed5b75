"""The independent observer: its own process and connections, watching pods, ProcessingJobs and
Events in the workload's namespaces and the leader Lease, writing compact records as JSON lines.

    python -m chaos.observer --kubeconfig K --namespace NS [--namespace NS2 ...]
                             --lease-namespace NS --out FILE

It shares no code with the operator. It talks to the API server directly (never through the
suite's proxy), stamps every record with `time.time()` on arrival and with the object's
resourceVersion (etcd's global revision, so records of different kinds can be ordered exactly),
flushes every half second and exits 0 on SIGTERM after a last flush. It prints `ready` once every
watch has listed. Record shapes are in chaos.records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

import aiohttp
from tests.support.kube import _tls

from chaos.records import event_record, job_record, lease_record, pod_record
from chaos.watch import Watch

JOBS = "/apis/procjob.dev/v1alpha1"


class Writer:
    """Keeps each object's last record key so only changes are written; flushes on a timer."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last: dict[tuple[str, str], Any] = {}
        self.seen_entries: dict[str, set[int]] = {}  # job UID -> outbox seqs already written
        self.count = 0

    def emit(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.count += 1

    def sink(self, kind: str) -> Any:
        def record(now: float, etype: str, obj: dict[str, Any]) -> None:
            if kind == "pod":
                rec = pod_record(now, etype, obj)
            elif kind == "pj":
                rec = job_record(now, etype, obj, self.seen_entries)
            elif kind == "ev":
                rec = event_record(now, etype, obj)
            else:
                rec = lease_record(now, etype, obj)
            key = (kind, str(rec.get("uid") or rec.get("n")))
            state = {k: v for k, v in rec.items() if k not in ("t", "rv", "e")}
            if etype in ("DELETED",) or rec.get("ob") or self.last.get(key) != state:
                self.last[key] = state
                self.emit(rec)

        return record

    def gap(self, path: str, lost: float, relisted: float) -> None:
        self.emit({"k": "gap", "res": path, "from": round(lost, 3), "to": round(relisted, 3)})


def watches(session: aiohttp.ClientSession, writer: Writer, namespaces: list[str], lease_ns: str) -> list[Watch]:
    found = []
    for ns in namespaces:
        found.append(Watch(session, f"/api/v1/namespaces/{ns}/pods", writer.sink("pod"), writer.gap))
        found.append(Watch(session, f"{JOBS}/namespaces/{ns}/processingjobs", writer.sink("pj"), writer.gap))
        found.append(Watch(session, f"/api/v1/namespaces/{ns}/events", writer.sink("ev"), writer.gap))
    found.append(
        Watch(session, f"/apis/coordination.k8s.io/v1/namespaces/{lease_ns}/leases", writer.sink("lease"), writer.gap)
    )
    return found


async def observe(kubeconfig: Path, namespaces: list[str], lease_ns: str, out: Path) -> int:
    server, ssl_ctx = _tls(kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=0)
    with out.open("a", buffering=1 << 16) as fh:
        writer = Writer(fh)
        async with aiohttp.ClientSession(base_url=server, connector=connector) as session:
            found = watches(session, writer, namespaces, lease_ns)
            tasks = [asyncio.create_task(w.run()) for w in found]
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in found)), 120)
            fh.flush()
            print("ready", flush=True)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                fh.flush()
                if any(t.done() for t in tasks):  # a watch loop never ends on its own: a bug
                    broken = next(t for t in tasks if t.done())
                    broken.result()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        writer.emit({"k": "end", "t": round(time.time(), 3), "records": writer.count})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.observer", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", action="append", required=True)
    parser.add_argument("--lease-namespace", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(observe(args.kubeconfig, args.namespace, args.lease_namespace, args.out))
    except Exception as exc:
        print(f"observer failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
