"""What a run cost: API server requests (all clients, by verb and resource) and CPU of the rig's processes.

A snapshot is taken before and after the measured window; the difference is the run's cost. The API
server's own counter (`apiserver_request_total`) sees every client (harness, controller-manager,
scheduler, kwok, operator), so "API writes per stage" compares the systems on the same scale.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.api import Api
from bench.operatorproc import parse_metrics
from bench.rigctl import Rig
from procjob.models.timestamps import parse_time

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Snapshot:
    at: float
    requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (verb, resource[/sub]) -> count
    cpu: dict[str, float] = field(default_factory=dict)  # rig component -> CPU seconds


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


async def snapshot(api: Api) -> Snapshot:
    snap = Snapshot(at=time.time())
    for name, value in parse_metrics(await api.text("/metrics")).items():
        if not name.startswith("apiserver_request_total{"):
            continue
        labels = dict(_LABEL.findall(name))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = (labels.get("verb", ""), resource)
        snap.requests[key] = snap.requests.get(key, 0.0) + value
    for name, proc in Rig.components().items():
        snap.cpu[name] = _cpu(proc)
    return snap


def diff(before: Snapshot, after: Snapshot, stages: int, jobs: int) -> dict[str, object]:
    by_verb: dict[str, float] = {}
    writes_by_resource: dict[str, float] = {}
    for key, value in after.requests.items():
        delta = value - before.requests.get(key, 0.0)
        if delta <= 0:
            continue
        verb, resource = key
        by_verb[verb] = by_verb.get(verb, 0.0) + delta
        if verb in WRITE_VERBS:
            writes_by_resource[f"{verb} {resource}"] = writes_by_resource.get(f"{verb} {resource}", 0.0) + delta
    writes = sum(v for k, v in by_verb.items() if k in WRITE_VERBS)
    seconds = after.at - before.at
    cpu = {name: round(after.cpu.get(name, 0.0) - before.cpu.get(name, 0.0), 2) for name in after.cpu}
    return {
        "window_s": round(seconds, 2),
        "apiserver_writes": int(writes),
        "apiserver_writes_per_s": round(writes / seconds, 1) if seconds > 0 else None,
        "apiserver_writes_per_stage": round(writes / stages, 2) if stages else None,
        "apiserver_requests_by_verb_per_stage": {k: round(v / stages, 2) for k, v in sorted(by_verb.items())},
        "apiserver_writes_by_resource": {k: int(v) for k, v in sorted(writes_by_resource.items(), key=lambda x: -x[1])},
        "rig_cpu_s": cpu,
        "rig_cpu_s_per_1000_jobs": {k: round(v * 1000 / jobs, 1) for k, v in cpu.items()} if jobs else {},
        "apiserver_cpu_s_per_1000_stages": round(cpu.get("kube-apiserver", 0.0) * 1000 / stages, 1) if stages else None,
        "kcm_cpu_s_per_1000_stages": (
            round(cpu.get("kube-controller-manager", 0.0) * 1000 / stages, 1) if stages else None
        ),
    }


def events_by_source(items: list[dict[str, Any]], since: float = 0.0) -> dict[str, int]:
    """Event objects (each one POST) created at or after `since` (epoch seconds), by the component that
    reported them and their reason.

    `reportingComponent` (events.k8s.io/v1 writers such as the scheduler) or else `source.component`
    (core/v1 writers such as the operator); "?" when an Event names neither.
    """
    counts: dict[str, int] = {}
    for item in items:
        created = parse_time((item.get("metadata") or {}).get("creationTimestamp"))
        if created is not None and created.timestamp() < int(since):
            continue
        component = item.get("reportingComponent") or (item.get("source") or {}).get("component") or "?"
        key = f"{component} {item.get('reason') or '?'}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


async def namespace_events(api: Api, namespace: str) -> list[dict[str, Any]]:
    """Every Event in the namespace, listed in pages of 500."""
    items: list[dict[str, Any]] = []
    params = {"limit": "500"}
    while True:
        page = await api.request("GET", f"/api/v1/namespaces/{namespace}/events", params=params, seconds=60)
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items
        params = {"limit": "500", "continue": token}
