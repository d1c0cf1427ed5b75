"""The write floor: the fewest API writes per stage this design allows, and every system against it.

A controlled stage on this rig cannot cost fewer API writes than:

| component | writes | who |
|---|---|---|
| pod create | 1 | the controller (procjob, the Job controller) |
| binding | 1 | the scheduler |
| the kubelet's pod status writes | k | the kubelet (kwok here) |
| one status write of the job | 1 | the controller |

`floor_writes_per_stage` = 3 + k. With per-pod garbage collection (procjob's podGC, B1's
ttlSecondsAfterFinished) two more: the controller's DELETE and the kubelet's final one; and the
scheduler posts one "Scheduled" Event per pod: `floor_writes_per_stage_with_pod_gc` = 6 + k.
k is not assumed: it is B0's measured PATCH/PUT pods/status per stage (B0's pods are pre-bound and
uncontrolled, so those writes are the kubelet's alone), else the system's own. The controller's own
floor (`own_floor_writes_per_stage`) is create + one status write + delete = 3; procjob's own
writes are its `procjob_api_requests_total` of every verb but GET.

Each system's measured writes (`apiserver_writes_by_resource`) are split into the same components
(a component may show more than its floor: several status writes per stage, Events of the
controller besides the scheduler's), the rest is `other` (the job objects' creates, finalizer
patches, Leases, ...). Reported, never asserted.
"""

from __future__ import annotations

from typing import Any

# component -> (its floor per stage, or None for the kubelet's measured count; the resources it counts)
COMPONENTS: dict[str, tuple[float | None, tuple[str, ...]]] = {
    "pod_create": (1.0, ("POST pods",)),
    "binding": (1.0, ("POST pods/binding",)),
    "kubelet_status": (None, ("PATCH pods/status", "PUT pods/status")),
    "status_write": (
        1.0,
        ("PUT processingjobs/status", "PATCH processingjobs/status", "PUT jobs/status", "PATCH jobs/status"),
    ),
    "events": (1.0, ("POST events", "PATCH events", "PUT events")),
    "pod_gc": (2.0, ("DELETE pods",)),
}
WITHOUT_GC = ("pod_create", "binding", "kubelet_status", "status_write")  # the floor
OWN_FLOOR = 3.0  # the controller's own: pod create, one status write, pod delete
READ_VERBS = ("GET", "LIST", "WATCH")


def _per_stage(row: dict[str, Any], resources: tuple[str, ...]) -> float | None:
    writes = row.get("apiserver_writes_by_resource")
    stages = row.get("stages_total")
    if not isinstance(writes, dict) or not stages:
        return None
    return sum(float(writes.get(r, 0)) for r in resources) / float(stages)


def kubelet_writes(results: dict[str, Any]) -> tuple[float | None, str | None]:
    """The kubelet's pod status writes per stage, and the system they were measured on (B0 first)."""
    resources = COMPONENTS["kubelet_status"][1]
    for key in ("b0", "b0_repeat", "procjob", "b1_tuned", "b1_default"):
        row = results.get(key)
        if isinstance(row, dict) and (value := _per_stage(row, resources)):
            return round(value, 2), key
    return None, None


def breakdown(row: dict[str, Any]) -> dict[str, float] | None:
    """A run's writes per stage by component, and `other` for the rest."""
    total = row.get("apiserver_writes_per_stage")
    parts = {name: _per_stage(row, resources) for name, (_, resources) in COMPONENTS.items()}
    if not isinstance(total, int | float) or any(v is None for v in parts.values()):
        return None
    found = {name: round(v, 2) for name, v in parts.items() if v is not None}
    found["other"] = round(max(0.0, float(total) - sum(found.values())), 2)
    return found


def own_writes(row: dict[str, Any]) -> float | None:
    """The operator's own API writes per stage (its requests of every verb but reads)."""
    verbs = row.get("operator_api_requests_per_stage")
    if not isinstance(verbs, dict) or not verbs:
        return None
    return round(sum(float(v) for k, v in verbs.items() if k not in READ_VERBS), 2)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def write_floor(results: dict[str, Any]) -> dict[str, Any]:
    """The floor, and every system that ran measured against it (see the module docstring)."""
    k, source = kubelet_writes(results)
    components = {name: (floor if floor is not None else k) for name, (floor, _) in COMPONENTS.items()}
    floor = round(sum(components[n] or 0.0 for n in WITHOUT_GC), 2) if k is not None else None
    with_gc = round(sum(v or 0.0 for v in components.values()), 2) if k is not None else None
    systems: dict[str, Any] = {}
    for key, row in results.items():
        if not isinstance(row, dict) or not isinstance(row.get("apiserver_writes_per_stage"), int | float):
            continue
        controlled = key.startswith(("b1", "procjob"))
        entry: dict[str, Any] = {
            "writes_per_stage": row["apiserver_writes_per_stage"],
            "over_floor_with_pod_gc": _ratio(row["apiserver_writes_per_stage"], with_gc) if controlled else None,
            "by_component": breakdown(row),
        }
        if key.startswith("procjob"):
            entry["own_writes_per_stage"] = own_writes(row)
            entry["own_over_floor"] = _ratio(entry["own_writes_per_stage"], OWN_FLOOR)
        systems[key] = entry
    return {
        "kubelet_status_writes_per_stage": k,
        "kubelet_status_measured_on": source,
        "components": components,
        "floor_writes_per_stage": floor,
        "floor_writes_per_stage_with_pod_gc": with_gc,
        "own_floor_writes_per_stage": OWN_FLOOR,
        "systems": systems,
    }


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(results: dict[str, Any], titles: dict[str, str]) -> list[str]:
    """The floor and each system against it, as a markdown table (`titles`: system key -> name)."""
    floor = results.get("write_floor")
    if not isinstance(floor, dict) or floor.get("floor_writes_per_stage") is None:
        return []
    c = floor["components"]
    names = ("pod_create", "binding", "kubelet_status", "status_write", "events", "pod_gc")
    lines = [
        f"Write floor (bench/floor.py): pod create {_fmt(c['pod_create'])} + binding {_fmt(c['binding'])} + "
        f"the kubelet's status writes {_fmt(c['kubelet_status'])} (measured on {floor['kubelet_status_measured_on']}) "
        f"+ one status write {_fmt(c['status_write'])} = **{_fmt(floor['floor_writes_per_stage'])}** writes per "
        f"stage; with per-pod GC (delete and the kubelet's final delete, {_fmt(c['pod_gc'])}) and the scheduler's "
        f"Scheduled Event ({_fmt(c['events'])}): **{_fmt(floor['floor_writes_per_stage_with_pod_gc'])}**. "
        f"A controller's own floor (create, one status write, delete): {_fmt(floor['own_floor_writes_per_stage'])}.",
        "",
        "| System | writes / stage | / floor with GC | own writes / stage (/ 3.0) | pod create | binding "
        "| kubelet status | status writes | Events | pod deletes | other |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| floor | {_fmt(floor['floor_writes_per_stage_with_pod_gc'])} | 1.00 | "
        f"{_fmt(floor['own_floor_writes_per_stage'])} | " + " | ".join(_fmt(c[n]) for n in names) + " | 0.00 |",
    ]
    for key, entry in floor["systems"].items():
        parts = entry.get("by_component") or {}
        own = entry.get("own_writes_per_stage")
        own_text = f"{_fmt(own)} ({_fmt(entry.get('own_over_floor'))}x)" if own is not None else "-"
        lines.append(
            f"| {titles.get(key, key)} | {_fmt(entry['writes_per_stage'])} | {_fmt(entry['over_floor_with_pod_gc'])} "
            f"| {own_text} | " + " | ".join(_fmt(parts.get(n)) for n in (*names, "other")) + " |"
        )
    lines.append("")
    return lines
