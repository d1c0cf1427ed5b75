"""Run the chaos suite: a mixed workload on the rig, faults on a seeded schedule, then the invariants.

    python -m chaos.run --profile quick|full [--seed N] [--out DIR] [--keep]

Phases: set up (PostgreSQL, the proxies, namespaces, the observer, two replicas with leader
election); the workload with its faults; the drain (every job ends, the audit catches up); the
10,000 jobs created while no operator runs (full); a calm window (a fresh batch, no fault: the
counters' exact check); the end state and the deletion of everything; then the analysis, written
to chaos/results/<date>-<profile>.{json,md}. The exit code is 0 only when every invariant and
every fault check held. Work files (observer records, proxy log, operator logs) stay in a temp
directory, printed at the end (removed on success unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.api import Api
from bench.auditdb import fresh_database, start_postgres, stop_postgres, wait_drained
from bench.rigctl import Rig

from chaos import infra, phases, report, rigproc
from chaos.actions import arrivals
from chaos.context import Context
from chaos.faults import INJECTORS
from chaos.phases import ended
from chaos.replicas import Replica, Replicas, operator_argv, operator_env
from chaos.rigproc import ports as rig_ports
from chaos.schedule import Plan, Planned, Profile, plan, profile
from chaos.workload import JobPlan, Workload, generate, spec_for

RESULTS = Path(__file__).resolve().parent / "results"
T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


async def setup(prof: Profile, seed: int, workdir: Path) -> Context:
    run_id = secrets.token_hex(3)
    namespaces = [f"chaos-{run_id}-{i}" for i in range(prof.namespaces)]
    if prof.flood:
        namespaces.append(f"chaos-{run_id}-flood")
    lease_ns = f"chaos-{run_id}-sys"
    api = Api(infra.KUBECONFIG, concurrency=32)
    for ns in [lease_ns, *namespaces]:
        await api.create_namespace(ns)
    if prof.node:
        await infra.add_node(api, "chaos-node")
    pg = start_postgres()
    dsn = await asyncio.to_thread(fresh_database, pg)
    api_a, api_b, pg_port, control, metrics_a, metrics_b = infra.ports(6)
    proxy = infra.proxy_process(workdir, {"a": api_a, "b": api_b}, pg_port, pg.port, control)
    await asyncio.to_thread(proxy.start)
    observer = infra.observer_process(workdir, namespaces, lease_ns)
    await asyncio.to_thread(observer.start)
    proxied_dsn = dsn.replace(f":{pg.port}/", f":{pg_port}/")
    replicas = {}
    for name, port, metrics in (("a", api_a, metrics_a), ("b", api_b, metrics_b)):
        kubeconfig = infra.replica_kubeconfig(workdir / f"kubeconfig-{name}", port)
        argv = operator_argv(namespaces, lease_ns, metrics, prof.timings, prof.queue)
        replicas[name] = Replica(
            name, argv, operator_env(name, kubeconfig, proxied_dsn), metrics, workdir / f"operator-{name}.log"
        )
    ctx = Context(
        api,
        Replicas(replicas),
        f"http://127.0.0.1:{control}",
        pg,
        random.Random(f"run/{seed}"),
        namespaces,
        lease_ns,
        prof.timings,
        log,
    )
    ctx.etcd = f"http://127.0.0.1:{rig_ports()['etcd']}"
    ctx.extras = {"run_id": run_id, "dsn": dsn, "proxy": proxy, "observer": observer, "workdir": workdir}
    ctx.replicas.start_all()
    for replica in ctx.replicas:
        await ctx.replicas.ready(replica)
    leader = await ctx.leader()
    log(f"setup: namespaces {', '.join(namespaces)}; replicas ready, {leader.name} leads")
    return ctx


async def background(ctx: Context) -> list[asyncio.Task[Any]]:
    import aiohttp
    from tests.support.kube import _tls

    server, ssl_ctx = _tls(infra.KUBECONFIG)
    session = aiohttp.ClientSession(base_url=server, connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=0))
    ctx.extras["session"] = session
    watches = ctx.world.watches(session, ctx.namespaces)
    tasks = [asyncio.create_task(w.run()) for w in watches]
    tasks += [asyncio.create_task(ctx.replicas.supervise()), asyncio.create_task(ctx.replicas.scrape())]
    tasks.append(asyncio.create_task(ctx.pressure.run()))
    await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in watches)), 60)
    return tasks


async def inject(ctx: Context, planned: Planned) -> None:
    await infra.sleep_until(ctx.t0 + planned.at)
    fault = planned.fault
    record: dict[str, Any] = {
        "label": fault.label,
        "name": fault.name,
        "params": fault.params,
        "planned_at": planned.at,
    }
    record["started"] = time.time()
    log(f"fault: {fault.label} {fault.params or ''}")
    try:
        record["result"] = await INJECTORS[fault.name](ctx, fault.params)
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        log(f"fault {fault.label} failed: {record['error']}")
    record["ended"] = time.time()
    ctx.faults.append(record)


async def faults_phase(ctx: Context, sched: Plan, workload: Workload, run_id: str, seed: int) -> None:
    ctx.t0 = time.time()
    creating = asyncio.create_task(arrivals(ctx, workload, run_id, seed))
    side = [asyncio.create_task(inject(ctx, p)) for p in sched.planned if p.fault.background]
    for planned in (p for p in sched.planned if not p.fault.background):
        await inject(ctx, planned)
    await creating
    await asyncio.gather(*side)
    log(f"faults done after {time.time() - ctx.t0:.0f}s; {len(workload.plans)} jobs created")


async def drain(ctx: Context, within: float) -> list[str]:
    """Wait until the suite's own actions are done and every job has ended; the unfinished ones."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = [
            f"{ns}/{n}"
            for (ns, n), j in ctx.world.jobs.items()
            if not ended(j) and not j["metadata"].get("deletionTimestamp")
        ]
        if not left and not ctx.tasks:
            return []
        await asyncio.sleep(1)
    return left


async def audit_drained(ctx: Context, within: float) -> float:
    seqs = {
        j["metadata"]["uid"]: int(((j.get("status") or {}).get("audit") or {}).get("lastSeq") or 0)
        for j in ctx.world.jobs.values()
    }
    return await asyncio.to_thread(wait_drained, ctx.extras["dsn"], seqs, within)


def calm_plans(seed: int, count: int, namespace: str) -> list[JobPlan]:
    """The calm window's jobs: kinds the suite does not act on, all created at once."""
    rng = random.Random(f"calm/{seed}")
    kinds = ["ok", "flaky", "permanent", "exhaust", "expo"]
    plans = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        plans.append(JobPlan(f"calm-{kind}-{i:03d}", namespace, kind, 0.0, spec_for(kind, rng)))
    return plans


async def execute(prof: Profile, seed: int, workdir: Path) -> dict[str, Any]:
    sched = plan(prof, seed)
    out: dict[str, Any] = {"schedule": sched.as_list()}
    ctx = await setup(prof, seed, workdir)
    tasks = await background(ctx)
    main_ns = ctx.namespaces[: prof.namespaces]
    workload = generate(seed, prof.jobs, main_ns, window=max(60.0, sched.window - 30))
    out["workload"] = {
        "jobs": len(workload.plans),
        "by_kind": workload.by_kind(),
        "arrival_window_s": round(sched.window - 30),
    }
    try:
        log(f"workload: {len(workload.plans)} jobs over {sched.window:.0f}s; {len(sched.planned)} faults")
        await faults_phase(ctx, sched, workload, ctx.extras["run_id"], seed)
        unfinished = await drain(ctx, prof.drain_timeout)
        out["drain"] = {"unfinished": len(unfinished), "after_faults_s": round(time.time() - ctx.t0, 1)}
        out["drain"]["audit_s"] = await _audit(ctx)
        if prof.flood:
            out["flood"] = await phases.flood_phase(ctx, prof.flood)
            out["drain"]["audit_after_flood_s"] = await _audit(ctx)
        log("calm window")
        calm = await phases.calm_phase(ctx, calm_plans(seed, prof.calm_jobs, main_ns[0]), 300)
        unfinished = await drain(ctx, 60)
        end = await phases.end_state(ctx, unfinished)
        log("deleting everything")
        end["cleanup"] = await phases.cleanup(ctx, 900.0 if prof.flood else 300.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await teardown(ctx, prof)
    out.update(end=end, calm=calm, ctx=ctx)
    return out


async def _audit(ctx: Context) -> float | str:
    try:
        return round(await audit_drained(ctx, 300.0), 2)
    except Exception as exc:
        return f"not drained: {exc}"


async def teardown(ctx: Context, prof: Profile) -> None:
    ctx.replicas.stop_all()
    await asyncio.sleep(1)
    ctx.extras["observer"].stop()
    ctx.extras["proxy"].stop()
    with contextlib.suppress(Exception):
        await ctx.extras["session"].close()
    if prof.node:
        await infra.remove_node(ctx.api, "chaos-node")
    await ctx.api.close()


async def main_async(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    prof = profile(args.profile, seed)
    workdir = Path(tempfile.mkdtemp(prefix="procjob-chaos-"))
    log(f"chaos: profile {prof.name}, seed {seed}, work dir {workdir}")
    started = time.monotonic()
    with Rig(log), rigproc.ownership_kept():
        Rig.apply_crd()
        out = await execute(prof, seed, workdir)
    ctx: Context = out.pop("ctx")
    rows = infra.audit_rows(ctx.extras["dsn"])
    stop_postgres(ctx.pg)
    driver = report.driver_log(prof, seed, out, ctx)
    driver["wall_time_s"] = round(time.monotonic() - started, 1)
    (workdir / "driver.json").write_text(json.dumps(driver, default=str))
    (workdir / "rows.json").write_text(json.dumps(rows, default=str))
    return judge_and_write(workdir, args.out, args.keep)


def judge_and_write(workdir: Path, out: Path, keep: bool) -> int:
    """Analyse a run's work files (driver.json, rows.json, observer.jsonl, requests.jsonl)."""
    driver = json.loads((workdir / "driver.json").read_text())
    rows = json.loads((workdir / "rows.json").read_text())
    records = infra.read_jsonl(workdir / "observer.jsonl")
    results = report.analyse(driver, records, rows, infra.read_jsonl(workdir / "requests.jsonl"))
    results["wall_time_s"] = driver.get("wall_time_s")
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    json_path, md_path = report.write(results, out, f"{date}-{driver['profile']}")
    log(f"results: {json_path} and {md_path}")
    print(md_path.read_text())
    if results["ok"] and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"work files kept in {workdir}")
    return 0 if results["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["quick", "full", "smoke"], default="quick")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work files even when everything held")
    parser.add_argument("--reanalyse", type=Path, metavar="WORKDIR", help="judge a kept run's work files again")
    args = parser.parse_args(argv)
    if args.reanalyse:
        return judge_and_write(args.reanalyse, args.out, keep=True)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
