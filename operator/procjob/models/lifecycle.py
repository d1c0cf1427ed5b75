"""What a job's state means, answered once for every part of procjob.

"Finished" and "retryable" used to be computed in six places (the core, the reconciler twice,
the relay, the queue, the plugin) and in three languages (Python, the plugin, the Argo CD Lua).
Here they are defined on the one thing all of them read — the `Succeeded` condition's status and
reason — so the same function serves a parsed status and a raw API object. The Argo CD Lua and
the plugin are pinned to these functions by table-driven tests (tests/unit/test_argocd_lua.py,
tests/unit/cli/test_lifecycle_pinned.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SUCCEEDED = "Succeeded"  # the condition type that carries a job's outcome (conditions are the API)
SUSPENDED = "Suspended"
FINISHED_STATUSES = frozenset({"True", "False"})
NOT_RETRYABLE_REASONS = frozenset({"Cancelled", "InvalidSpec", "ReconcileError"})


def finished(status: str | None) -> bool:
    """A job whose Succeeded condition is True or False has ended (absorbing until a retry)."""
    return status in FINISHED_STATUSES


def retryable(status: str | None, reason: str | None) -> bool:
    """Only a job that failed can be re-run (procjob.dev/retry): not one that succeeded, was
    cancelled, has an invalid spec, or that the operator could not process."""
    return status == "False" and reason not in NOT_RETRYABLE_REASONS


def outcome(status: str | None, reason: str | None) -> str | None:
    """Succeeded, Cancelled or Failed for a finished job (the metric label and the history's
    word); None while it runs."""
    if not finished(status):
        return None
    if status == "True":
        return "Succeeded"
    return "Cancelled" if reason == "Cancelled" else "Failed"


def succeeded_condition(conditions: Iterable[Any]) -> tuple[str | None, str | None]:
    """(status, reason) of the Succeeded condition among parsed `Condition`s or raw dicts."""
    for cond in conditions:
        if isinstance(cond, Mapping):
            if cond.get("type") == SUCCEEDED:
                return cond.get("status"), cond.get("reason")
        elif getattr(cond, "type", None) == SUCCEEDED:
            return str(cond.status), str(cond.reason)
    return None, None


def body_state(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(status, reason) of a raw ProcessingJob's Succeeded condition."""
    return succeeded_condition(((body.get("status") or {}).get("conditions")) or [])


def body_finished(body: Mapping[str, Any]) -> bool:
    return finished(body_state(body)[0])


def body_retryable(body: Mapping[str, Any]) -> bool:
    return retryable(*body_state(body))
