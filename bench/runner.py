"""One system's run: namespace, (operator,) warm-up, observer, load, costs, analysis, cleanup.

`run_system()` is what bench.run calls for B0, B1 and procjob alike; `Context` carries what the
runs share (the API client, the profile, PostgreSQL, the work directory, operator settings).
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
import shutil
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.postgres import PostgresCluster

from bench import finalizerpolicy, report
from bench.analysis import analyse, percentile, r
from bench.api import JOBS, Api, BenchError
from bench.auditdb import AuditCheck, check, fresh_database, wait_drained
from bench.costs import Snapshot, diff, events_by_source, namespace_events, snapshot
from bench.identity import ACCOUNT, operator_kubeconfig
from bench.observer import Observer
from bench.operator_variants import PEAK_SUFFIX
from bench.operatorproc import MIB, OperatorProcess
from bench.profiles import Profile
from bench.rigctl import KUBECONFIG, Rig
from bench.systems import Load, System, b0, b1, drive, procjob

RESULTS = Path(__file__).resolve().parent / "results"
REQUIRED = (  # every system's row has these keys (None when it did not run)
    "stages_per_s",
    "transition_p50_s",
    "transition_p99_s",
    "first_pod_p99_s",
    "apiserver_writes_per_stage",
    "apiserver_cpu_s_per_1000_stages",
)
T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason, **dict.fromkeys(REQUIRED)}


@dataclass
class Context:
    api: Api
    profile: Profile
    workdir: Path
    nodes: list[str]
    pg: PostgresCluster | None
    workers: int | None
    profile_operator: bool
    date: str
    tag: str
    rig: Rig | None = None
    wait_quiet: float = 0.0
    out: Path = RESULTS
    variants: tuple[str, ...] = ()
    events: str | None = None
    finalizer_policy: bool = True
    namespaces: list[str] = field(default_factory=list)


def make(kind: str, stages: int, nodes: list[str]) -> System:
    if kind == "b0":
        return b0(stages, nodes)
    if kind == "b1":
        return b1(stages)
    return procjob(stages)


WATCHED = {"b0": ["pods"], "b1": ["pods", "jobs"], "procjob": ["pods", "processingjobs"]}


async def kwok_nodes(api: Api) -> list[str]:
    listed = await api.request("GET", "/api/v1/nodes", params={"labelSelector": "type=kwok"})
    names = sorted(item["metadata"]["name"] for item in listed["items"])
    if not names:
        raise BenchError("the rig has no kwok Nodes (label type=kwok)")
    return names


def kcm_settings() -> dict[str, int | None]:
    proc = Rig.components().get("kube-controller-manager")
    args = " ".join(proc.cmdline()) if proc is not None else ""

    def flag(name: str) -> int | None:
        match = re.search(rf"--{name}=(\d+)", args)
        return int(match[1]) if match else None

    return {"kcm_qps": flag("kube-api-qps"), "kcm_burst": flag("kube-api-burst"), "concurrent_job_syncs": 5}


def operator_numbers(before: dict[str, float], after: dict[str, float], stages: int) -> dict[str, Any]:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    verbs: dict[str, float] = {}
    for key in after:
        match = re.fullmatch(r'procjob_api_requests_total\{verb="(\w+)"\}', key)
        if match:
            verbs[match[1]] = delta(key)
    errors = {k: delta(k) for k in after if k.startswith("procjob_reconcile_errors_total{") and delta(k) > 0}
    return {
        "operator_api_requests_per_stage": {k: round(v / stages, 2) for k, v in sorted(verbs.items())},
        "operator_api_requests_per_stage_total": round(sum(verbs.values()) / stages, 2),
        "operator_reconciles_per_stage": round(delta("procjob_reconcile_duration_seconds_count") / stages, 2),
        "operator_events_posted_per_stage": round(delta("procjob_events_posted_total") / stages, 2),
        "operator_reconcile_errors": errors,
        "operator_audit_records": int(delta("procjob_audit_records_total")),
    }


async def last_seqs(api: Api, namespace: str, chains: set[str]) -> dict[str, int]:
    listed = await api.request("GET", f"{JOBS}/namespaces/{namespace}/processingjobs")
    return {
        item["metadata"]["uid"]: int((((item.get("status") or {}).get("audit") or {}).get("lastSeq")) or 0)
        for item in listed["items"]
        if item["metadata"]["name"] in chains
    }


@dataclass
class SystemRun:
    """One system's run in progress: what runs where, and the result each step fills in."""

    kind: str
    label: str
    n: int
    stages: int
    rate: float | None
    namespace: str
    chains: list[str]
    result: dict[str, Any]
    operator: OperatorProcess | None = None
    dsn: str | None = None  # the operator's audit database (procjob only)
    seqs: dict[str, int] = field(default_factory=dict)  # job UID -> last audit sequence number

    @property
    def stage_count(self) -> int:
        return self.n * self.stages


@dataclass(frozen=True)
class Measured:
    """What the measured load gives the analysis: the jobs driven and the API costs around them."""

    load: Load
    before: Snapshot
    after: Snapshot


def new_run(kind: str, n: int, stages: int, rate: float | None, label: str | None) -> SystemRun:
    """Name the run's namespace and chains, and say what is about to run."""
    label = label or kind
    namespace = f"bench-{kind}-{secrets.token_hex(3)}"
    chains = [f"c{i:05d}" for i in range(n)]
    pace = f" at {rate:.2f} jobs/s" if rate else ""
    log(f"{label}: N={n} S={stages}{pace} in namespace {namespace}")
    result: dict[str, Any] = {"system": kind, "namespace": namespace}
    if rate:
        result["arrival_rate_jobs_per_s"] = round(rate, 3)
    return SystemRun(kind, label, n, stages, rate, namespace, chains, result)


async def note_foreign_load(ctx: Context, run: SystemRun) -> None:
    """Wait (bounded) for other users of the rig to go quiet, and record who was still there."""
    if ctx.rig is None:
        return
    others = await asyncio.to_thread(ctx.rig.wait_quiet, ctx.wait_quiet)
    run.result["foreign_load_at_start"] = others
    if others:
        log(f"{run.label}: note: sharing the rig with {', '.join(others)}")


async def start_operator(ctx: Context, run: SystemRun) -> None:
    """A fresh audit database and an operator watching the run's namespace only."""
    assert ctx.pg is not None
    run.dsn = await asyncio.to_thread(fresh_database, ctx.pg)
    prof = ctx.workdir / f"operator-{run.label}.prof" if ctx.profile_operator else None
    kubeconfig = await asyncio.to_thread(operator_kubeconfig, run.namespace, ctx.workdir / f"kubeconfig-{run.label}")
    operator = run.operator = OperatorProcess(
        run.namespace,
        ctx.workdir / f"operator-{run.label}.log",
        workers=ctx.workers,
        database_url=run.dsn,
        profile_out=prof,
        variants=ctx.variants,
        events=ctx.events,
        kubeconfig=kubeconfig,
    )
    await asyncio.to_thread(operator.start)
    log(f"{run.label}: operator ready (pid {operator.proc.pid if operator.proc else '?'}, metrics :{operator.port})")
    run.result["operator_workers"] = ctx.workers or 8
    run.result["operator_events"] = ctx.events or "all"
    run.result["operator_identity"] = f"serviceaccount {ACCOUNT} (token), the chart's RBAC"
    run.result["operator_profiled"] = prof is not None
    run.result["operator_variants"] = list(ctx.variants)


async def warm_up(ctx: Context, run: SystemRun) -> None:
    """A one-stage warm-up chain: connections open, the operator's watches established."""
    warm = make(run.kind, 1, ctx.nodes)
    await drive(
        ctx.api,
        warm,
        run.namespace,
        ["warm"],
        1,
        rate=None,
        stall_timeout=60,
        deadline=time.monotonic() + 90,
        progress=log,
    )


async def drain_audit(ctx: Context, run: SystemRun, dsn: str) -> None:
    """Wait until every job's last transition is in PostgreSQL; record how long that took."""
    run.seqs = await last_seqs(ctx.api, run.namespace, set(run.chains))
    drained = await asyncio.to_thread(wait_drained, dsn, run.seqs, 120.0)
    run.result["audit_drain_after_last_job_s"] = round(drained, 2)
    log(f"{run.label}: all jobs done; audit drained {drained:.1f}s later")


async def save_allocations(ctx: Context, run: SystemRun, operator: OperatorProcess) -> None:
    """With the tracemalloc variant: the operator's allocation sites, into the results directory."""
    if "tracemalloc" not in ctx.variants:
        return
    stem = f"{ctx.date}-{ctx.profile.name}{ctx.tag}-operator-{run.label}-allocations"
    if await asyncio.to_thread(operator.dump_allocations, operator.allocations):
        target = ctx.out / f"{stem}.txt"
        target.write_text(report.scrub_paths(operator.allocations.read_text()))
        log(f"{run.label}: operator allocation sites in {target}")
    peak = operator.allocations.with_name(operator.allocations.name + PEAK_SUFFIX)
    if peak.exists():
        target = ctx.out / f"{stem}-peak.txt"
        target.write_text(report.scrub_paths(peak.read_text()))
        log(f"{run.label}: operator allocation sites at the traced peak in {target}")


def operator_costs(
    operator: OperatorProcess, run: SystemRun, op_before: dict[str, float], cpu_before: float, window_s: float
) -> dict[str, Any]:
    """The operator's memory, CPU and API use over the measured load, per job and per stage."""
    cpu = operator.cpu_seconds() - cpu_before
    op_after = operator.metrics()
    return {
        "rss_peak_mib": round(operator.high_water_mark() / MIB, 1),
        "rss_end_mib": round(operator.rss() / MIB, 1),
        "rss_timeline_mib": operator.timeline_mib(),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000_jobs": round(cpu * 1000 / run.n, 1),
        "cpu_s_per_1000_stages": round(cpu * 1000 / run.stage_count, 1),
        "operator_cpu_utilisation": round(cpu / max(1e-9, window_s), 2),
        **operator_numbers(op_before, op_after, run.stage_count),
    }


async def apply_load(ctx: Context, run: SystemRun, system: System) -> Measured:
    """Drive the N chains (paced or all at once), then take the costs around them."""
    operator = run.operator
    before = await snapshot(ctx.api)
    op_before = operator.metrics() if operator else {}
    cpu_before = operator.cpu_seconds() if operator else 0.0
    load = await drive(
        ctx.api,
        system,
        run.namespace,
        run.chains,
        run.stages,
        rate=run.rate,
        stall_timeout=ctx.profile.stall_timeout,
        deadline=time.monotonic() + ctx.profile.run_timeout,
        progress=log,
    )
    if operator is not None and run.dsn is not None:
        await drain_audit(ctx, run, run.dsn)
    after = await snapshot(ctx.api)
    run.result["foreign_load_at_end"] = Rig.foreign_load()
    if operator is not None:
        await save_allocations(ctx, run, operator)
        run.result.update(operator_costs(operator, run, op_before, cpu_before, after.at - before.at))
    return Measured(load, before, after)


def audit_numbers(audit: AuditCheck) -> dict[str, Any]:
    """The audit's completeness and lag, as the report shows them."""
    return {
        "audit_rows": audit.rows,
        "audit_lag_p50_s": r(percentile(audit.lags, 50)),
        "audit_lag_p99_s": r(percentile(audit.lags, 99)),
        "audit_lag_max_s": r(max(audit.lags) if audit.lags else None),
        "audit_exact": audit.exact,
        "audit_exact_jobs": f"{audit.exact_jobs}/{audit.jobs}",
        "audit_problems": audit.problems,
    }


async def measure(ctx: Context, run: SystemRun) -> None:
    """Warm up, then run the load under the observer and analyse what it recorded."""
    system = make(run.kind, run.stages, ctx.nodes)
    await warm_up(ctx, run)
    observer = Observer(KUBECONFIG, run.namespace, WATCHED[run.kind], ctx.workdir / f"observer-{run.label}.jsonl")
    await observer.start()
    log(f"{run.label}: warmed up, observer watching; creating {run.n} chains")
    try:
        measured = await apply_load(ctx, run, system)
    finally:
        records = await observer.stop()
    run.result.update(analyse(records, measured.load, run.chains, run.stages, system.kind))
    run.result.update(diff(measured.before, measured.after, run.stage_count, run.n))
    events = await namespace_events(ctx.api, run.namespace)
    run.result["events_by_source"] = events_by_source(events, since=measured.before.at)
    if run.operator is not None and run.dsn is not None:
        run.result.update(audit_numbers(await asyncio.to_thread(check, run.dsn, run.seqs)))


def log_summary(run: SystemRun) -> None:
    result = run.result
    log(
        f"{run.label}: {result['stages_per_s']} stages/s steady, {result['stages_per_s_overall']} overall, "
        f"makespan {result['makespan_s']}s, transition p50/p99 {result['transition_p50_s']}/"
        f"{result['transition_p99_s']}s, first pod p99 {result['first_pod_p99_s']}s"
    )


async def clean_up(ctx: Context, run: SystemRun) -> None:
    """Empty the namespace and wait until it is deleted; stop the operator (and summarise its profile)
    whatever happened."""
    log(f"{run.label}: deleting the objects of namespace {run.namespace}")
    try:
        emptied = await ctx.api.empty_namespace(run.namespace, within=ctx.profile.cleanup_timeout)
        run.result["cleanup_s"] = round(emptied, 1)
        log(f"{run.label}: pods gone after {run.result['cleanup_s']}s; deleting the namespace")
        # Wait until it is gone: its deletion (the namespace controller's sweep, the controllers'
        # late Events about its objects, refused while it terminates) is this run's work, not the
        # next system's (seen: 837 refused Event POSTs from B1's controllers in procjob's burst).
        gone = await ctx.api.delete_namespaces([run.namespace], within=ctx.profile.cleanup_timeout)
        run.result["namespace_gone_s"] = round(gone, 1)
        ctx.namespaces.remove(run.namespace)
    finally:
        if run.operator is not None:
            await asyncio.to_thread(run.operator.stop)
            if ctx.profile_operator:
                summarise_profile(ctx, run.label)


async def run_system(
    ctx: Context, kind: str, n: int, stages: int, *, rate: float | None = None, label: str | None = None
) -> dict[str, Any]:
    """One system's run, step by step; the namespace is cleaned up and the operator stopped whatever fails."""
    run = new_run(kind, n, stages, rate, label)
    await note_foreign_load(ctx, run)
    await ctx.api.create_namespace(run.namespace)
    ctx.namespaces.append(run.namespace)
    policy = finalizerpolicy.NONE
    try:
        if kind == "procjob":
            policy = await install_finalizer_policy(ctx, run)
            await start_operator(ctx, run)
        await measure(ctx, run)
        log_summary(run)
    finally:
        try:
            await clean_up(ctx, run)
        finally:
            for failure in await finalizerpolicy.remove(ctx.api, run.namespace, policy):
                log(f"{run.label}: finalizer policy not removed: {failure}")
    return run.result


async def install_finalizer_policy(ctx: Context, run: SystemRun) -> str:
    """The chart's finalizer policy, bound to the run's namespace (unless --no-finalizer-policy)."""
    version = finalizerpolicy.NONE
    if ctx.finalizer_policy:
        probe = procjob(1).build(run.namespace, "finalizer-policy-probe", 0)
        version = await finalizerpolicy.install(ctx.api, run.namespace, probe)
    run.result["finalizer_policy"] = version
    what = "off" if not ctx.finalizer_policy else ("not served" if version == finalizerpolicy.NONE else version)
    log(f"{run.label}: finalizer policy {what}")
    return version


def summarise_profile(ctx: Context, label: str) -> None:
    import pstats

    prof = ctx.workdir / f"operator-{label}.prof"
    if not prof.exists():
        log(f"{label}: no profile written ({prof.name})")
        return
    name = f"{ctx.date}-{ctx.profile.name}{ctx.tag}-operator-{label}.txt"
    out = ctx.out / name
    buffer = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buffer)
    stats.strip_dirs().sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(40)
    out.write_text(report.scrub_paths(buffer.getvalue()).replace(str(prof), prof.name))
    shutil.copy(prof, ctx.out / name.replace(".txt", ".prof.tmp"))
    log(f"{label}: operator profile summary in {out}")


async def guarded(what: str, step: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run one system; a failure is recorded (and the run goes on) rather than aborting everything."""
    try:
        return await step
    except BenchError as exc:
        log(f"{what}: FAILED: {exc}")
        return {"error": str(exc), **dict.fromkeys(REQUIRED)}
