"""Which attempt `kubectl pj logs` reads in a fanned-out stage (forEach): each item runs its own chain
of attempts (pods `<job>-<stage>-i<item>-a<attempt>-<uid8>`, labelled `procjob.dev/item`), so an
attempt number alone names one pod per item. `--item K` is required there and refused elsewhere.

The item's attempt: the one given, else its latest as the status knows it (its in-flight entry, the
stage's last attempts); when the status no longer lists the item (it ended long ago) the caller asks
the item's pods (by their labels) or the archive's index (`pick_latest`). Stages without items keep
`procjob.cli.pj_state.pick_attempt`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from procjob.cli.pj_api import GROUP, LABEL_JOB_UID
from procjob.cli.pj_errors import PluginError
from procjob.cli.pj_state import job_key, pick_attempt, pick_stage, status_of
from procjob.core.naming import pod_name

LABEL_STAGE = f"{GROUP}/stage"  # = procjob.models.job.LABEL_STAGE (the plugin does not load pydantic)
LABEL_ITEM = f"{GROUP}/item"  # = procjob.models.job.LABEL_ITEM
LABEL_ATTEMPT = f"{GROUP}/attempt"  # = procjob.models.job.LABEL_ATTEMPT


@dataclass(frozen=True)
class Pick:
    """The attempt whose log is read; `attempt` (and `pod`) None: the item's latest, which the status
    no longer lists (its pods or the archive say)."""

    stage: str
    item: int | None
    attempt: int | None
    pod: str | None


def fan_out(job: Mapping[str, Any], stage: str) -> dict[str, Any] | None:
    """The stage's `status.stages[].items` when it is fanned out ({} while the status has none yet);
    None for a stage without forEach."""
    spec = job.get("spec") or {}
    declared = [s for s in [*(spec.get("stages") or []), *(spec.get("finally") or [])] if s.get("name") == stage]
    status = _stage_status(job, stage)
    items = status.get("items")
    if isinstance(items, dict):
        return items
    return {} if any(s.get("forEach") is not None for s in declared) else None


def pick(job: Mapping[str, Any], stage: str | None, attempt: int | None, item: int | None) -> Pick:
    """The stage (as `pick_attempt` picks it), the item (`--item`, required in a fanned-out stage) and
    its attempt; a clear error naming `--item` when it is missing or out of range."""
    meta = job.get("metadata") or {}
    key = job_key(meta.get("namespace", "?"), meta.get("name", "?"))
    name = pick_stage(job, stage)
    items = fan_out(job, name)
    if items is None:
        if item is not None:
            raise PluginError(f"{key}: stage {name} has no items (it has no forEach); drop --item")
        picked, number, pod = pick_attempt(job, stage, attempt)
        return Pick(picked, None, number, pod)
    total = items.get("total")
    if item is None:
        over = f"over {_count(total)}" if isinstance(total, int) else "(its items are not listed yet)"
        raise PluginError(f"{key}: stage {name} is fanned out {over} (forEach): name one with --item K")
    if isinstance(total, int) and not 0 <= item < total:
        raise PluginError(f"{key}: stage {name} has no item {item} ({_count(total)}: --item 0 to {total - 1})")
    listed = {int(a["attempt"]): a for a in _item_attempts(job, name, items, item)}
    if attempt is None:
        if not listed:
            return Pick(name, item, None, None)
        attempt = max(listed)
    highest = int(items.get("maxAttempt") or 0)
    if attempt < 1 or (highest and attempt > highest):
        made = f"attempts numbered up to {highest}" if highest else "no attempt made yet"
        raise PluginError(f"{key}: stage {name} item {item} has no attempt {attempt} ({made})")
    found = listed.get(attempt) or {}
    pod = found.get("podName") or pod_name(meta["name"], meta["uid"], name, attempt, item)
    return Pick(name, item, attempt, str(pod))


def item_selector(uid: str, stage: str, item: int) -> str:
    """The label selector of one item's pods."""
    return f"{LABEL_JOB_UID}={uid},{LABEL_STAGE}={stage},{LABEL_ITEM}={item}"


def latest_pod(pods: Iterable[Mapping[str, Any]]) -> tuple[int, str] | None:
    """(attempt, pod name) of the highest attempt among an item's pods (their attempt label)."""
    found: list[tuple[int, str]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        label = str((meta.get("labels") or {}).get(LABEL_ATTEMPT) or "")
        if label.isdigit() and len(label) <= 9 and meta.get("name"):
            found.append((int(label), str(meta["name"])))
    return max(found) if found else None


def _stage_status(job: Mapping[str, Any], stage: str) -> dict[str, Any]:
    stages: list[dict[str, Any]] = status_of(job).get("stages") or []
    return next((s for s in stages if s.get("name") == stage), {})


def _item_attempts(job: Mapping[str, Any], stage: str, items: Mapping[str, Any], item: int) -> list[dict[str, Any]]:
    """The item's attempts the status lists: the stage's last attempts and its in-flight entry."""
    listed = [a for a in _stage_status(job, stage).get("attempts") or [] if a.get("item") == item]
    for entry in items.get("inFlight") or []:
        current = entry.get("attempt")
        if entry.get("index") == item and isinstance(current, dict):
            listed.append({**current, "item": item})
    return [a for a in listed if isinstance(a.get("attempt"), int)]


def _count(total: int) -> str:
    return "1 item" if total == 1 else f"{total} items"
