"""Benchmark procjob against the ceiling (B0) and the Job controller (B1), one after another, on the rig.

    python -m bench.run --profile quick|full|smoke [--systems b0,b1,procjob] [--workers N]
                        [--profile-operator] [--no-restart] [--tag TAG]

Each system runs in a fresh namespace, which is deleted (and waited for until gone) before the next one.
An observer process stamps what it sees; the harness only creates and chains. Results go to
bench/results/<date>-<profile>[-tag].{json,md,png}; see bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from tests.support.postgres import PostgresCluster

from bench import floor, report
from bench.api import Api, BenchError
from bench.auditdb import start_postgres, stop_postgres
from bench.profiles import PROFILES, Profile
from bench.rigctl import KUBECONFIG, ROOT, Rig
from bench.runner import RESULTS, T0, Context, guarded, kcm_settings, kwok_nodes, log, run_system, skipped

# B1 tuned: the controller-manager's client rate limit out of the way (the operator has none either).
TUNED_KCM = {"RIG_KCM_QPS": "1000", "RIG_KCM_BURST": "2000"}
UPSTREAM_KCM = {"RIG_KCM_QPS": "20", "RIG_KCM_BURST": "30"}  # kube-controller-manager's own defaults


def machine_facts() -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    pg = subprocess.run(["pg_config", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            **Rig.versions(),
            "postgresql": pg or "?",
            "kopf": version("kopf"),
            "aiohttp": version("aiohttp"),
            "psycopg": version("psycopg"),
        },
        "git_commit": commit,
        "notes": "etcd --unsafe-no-fsync and PostgreSQL fsync=off (throw-away rig); "
        "other engineers' test sessions may share the box",
    }


async def bench(args: argparse.Namespace, profile: Profile, date: str) -> dict[str, Any]:
    systems = set(args.systems.split(","))
    n, stages = args.n or profile.chains, args.s or profile.stages
    results: dict[str, Any] = {
        "benchmark": "procjob-vs-baselines",
        "profile": profile.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "settings": {
            "chains": n,
            "stages": stages,
            "b0_chains": args.n or profile.b0_chains,
            "systems": sorted(systems),
            "operator_workers": args.workers or 8,
            "operator_events": args.events or "all",
            "operator_variants": args.operator_variants or "none (the operator as committed)",
            "podGC": "OnCompletion (procjob); ttlSecondsAfterFinished: 0 (B1); none during the run (B0)",
            "finalizer_policy": "off (--no-finalizer-policy)"
            if args.no_finalizer_policy
            else "the chart's, bound to each procjob namespace where the API server serves it",
        },
    }
    for key in ("b0", "b1_default", "b1_tuned", "procjob"):
        results[key] = skipped("not selected")
    workdir = Path(tempfile.mkdtemp(prefix="procjob-bench-"))
    log(f"profile {profile.name}: N={n} S={stages}; systems {','.join(sorted(systems))}; work dir {workdir}")
    pg: PostgresCluster | None = None
    with Rig(log) as rig:
        ctx = Context(Api(KUBECONFIG), profile, workdir, [], None, args.workers, args.profile_operator, date, args.tag)
        ctx.rig, ctx.wait_quiet, ctx.out = rig, args.wait_quiet, args.out
        ctx.variants = tuple(v for v in args.operator_variants.split(",") if v)
        ctx.events = args.events
        ctx.finalizer_policy = not args.no_finalizer_policy
        try:
            if "procjob" in systems:
                await asyncio.to_thread(rig.apply_crd)
                pg = ctx.pg = await asyncio.to_thread(start_postgres)
            ctx.nodes = await kwok_nodes(ctx.api)
            results["settings"]["rig_kcm"] = kcm_settings()
            await run_systems(ctx, results, systems, n, stages, args)
            await settle(ctx)
            if "b1" in systems:
                if not profile.b1_tuned:
                    results["b1_tuned"] = skipped(f"profile {profile.name}: no rig restart")
                elif args.no_restart:
                    results["b1_tuned"] = skipped("--no-restart")
                else:
                    wait = args.restart_wait if args.restart_wait is not None else profile.restart_wait
                    variants = [("b1_tuned", TUNED_KCM)] + ([("b1_upstream", UPSTREAM_KCM)] if args.b1_upstream else [])
                    results.update(await b1_restarted(ctx, rig, variants, n, stages, wait))
                    if "procjob" in systems and not args.no_paced:
                        await run_paced_at_b1(ctx, results, stages)
        finally:
            await ctx.api.close()
            if pg is not None:
                stop_postgres(pg)
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["write_floor"] = floor.write_floor(results)
    results["ratios"], results["targets"] = report.judge(results)
    results["ok"] = not any("error" in v for v in results.values() if isinstance(v, dict))
    if results["ok"]:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"work dir kept for inspection: {workdir}")
    return results


async def run_systems(
    ctx: Context, results: dict[str, Any], systems: set[str], n: int, stages: int, args: argparse.Namespace
) -> None:
    """B0, B1 (the rig's controller-manager settings), procjob (burst, matrix, paced), B0 again."""
    profile = ctx.profile
    b0_n = args.n or profile.b0_chains
    if "b0" in systems:
        results["b0"] = await guarded("b0", run_system(ctx, "b0", b0_n, stages))
    if "b1" in systems:
        results["b1_default"] = await guarded("b1_default", run_system(ctx, "b1", n, stages, label="b1_default"))
        results["b1_default"].update(kcm_settings())
    if "procjob" in systems:
        await run_procjob(ctx, results, n, stages, args)
    if "b0" in systems and profile.b0_repeat:
        # The ceiling drifts with the rig's state; a second B0 shows by how much during this run.
        results["b0_repeat"] = await guarded("b0_repeat", run_system(ctx, "b0", b0_n, stages, label="b0_repeat"))


async def run_procjob(ctx: Context, results: dict[str, Any], n: int, stages: int, args: argparse.Namespace) -> None:
    profile = ctx.profile
    results["procjob"] = await guarded("procjob", run_system(ctx, "procjob", n, stages))
    matrix = []
    for mn, ms in profile.matrix if not (args.n or args.s) else ():
        label = f"procjob-{mn}x{ms}"
        matrix.append({"n": mn, "s": ms, **await guarded(label, run_system(ctx, "procjob", mn, ms, label=label))})
    if matrix:
        results["procjob_matrix"] = [{"n": n, "s": stages, **results["procjob"]}, *matrix]
    ceiling = results["b0"].get("stages_per_s")
    offered = args.offered_rate or (0.5 * ceiling if ceiling else None)
    if profile.paced_chains and offered and not args.no_paced:
        rate = offered / stages
        paced = run_system(ctx, "procjob", profile.paced_chains, stages, rate=rate, label="procjob_paced")
        results["procjob_paced"] = {
            "offered_stages_per_s": round(offered, 2),
            "offered_from": "--offered-rate" if args.offered_rate else "half the B0 steady rate",
            **await guarded("paced", paced),
        }
    own = results["procjob"].get("stages_per_s")
    if profile.paced_chains and own and not args.offered_rate and not args.no_paced:
        # Latency at half of procjob's own burst throughput: where it stands below saturation.
        rate = 0.5 * own / stages
        paced = run_system(ctx, "procjob", profile.paced_chains, stages, rate=rate, label="procjob_paced_own")
        results["procjob_paced_own"] = {
            "offered_stages_per_s": round(0.5 * own, 2),
            "offered_from": "half the procjob burst steady rate",
            **await guarded("paced_own", paced),
        }


async def run_paced_at_b1(ctx: Context, results: dict[str, Any], stages: int) -> None:
    """procjob paced at B1 tuned's measured burst rate (#18: transition p99 <= 1 s there). B1 tuned
    runs last, after a rig restart; this run follows it, on the rig back at its defaults."""
    own = _get_rate(results, "b1_tuned")
    if not ctx.profile.paced_chains or own is None:
        results["procjob_paced_b1"] = skipped("no B1 tuned rate measured in this run")
        return
    paced = run_system(ctx, "procjob", ctx.profile.paced_chains, stages, rate=own / stages, label="procjob_paced_b1")
    results["procjob_paced_b1"] = {
        "offered_stages_per_s": round(own, 2),
        "offered_from": "B1 tuned's burst steady rate",
        **await guarded("paced_b1", paced),
    }
    await settle(ctx)


def _get_rate(results: dict[str, Any], key: str) -> float | None:
    rate = (results.get(key) or {}).get("stages_per_s")
    return float(rate) if isinstance(rate, int | float) and rate > 0 else None


async def settle(ctx: Context) -> None:
    """Wait until the namespaces of the runs so far are gone."""
    if ctx.namespaces:
        seconds = await ctx.api.delete_namespaces(ctx.namespaces, within=ctx.profile.cleanup_timeout)
        log(f"namespaces deleted ({len(ctx.namespaces)}, {seconds:.1f}s)")
        ctx.namespaces.clear()


async def b1_restarted(
    ctx: Context, rig: Rig, variants: list[tuple[str, dict[str, str]]], n: int, stages: int, wait: float
) -> dict[str, dict[str, Any]]:
    """B1 with other controller-manager client settings: restart the rig for each, run, restore the defaults."""
    await ctx.api.close()
    found: dict[str, dict[str, Any]] = {}
    restarted = False
    try:
        for key, env in variants:
            qps, burst = env["RIG_KCM_QPS"], env["RIG_KCM_BURST"]
            label = f"{key}: kube-controller-manager --kube-api-qps={qps} --kube-api-burst={burst}"
            if not await asyncio.to_thread(rig.restart, env, wait=wait, label=label):
                found[key] = skipped(f"the rig was in use by test sessions for {wait:.0f}s; not restarted")
                break
            restarted = True
            ctx.namespaces.clear()  # the restart wiped etcd
            ctx.api = Api(KUBECONFIG)
            try:
                ctx.nodes = await kwok_nodes(ctx.api)
                found[key] = await guarded(key, run_system(ctx, "b1", n, stages, label=key))
                found[key].update(kcm_settings())
            finally:
                await ctx.api.close()
    finally:
        if restarted:
            try:
                await asyncio.to_thread(rig.restart, {}, wait=600.0, label="the rig's defaults")
                await asyncio.to_thread(rig.apply_crd)
                log("rig: back to its default settings")
            finally:
                rig.release_exclusive()
        ctx.namespaces.clear()
        ctx.api = Api(KUBECONFIG)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--systems", default="b0,b1,procjob", help="comma-separated subset of b0,b1,procjob")
    parser.add_argument("--workers", type=int, default=None, help="operator --workers (default: its own, 8)")
    parser.add_argument(
        "--events", choices=("all", "important"), default=None, help="operator --events (default: its own, all)"
    )
    parser.add_argument("--n", type=int, default=None, help="override N (chains/jobs) for every system")
    parser.add_argument("--s", type=int, default=None, help="override S (stages per job)")
    parser.add_argument(
        "--offered-rate",
        type=float,
        default=None,
        help="stages/s offered in the paced procjob run (default: half of B0's measured rate)",
    )
    parser.add_argument("--no-paced", action="store_true", help="skip the paced procjob runs")
    parser.add_argument(
        "--no-finalizer-policy",
        action="store_true",
        help="no MutatingAdmissionPolicy for the audit finalizer: the operator patches it onto each job",
    )
    parser.add_argument("--profile-operator", action="store_true", help="run the operator under cProfile")
    parser.add_argument(
        "--operator-variants",
        default="",
        help="experiment: start the operator through bench/operator_variants.py with these changes (e.g. tracemalloc)",
    )
    parser.add_argument("--no-restart", action="store_true", help="never restart the rig (no B1 tuned)")
    parser.add_argument(
        "--b1-upstream", action="store_true", help="also run B1 at kube-controller-manager's upstream QPS 20/30"
    )
    parser.add_argument("--restart-wait", type=float, default=None, help="seconds to wait for the exclusive rig lock")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each system, wait up to this many seconds for other test sessions/operators to finish",
    )
    parser.add_argument("--tag", default="", help="suffix for the result files (e.g. workers16)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the result files")
    args = parser.parse_args(argv)
    if not set(args.systems.split(",")) <= {"b0", "b1", "procjob"}:
        parser.error("--systems takes a comma-separated subset of b0,b1,procjob")
    args.tag = f"-{args.tag}" if args.tag else ""
    profile = PROFILES[args.profile]
    date = datetime.now(UTC).date().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(bench(args, profile, date))
    except BenchError as exc:
        log(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    stem = args.out / f"{date}-{profile.name}{args.tag}"
    paths = report.write_all(results, stem)
    for path in paths:
        log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(stem.with_suffix(".md").read_text())
    log(f"done in {time.monotonic() - T0:.0f}s")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
