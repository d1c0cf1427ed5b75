"""Fan-out benchmark: one stage of N items at parallelism P — procjob (`forEach`) against B1, one batch/v1
Indexed Job (completions N, parallelism P) run by the controller-manager's Job controller — on the rig.

    python -m bench.fanout [--items 1000] [--parallelism 50] [--systems b1,procjob,procjob_audit] [--tag T]

Each system runs in a fresh namespace with pods of the same shape (bench.systems.worker_pod_spec, which
is procjob's); kwok ends every pod at once. A watch of the namespace's pods, its own connection, stamps
every change on arrival. Numbers per system:

- `pods_per_s`: N / (create request sent -> the N-th pod seen Succeeded): end-to-end throughput;
- `steady_pods_per_s`: N / (first pod seen -> N-th Succeeded): without the start-up;
- `first_pod_s`: create sent -> first pod seen; `peak_live`: most pods alive at once (never above P).

procjob runs as a separate process scoped to the namespace with `--max-running-pods-per-job P` (its
default cap is 100), without a database (`procjob`) and with PostgreSQL audit on (`procjob_audit`:
four audit records per item). podGC Never for procjob, no TTL for the Job: neither deletes pods
during the run. Results: bench/results/<date>-fanout[-tag].{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.api import BATCH, JOBS, Api, BenchError, poll
from bench.auditdb import fresh_database, start_postgres, stop_postgres
from bench.identity import operator_kubeconfig
from bench.operatorproc import OperatorProcess
from bench.rigctl import KUBECONFIG, ROOT, Rig
from bench.systems import IMAGE, worker_pod_spec

RESULTS = ROOT / "bench" / "results"
LABEL = "bench.procjob.dev/fanout"


def log(message: str) -> None:
    print(f"[fanout {datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)


def b1_body(n: int, p: int) -> tuple[str, dict[str, Any]]:
    template = {"metadata": {"labels": {LABEL: "b1"}}, "spec": worker_pod_spec()}
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "fan"},
        "spec": {
            "completions": n,
            "parallelism": p,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": template,
        },
    }
    return "jobs", body


def procjob_body(n: int, p: int) -> tuple[str, dict[str, Any]]:
    stage = {"name": "fan", "image": IMAGE, "forEach": list(range(n)), "parallelism": p, "args": ["{{ item }}"]}
    body = {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"name": "fan"},
        "spec": {"stages": [stage], "podGC": "Never"},
    }
    return "processingjobs", body


class Watch:
    """The namespace's pods as seen on arrival: first seen, first seen Succeeded, live count."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.live: set[str] = set()
        self.peak = 0

    def sink(self, now: float, kind: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        self.seen.setdefault(name, now)
        phase = (pod.get("status") or {}).get("phase")
        if kind == "DELETED" or phase in ("Succeeded", "Failed"):
            self.live.discard(name)
        else:
            self.live.add(name)
        self.peak = max(self.peak, len(self.live))
        if phase == "Succeeded":
            self.succeeded.setdefault(name, now)


async def run_system(api: Api, key: str, n: int, p: int, dsn: str | None, workdir: Path) -> dict[str, Any]:
    namespace = f"bench-fan-{uuid.uuid4().hex[:8]}"
    await api.create_namespace(namespace)
    operator = None
    if key.startswith("procjob"):
        kubeconfig = await asyncio.to_thread(operator_kubeconfig, namespace, workdir / f"kubeconfig-{key}")
        operator = OperatorProcess(
            namespace, workdir / f"{key}.log", workers=None, database_url=dsn, kubeconfig=kubeconfig
        )
        operator.env["PROCJOB_MAX_RUNNING_PODS_PER_JOB"] = str(p)
        await asyncio.to_thread(operator.start)
    watch = Watch()
    ready = asyncio.Event()
    watcher = asyncio.create_task(api.watch(f"/api/v1/namespaces/{namespace}/pods", watch.sink, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        plural, body = procjob_body(n, p) if operator is not None else b1_body(n, p)
        group = JOBS if operator is not None else BATCH
        sent = time.time()
        await api.create(f"{group}/namespaces/{namespace}/{plural}", body)

        async def done() -> bool:
            if watcher.done():
                watcher.result()  # a failed watch fails the run
            return len(watch.succeeded) >= n

        await poll(f"{key}: {n} pods Succeeded", done, within=max(300.0, n / 2), interval=0.1)
        first = min(watch.seen.values())
        last = sorted(watch.succeeded.values())[n - 1]
        result: dict[str, Any] = {
            "items": n,
            "parallelism": p,
            "pods_seen": len(watch.seen),
            "pods_per_s": round(n / (last - sent), 2),
            "steady_pods_per_s": round(n / (last - first), 2),
            "first_pod_s": round(first - sent, 2),
            "total_s": round(last - sent, 2),
            "peak_live": watch.peak,
        }
        if operator is not None:
            result["operator_cpu_s"] = round(operator.cpu_seconds(), 1)
            result["operator_rss_peak_mib"] = round(operator.rss_peak / 2**20, 1)
        log(f"{key}: {json.dumps(result)}")
        return result
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await api.empty_namespace(namespace, within=600)
        if operator is not None:
            await asyncio.to_thread(operator.stop)
        await api.delete_namespaces([namespace], within=300)


def markdown(results: dict[str, Any]) -> str:
    rows = [
        "| System | items / parallelism | pods/s (end to end) | pods/s (steady) | first pod | total | peak live |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "b1": "B1: one Indexed Job (Job controller)",
        "procjob": "procjob forEach, no audit",
        "procjob_audit": "procjob forEach, audit on",
    }
    for key, label in names.items():
        r = results.get(key) or {}
        if "pods_per_s" not in r:
            rows.append(f"| {label} | - | {r.get('error') or r.get('skipped') or '-'} | | | | |")
            continue
        rows.append(
            f"| {label} | {r['items']} / {r['parallelism']} | {r['pods_per_s']} | {r['steady_pods_per_s']} | "
            f"{r['first_pod_s']} s | {r['total_s']} s | {r['peak_live']} |"
        )
    ratio = results.get("ratios", {})
    rows += ["", f"procjob / B1 (end to end): {ratio.get('procjob_vs_b1', '-')}; "
             f"with audit: {ratio.get('procjob_audit_vs_b1', '-')}"]  # fmt: skip
    return "\n".join(rows) + "\n"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    systems = [s for s in args.systems.split(",") if s]
    results: dict[str, Any] = {
        "benchmark": "fanout",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"items": args.items, "parallelism": args.parallelism, "systems": systems},
        "machine": {"cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()]},
    }
    workdir = Path(tempfile.mkdtemp(prefix="procjob-bench-fanout-"))
    with Rig(log) as rig:
        results["machine"]["foreign_load_at_start"] = rig.foreign_load()
        api = Api(KUBECONFIG)
        pg = None
        try:
            await asyncio.to_thread(rig.apply_crd)
            for key in systems:
                dsn = None
                if key == "procjob_audit":
                    pg = pg or await asyncio.to_thread(start_postgres)
                    dsn = await asyncio.to_thread(fresh_database, pg)
                try:
                    results[key] = await run_system(api, key, args.items, args.parallelism, dsn, workdir)
                except BenchError as exc:
                    results[key] = {"error": str(exc)}
                    log(f"{key}: {exc}")
        finally:
            await api.close()
            if pg is not None:
                stop_postgres(pg)
    b1 = (results.get("b1") or {}).get("pods_per_s")
    results["ratios"] = {
        f"{key}_vs_b1": round(results[key]["pods_per_s"] / b1, 2)
        for key in ("procjob", "procjob_audit")
        if b1 and "pods_per_s" in (results.get(key) or {})
    }
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=50)
    parser.add_argument("--systems", default="b1,procjob,procjob_audit")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    stem = f"{datetime.now(UTC).strftime('%Y-%m-%d')}-fanout" + (f"-{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results))
    log(f"wrote {args.out / stem}.json and .md")
    return 0 if all("error" not in (results.get(k) or {}) for k in results["settings"]["systems"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
