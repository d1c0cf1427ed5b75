"""The analysis of a run and its results: chaos/results/<date>-<profile>.json and a markdown table.

The JSON's `invariants` is {"I1": true, ..., "I5": true} (names others rely on); the details of
each (what was checked, the first violations in words) are in `invariant_details`; each fault
has its own verdict (chaos.faultcheck) under `faults`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import scrub_paths
from bench.run import machine_facts

from chaos.context import Context
from chaos.faultcheck import crash_loops, judge
from chaos.history import build
from chaos.invariants import check_i1, check_i2, stall_windows
from chaos.ledger import check_i3, rows_from
from chaos.leftovers import check_i4
from chaos.policy import Disruption
from chaos.replicas import RESTART_DELAY, Exit
from chaos.schedule import Profile
from chaos.tally import check_i5

TITLES = {
    "I1": "at most one pod UID per (job, stage, attempt); no adoption across UIDs",
    "I2": "one terminal state per job, consistent with its pods and policy; reasons right; gaps >= backoff",
    "I3": "audit rows = observed transitions; per job seq 1..N exact",
    "I4": "no leftover finalizers or stuck pods; namespaces delete; no ghost",
    "I5": "counters match the observer",
}

NOT_INJECTED = [
    {
        "fault": "traffic dropped on a network namespace",
        "why": "the operators run as local processes in the host's network namespace; dropping their packets "
        "with iptables would need root rules on a shared machine",
        "here": "the suite's proxy in front of the API server stalls every watch stream (chaos.proxy)",
        "real cluster": "a NetworkPolicy/iptables DROP or tc netem in the operator pod's netns, or toxiproxy",
    },
    {
        "fault": "a kubelet's own eviction (node pressure) and a kubelet that stops",
        "why": "kwok plays the kubelet: there is no node pressure and no kubelet process",
        "here": "the Eviction API (what kubectl drain uses) and a kwok Node that stops heartbeating and is deleted",
        "real cluster": "stress-ng for memory pressure; systemctl stop kubelet, or a cloud instance stopped",
    },
]


def driver_log(prof: Profile, seed: int, out: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Everything the analysis needs from the driver, as JSON (kept in the work dir as driver.json,
    so `python -m chaos.run --reanalyse DIR` can judge a run again)."""
    return {
        "profile": prof.name,
        "seed": seed,
        "timings": list(ctx.timings),
        "t0": ctx.t0,
        "faults": ctx.faults,
        "exits": [vars(e) for e in ctx.replicas.exits],
        "scrapes": [{"replica": n, "start": s, "last": v} for (n, s), v in ctx.replicas.scrapes.items()],
        "disruptions": {uid: [d.method, d.t] for uid, d in ctx.disruptions.items()},
        "held": ctx.held,
        "cpu_stall": ctx.pressure.samples,
        "actions": ctx.actions,
        "settings": settings(prof, ctx),
        "out": out,
    }


def analyse(
    driver: dict[str, Any], records: list[dict[str, Any]], rows: list[dict[str, Any]], requests: list[list[Any]]
) -> dict[str, Any]:
    history = build(records)
    by_job = rows_from(rows)
    out = driver["out"]
    disruptions = {uid: Disruption(m, t) for uid, (m, t) in driver["disruptions"].items()}
    exits = [Exit(**e) for e in driver["exits"]]
    scrapes = {"processes": driver["scrapes"], "calm": out.get("calm")}
    verdicts = {
        "I1": check_i1(history),
        "I2": check_i2(history, by_job, disruptions, stall_windows(driver["faults"])),
        "I3": check_i3(history, by_job),
        "I4": check_i4(history, out["end"], driver["held"]),
        "I5": check_i5(history, by_job, scrapes),
    }
    timings = (driver["timings"][0], driver["timings"][1], driver["timings"][2])
    faults = []
    for record in sorted(driver["faults"], key=lambda r: r["started"]):
        verdict = judge(record, history, exits, requests, timings, driver.get("cpu_stall"))
        faults.append({**record, "offset_s": round(record["started"] - driver["t0"], 1), **verdict})
    loops = crash_loops(exits)
    ok = all(v.ok for v in verdicts.values()) and all(f["ok"] for f in faults) and not loops["unexplained"]
    return {
        "suite": "procjob-chaos",
        "profile": driver["profile"],
        "seed": driver["seed"],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "ok": ok,
        "invariants": {k: v.ok for k, v in verdicts.items()},
        "invariant_details": {k: v.as_dict() for k, v in verdicts.items()},
        "faults": faults,
        "exits": {**loops, "all": driver["exits"]},
        "settings": driver["settings"],
        "workload": out["workload"],
        "drain": out.get("drain"),
        "flood": out.get("flood"),
        "calm": {k: v for k, v in (out.get("calm") or {}).items() if k not in ("before", "after")},
        "schedule": out["schedule"],
        "observer": {"records": len(records), "gaps": [list(g) for g in history.gaps], "ended_cleanly": history.ended},
        "proxy": {"requests": len(requests), "by_status": _statuses(requests)},
        "actions": _count(a["what"] for a in driver["actions"]),
        "not_injected": NOT_INJECTED,
        "machine": machine_facts(),
    }


def settings(prof: Profile, ctx: Context) -> dict[str, Any]:
    lease, renew, retry = prof.timings
    return {
        "jobs": prof.jobs,
        "namespaces": prof.namespaces,
        "max_running_jobs": prof.queue[0],
        "max_running_jobs_per_namespace": prof.queue[1],
        "leader_election": {"lease_s": lease, "renew_deadline_s": renew, "retry_s": retry},
        "replicas": 2,
        "replica_restart_delay_s": RESTART_DELAY,
        "flood_jobs": prof.flood,
        "calm_jobs": prof.calm_jobs,
        "log_archive": "off (kwok pods have no logs)",
        "budget": prof.budget,
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def _statuses(requests: list[list[Any]]) -> dict[str, int]:
    return _count(str(r[4]) for r in requests)


def markdown(results: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in results["workload"]["by_kind"].items())
    lines = [
        f"# procjob chaos — profile {results['profile']}, seed {results['seed']}",
        "",
        f"{results['date']}; wall time {results.get('wall_time_s')} s; {results['workload']['jobs']} jobs ({kinds}); "
        f"overall: **{'PASS' if results['ok'] else 'FAIL'}**",
        "",
        "| Invariant | Holds | Checked | Violations | What |",
        "|---|---|---|---|---|",
    ]
    for key, title in TITLES.items():
        detail = results["invariant_details"][key]
        first = detail["violations"][0] if detail["violations"] else ""
        lines.append(
            f"| {key} | {'yes' if detail['ok'] else '**no**'} | {detail['checked']} | "
            f"{detail['notes'].get('violations_total', 0)} {_cell(first)} | {title} |"
        )
    lines += ["", "| t (s) | Fault | Holds | Evidence |", "|---|---|---|---|"]
    for fault in results["faults"]:
        evidence = ", ".join(f"{k}={_cell(str(v))}" for k, v in fault["checks"].items())
        lines.append(f"| {fault['offset_s']} | {fault['label']} | {'yes' if fault['ok'] else '**no**'} | {evidence} |")
    exits = results["exits"]["by_cause"]
    lines += ["", f"Replica exits by cause: {exits or 'none'}; unexplained: {len(results['exits']['unexplained'])}."]
    if results.get("flood"):
        f = results["flood"]
        lines.append(
            f"Flood: {f['jobs']} jobs created with no operator running in {f['create_s']} s; drained in "
            f"{f['time_to_drain_s']} s after start; peak RSS {f['peak_rss_mib']} MiB; 429s: operator "
            f"{f['operator_429s']}, creates {f['create_429s']}."
        )
    s = results["settings"]
    election = s["leader_election"]
    lines.append(
        f"Settings: leader election lease {election['lease_s']} s / renew {election['renew_deadline_s']} s / retry "
        f"{election['retry_s']} s; queue {s['max_running_jobs']} ({s['max_running_jobs_per_namespace']} per "
        f"namespace); observer gaps: {len(results['observer']['gaps'])}."
    )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:160]


def write(results: dict[str, Any], out: Path, stem: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(scrub_paths(json.dumps(results, indent=1, default=str)) + "\n")
    md_path.write_text(scrub_paths(markdown(results)))
    return json_path, md_path
