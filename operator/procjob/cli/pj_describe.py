"""`kubectl pj describe`: a job's stages, attempts, retry decisions, conditions and events as text.

A pure rendering of the job's JSON (and its Events, when RBAC lets the caller list them) at a
given `now`, one named step per section, so that it is tested without a server. A job whose stages
form a graph (dependsOn) or that has finally stages also gets its graph drawn (`Graph:`): the stages
by level — a stage's level is one more than its deepest upstream stage's, so the stages of one level
may run at the same time — each with its state and the stages it waits for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from procjob.cli.pj_api import RETRY_ANNOTATION
from procjob.cli.pj_state import same_time, state_of, status_of
from procjob.core.dag import Graph
from procjob.core.timefmt import human_duration, parse_time

MAX_EVENTS = 15


def render_describe(job: Mapping[str, Any], events: Sequence[Mapping[str, Any]] | None, now: datetime) -> str:
    lines = [
        *_summary(job, now),
        *_graph(job),
        "",
        "Stages:",
        *_stages(job, now),
        *_items(job, now),
        "",
        "Attempts:",
        *_attempts(job, now),
        *_retry_decisions(job),
        "",
        "Conditions:",
        *_conditions(job, now),
    ]
    if events is not None:
        lines += ["", "Events:", *_events(events, now)]
    return "\n".join(lines) + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        indent + "   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _summary(job: Mapping[str, Any], now: datetime) -> list[str]:
    """Name, state, progress, times, queue position, pending requests, observed generation."""
    meta = job.get("metadata") or {}
    status = status_of(job)
    lines = [
        f"Name:         {meta.get('name')}",
        f"Namespace:    {meta.get('namespace')}",
        f"UID:          {meta.get('uid')}",
        f"Created:      {_when(meta.get('creationTimestamp'), now)}",
        f"State:        {state_of(job)}",
    ]
    if status.get("phase"):
        lines.append(f"Phase:        {status['phase']}")
    lines.append(f"Progress:     {status.get('progress') or '-'}  (attempts: {status.get('attempts', 0)})")
    lines.append(f"Started:      {_when(status.get('startTime'), now)}")
    lines.append(f"Finished:     {_when(status.get('completionTime'), now)}")
    if status.get("duration"):
        lines.append(f"Duration:     {status['duration']}")
    queue = status.get("queue") or {}
    if queue.get("position"):
        eta = queue.get("estimatedStartTime")
        lines.append(
            f"Queue:        position {queue['position']}" + (f", estimated start {_when(eta, now)}" if eta else "")
        )
    return lines + _requests(job)


def _requests(job: Mapping[str, Any]) -> list[str]:
    """The user's requests (suspend, cancel, retry) and whether the operator has caught up."""
    meta, spec, status = job.get("metadata") or {}, job.get("spec") or {}, status_of(job)
    lines = []
    requests = [f"{k}=true" for k in ("suspend", "cancel") if spec.get(k)]
    retry = (meta.get("annotations") or {}).get(RETRY_ANNOTATION)
    if retry:
        acked = "acknowledged" if same_time(status.get("lastRetryRequest"), retry) else "not yet acknowledged"
        requests.append(f"retry {retry} ({acked})")
    if requests:
        lines.append(f"Requests:     {', '.join(requests)}")
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if observed is not None and generation is not None and int(observed) < int(generation):
        lines.append(f"Observed:     generation {observed} of {generation} (the operator has not caught up yet)")
    return lines


def _stage_statuses(job: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(spec stage, its status or {}) in spec order: the stages, then the finally stages."""
    by_name = {s.get("name"): s for s in status_of(job).get("stages") or []}
    spec = job.get("spec") or {}
    return [(item, by_name.get(item.get("name"), {})) for item in [*_list(spec, "stages"), *_list(spec, "finally")]]


def _list(spec: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return [item for item in spec.get(key) or [] if isinstance(item, Mapping)]


class _Node:
    """A spec stage as core.dag reads it (name, dependsOn), from the job's JSON."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.name = str(item.get("name"))
        deps = item.get("dependsOn")
        self.depends_on = [str(d) for d in deps] if isinstance(deps, list) else None


def _levels(items: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, tuple[str, ...]]]:
    """(level, stage, its upstream stages) in the order the operator looks at them."""
    graph = Graph.of([_Node(i) for i in items])
    level: dict[str, int] = {}
    for name in graph.order():
        level[name] = 1 + max((level.get(d, 0) for d in graph.deps[name]), default=0)
    return [(level[name], name, graph.deps[name]) for name in graph.order()]


def _graph(job: Mapping[str, Any]) -> list[str]:
    """The stages' graph by level, then the finally stages': only for a job with dependsOn or finally."""
    spec = job.get("spec") or {}
    stages, final = _list(spec, "stages"), _list(spec, "finally")
    if not final and not any("dependsOn" in item for item in stages):
        return []
    states = {s.get("name"): s for s in status_of(job).get("stages") or []}
    lines = ["", "Graph:"]
    for title, items in (("", stages), ("finally", final)):
        if not items:
            continue
        if title:
            ended = status_of(job).get("finally") or {}
            after = f"; they ended {ended.get('outcome')}, {ended.get('reason')}" if ended else ""
            lines.append(f"  Finally (after the stages end, whatever the outcome{after}):")
        rows, shown = [], 0
        for level, name, deps in _levels(items):
            st = states.get(name) or {}
            mark = str(level) if level != shown else ""
            shown = level
            rows.append([mark, name, _node_state(st), ", ".join(deps) or "-"])
        lines += table(["LEVEL", "STAGE", "STATE", "WAITS FOR"], rows, indent="    " if title else "  ")
    return lines


def _node_state(stage: Mapping[str, Any]) -> str:
    state = str(stage.get("state") or "Pending")
    count = stage.get("attemptCount") or 0
    fan = stage.get("items")
    if isinstance(fan, Mapping):
        done = int(fan.get("succeeded") or 0) + int(fan.get("failed") or 0)
        return f"{state} (items {done}/{fan.get('total', 0)})"
    return f"{state} (attempt {count})" if state in ("Running", "BackoffWaiting") and count else state


def _items(job: Mapping[str, Any], now: datetime) -> list[str]:
    """Each fanned-out stage's items: counts, the failed ones, those in flight (every attempt of every
    item is in the audit: `kubectl pj history`)."""
    lines: list[str] = []
    for item, st in _stage_statuses(job):
        fan = st.get("items")
        if not isinstance(fan, Mapping):
            continue
        policy = item.get("failurePolicy") or {}
        flight = fan.get("inFlight") or []
        waiting = [f for f in flight if f.get("state") == "BackoffWaiting"]
        lines += [
            "",
            f"Items of {item.get('name')} (parallelism {item.get('parallelism') or 1}, "
            f"{policy.get('mode') or 'FailFast'}, {policy.get('toleratedFailures') or 0} tolerated):",
            f"  {fan.get('succeeded', 0)} succeeded, {fan.get('failed', 0)} failed, {len(flight) - len(waiting)} "
            f"running, {len(waiting)} waiting to retry, of {fan.get('total', 0)}",
        ]
        if fan.get("failedIndexes"):
            lines.append(f"  failed items: {fan['failedIndexes']}")
        rows = [
            [
                str(f.get("index")),
                str(f.get("state")),
                str((f.get("attempt") or {}).get("attempt", "-")),
                (f.get("attempt") or {}).get("podName", "-"),
                _when(f.get("nextAttemptTime"), now) if f.get("nextAttemptTime") else "-",
            ]
            for f in flight
        ]
        if rows:
            lines += table(["ITEM", "STATE", "ATTEMPT", "POD", "NEXT ATTEMPT"], rows)
    return lines


def _stages(job: Mapping[str, Any], now: datetime) -> list[str]:
    rows = []
    for item, st in _stage_statuses(job):
        what = f"uses: {item['uses']}" if item.get("uses") else str(item.get("image") or "-")
        rows.append(
            [
                item.get("name", "?"),
                st.get("state", "Pending"),
                str(st.get("attemptCount", 0)),
                str(st.get("chargedFailures", 0)),
                _span(st.get("startTime"), st.get("completionTime"), now) if st.get("startTime") else "-",
                _when(st.get("nextAttemptTime"), now) if st.get("nextAttemptTime") else "-",
                what,
            ]
        )
    return table(["STAGE", "STATE", "ATTEMPTS", "CHARGED", "DURATION", "NEXT ATTEMPT", "RUNS"], rows)


def _attempts(job: Mapping[str, Any], now: datetime) -> list[str]:
    rows = [_attempt_row(st, a, now) for _, st in _stage_statuses(job) for a in st.get("attempts") or []]
    if not rows:
        return ["  (none yet)"]
    return table(["STAGE", "#", "STATE", "POD", "START", "END", "DURATION", "EXIT", "REASON"], rows)


def _attempt_row(stage: Mapping[str, Any], attempt: Mapping[str, Any], now: datetime) -> list[str]:
    reason = attempt.get("reason") or ""
    if attempt.get("charged") is False and attempt.get("state") == "Failed":
        reason += " (not charged)"
    start = attempt.get("startTime") or attempt.get("createTime")
    return [
        str(stage.get("name")),
        str(attempt.get("attempt")),
        attempt.get("state", "-"),
        attempt.get("podName", "-"),
        _short(start),
        _short(attempt.get("finishTime")),
        _span(start, attempt.get("finishTime"), now),
        "-" if attempt.get("exitCode") is None else str(attempt["exitCode"]),
        reason or "-",
    ]


def _retry_decisions(job: Mapping[str, Any]) -> list[str]:
    """The latest retry decision of each stage, in words; nothing when no stage has one."""
    decisions = []
    for _, st in _stage_statuses(job):
        d = st.get("lastRetryDecision")
        if d:
            code = f", exit {d['exitCode']}" if d.get("exitCode") is not None else ""
            delay = f", next attempt after {d['delaySeconds']:g}s" if d.get("delaySeconds") is not None else ""
            left = "retry" if d.get("retriesLeft") == 1 else "retries"
            decisions.append(
                f"  {st.get('name')}: {d.get('failureReason')}{code} matched {d.get('rule')} -> {d.get('action')}"
                f"{delay}; {d.get('retriesLeft')} charged {left} left"
            )
    return ["", "Retry decisions (latest per stage):", *decisions] if decisions else []


def _conditions(job: Mapping[str, Any], now: datetime) -> list[str]:
    conds = status_of(job).get("conditions") or []
    if not conds:
        return ["  (none: the operator has not reconciled this job yet)"]
    rows = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            _span(c.get("lastTransitionTime"), None, now).rstrip("+") + " ago",
            c.get("message", ""),
        ]
        for c in conds
    ]
    return table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], rows)


def _events(events: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    """The latest events, oldest first."""
    recent = sorted(events, key=lambda e: str(e.get("eventTime") or e.get("lastTimestamp") or ""))[-MAX_EVENTS:]
    if not recent:
        return ["  (none)"]
    rows = [
        [
            _span(e.get("lastTimestamp") or e.get("eventTime"), None, now).rstrip("+"),
            e.get("type", ""),
            e.get("reason", ""),
            e.get("message", ""),
        ]
        for e in recent
    ]
    return table(["AGE", "TYPE", "REASON", "MESSAGE"], rows)


def _when(value: str | None, now: datetime) -> str:
    at = parse_time(value) if value else None
    if at is None:
        return "-"
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} (in {human_duration(at - now)})" if at > now else f"{stamp} ({human_duration(now - at)} ago)"


def _short(value: str | None) -> str:
    at = parse_time(value) if value else None
    return "-" if at is None else at.astimezone(UTC).strftime("%H:%M:%S")


def _span(start: str | None, end: str | None, now: datetime) -> str:
    begin = parse_time(start) if start else None
    if begin is None:
        return "-"
    finish = parse_time(end) if end else None
    return human_duration((finish or now) - begin) + ("" if finish else "+")
