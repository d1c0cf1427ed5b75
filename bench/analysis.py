"""From the observer's records and the harness's request times to latencies and throughput.

Definitions (the same for every system):
- first pod: the chain's first create request sent (pod, Job or ProcessingJob) -> its stage-0 pod
  first seen by the observer.
- transition: pod k Succeeded seen -> pod k+1 first seen (same chain), k = 0..S-2.
- job done: B0 the last pod Succeeded, B1 the last Job Complete, procjob the ProcessingJob's
  Succeeded condition True, all as seen by the observer.
- makespan: first create request -> last job done; `stages_per_s_overall` = N*S / makespan.
- `stages_per_s` (steady state): stage completions between the 10th and the 90th percentile of the
  pod-Succeeded times divided by the time between them (the ramp-up and the tail left out); with
  fewer than 10 stages, the overall rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from bench import statuswrites
from bench.systems import Load


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summary(values: Sequence[float], prefix: str) -> dict[str, float | None]:
    return {
        f"{prefix}_p50_s": r(percentile(values, 50)),
        f"{prefix}_p90_s": r(percentile(values, 90)),
        f"{prefix}_p99_s": r(percentile(values, 99)),
        f"{prefix}_max_s": r(max(values) if values else None),
        f"{prefix}_n": len(values),
    }


def steady_rate(times: Iterable[float]) -> float | None:
    ordered = sorted(times)
    if len(ordered) < 10:
        return None
    lo, hi = int(len(ordered) * 0.1), int(len(ordered) * 0.9) - 1
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else None


def analyse(
    records: list[dict[str, Any]], load: Load, chains: list[str], stages: int, done_kind: str
) -> dict[str, Any]:
    wanted = set(chains)
    added: dict[tuple[str, int], float] = {}
    succeeded: dict[tuple[str, int], float] = {}
    job_done: dict[str, float] = {}
    failed_pods = 0
    for rec in sorted(records, key=lambda x: x["t"]):
        chain, stage = rec.get("c"), rec.get("s")
        if chain not in wanted:
            continue
        if rec["r"] == "pod" and stage is not None:
            key = (chain, int(stage))
            added.setdefault(key, rec["t"])
            if rec["p"] == "Succeeded":
                succeeded.setdefault(key, rec["t"])
            elif rec["p"] == "Failed":
                failed_pods += 1
        if rec["r"] == done_kind:
            state = str(rec.get("p") or "")
            last = stage == stages - 1
            finished = {
                "pod": state == "Succeeded" and last,  # B0: the chain's last pod
                "job": state == "Complete" and last,  # B1: the chain's last Job
                "pj": state.startswith("True:"),  # procjob: Succeeded=True
            }[done_kind]
            if finished:
                job_done.setdefault(chain, rec["t"])

    first_pod = [added[(c, 0)] - load.requested[(c, 0)] for c in chains if (c, 0) in added and (c, 0) in load.requested]
    transitions = [
        added[(c, k + 1)] - succeeded[(c, k)]
        for c in chains
        for k in range(stages - 1)
        if (c, k) in succeeded and (c, k + 1) in added
    ]
    end_to_end = [job_done[c] - load.requested[(c, 0)] for c in chains if c in job_done and (c, 0) in load.requested]
    start = min((load.requested[(c, 0)] for c in chains if (c, 0) in load.requested), default=load.first_request)
    end = max(job_done.values(), default=load.last_done)
    makespan = end - start
    total_stages = len(chains) * stages
    steady = steady_rate(succeeded.values())
    if steady is None and makespan > 0:  # too few stages for a 10-90 % window (e.g. the smoke profile)
        steady = total_stages / makespan
    census = statuswrites.per_stage(records, wanted, total_stages) if done_kind == "pj" else {}
    return {
        **({"status_writes_by_cause_per_stage": census} if census else {}),
        "chains": len(chains),
        "stages_per_chain": stages,
        "stages_total": total_stages,
        "stages_per_s": r(steady, 2),
        "stages_per_s_overall": r(total_stages / makespan, 2) if makespan > 0 else None,
        "jobs_per_s": r(len(chains) / makespan, 2) if makespan > 0 else None,
        "makespan_s": r(makespan, 2),
        **summary(first_pod, "first_pod"),
        **summary(transitions, "transition"),
        **summary(end_to_end, "job_latency"),
        "pods_seen": len(added),
        "pods_succeeded_seen": len(succeeded),
        "pods_failed_seen": failed_pods,
        "jobs_done_seen": len(job_done),
        "observer_records": len(records),
    }
