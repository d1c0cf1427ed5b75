"""I4, nothing left and nothing stuck (pure).

From the observer's history: no pod terminating for longer than STUCK_SECONDS (beyond what the
suite itself held with a finalizer on purpose), no pod left live (neither ended nor deleting) after
its job finished. From the suite's end state: every job reached a terminal state (none waiting for
a queue slot a ghost holds), the leader's `procjob_jobs_active` was 0 once they had (its cache
holds no ghost), and after the suite deleted everything: no job, no finalizer, no pod, no
namespace left.
"""

from __future__ import annotations

from typing import Any

from chaos.history import History
from chaos.verdict import Verdict

STUCK_SECONDS = 120.0  # deleting for longer: stuck (the operator force-deletes after grace + 60 s)


def check_i4(history: History, end: dict[str, Any], held: dict[str, float]) -> Verdict:
    """`end`: the suite's end state (see chaos.run.end_state); `held`: pod UID -> seconds the suite
    held that pod with its own finalizer."""
    verdict = Verdict(notes={"pods": len(history.pods)})
    last_t = max((p.gone_t or p.first_t for p in history.pods.values()), default=0.0)
    for pod in history.pods.values():
        verdict.checked += 1
        if pod.deleting_t is None:
            continue
        until = pod.gone_t if pod.gone_t is not None else last_t
        took = until - pod.deleting_t - held.get(pod.uid, 0.0)
        if took > STUCK_SECONDS or (pod.gone_t is None and history.ended):
            verdict.fail(f"pod {pod.ns}/{pod.name} was terminating for {until - pod.deleting_t:.0f}s")
    _strays(history, verdict, int(end.get("cleanup_rv") or 0))
    unfinished = end.get("unfinished") or []
    if unfinished:
        verdict.fail(f"{len(unfinished)} jobs never finished, e.g. {unfinished[:5]}")
    active = end.get("leader_jobs_active")
    verdict.notes["leader_jobs_active_at_end"] = active
    if active is None or active != 0:
        verdict.fail(f"the leader's procjob_jobs_active was {active} with every job finished (a ghost in its cache)")
    cleanup = end.get("cleanup") or {}
    verdict.notes["cleanup_s"] = cleanup.get("seconds")
    for what in ("jobs_left", "finalizers_left", "pods_left", "namespaces_left"):
        left = cleanup.get(what)
        if left is None or left:
            verdict.fail(f"after deleting everything, {what.replace('_', ' ')}: {left if left is not None else '?'}")
    return verdict


def _strays(history: History, verdict: Verdict, cleanup_rv: int) -> None:
    """A pod still live (neither ended nor deleting) when the suite began deleting everything, of a
    job that had ended by then."""
    if not cleanup_rv:
        return
    for pod in history.pods.values():
        job = history.jobs.get(pod.job or "")
        if job is None or pod.first_rv > cleanup_rv:
            continue
        if (pod.terminal_rv or cleanup_rv + 1) <= cleanup_rv or (pod.deleting_rv or cleanup_rv + 1) <= cleanup_rv:
            continue
        final = job.conditions[-1] if job.conditions else None
        if final and final[2].split(":", 1)[0] in ("True", "False") and final[0] < cleanup_rv:
            verdict.fail(f"pod {pod.ns}/{pod.name} was still live after {job.name} ended {final[2]}")
