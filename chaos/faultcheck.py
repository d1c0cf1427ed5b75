"""What each fault must leave intact, judged from evidence the operator does not write (pure).

- SIGKILL of the leader (also at a failpoint): the standby holds the Lease within lease + renew
  deadline + retry of the kill (the observer's Lease watch), plus the CPU stall the kernel measured
  in that window (chaos.pressure: a scheduling allowance, 0 on an idle machine); a failpoint fired.
- SIGSTOP past the lease: another replica led before SIGCONT; the stopped replica sent no write
  (POST, PUT, PATCH, DELETE through its proxy listener) after SIGCONT and exited.
- kube-apiserver / etcd killed: no exit that no fault explains (no crash loop); work resumed
  (attempts or job ends seen within 3 minutes of the restart).
- silent watch + compaction: the operators' resumed watches met 410 Gone; the jobs deleted behind
  their backs are gone (their audit: I3; no ghost: I4).
- PostgreSQL down, restarted, slow: jobs kept progressing meanwhile; no outbox above 116 entries
  (the backlog is bounded, and drained: I3).
- pod disruptions, node lost: recorded with the right reason, not charged (I2); nothing stuck (I4).
- the 10 Hz writer: its patches landed; the 409s the operator met meanwhile are counted (absorbed:
  I1, I2).
- jobs deleted and re-created: every deleted job re-created under a new UID (no adoption: I1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.history import History, holder_at, holders
from chaos.pressure import stalled
from chaos.replicas import Exit

WRITES = ("POST", "PUT", "PATCH", "DELETE")
OUTBOX_HARD_LIMIT = 116
REPLICAS = 2


def takeover(history: History, after: float) -> float | None:
    """Seconds from `after` to the first Lease holder other than the one holding it then (the
    killed process's identity: a replica started again has a new one, and may win the race)."""
    old = holder_at(history, after)
    for t, holder in holders(history):
        if t >= after and holder and holder != old:
            return round(t - after, 2)
    return None


def progress(history: History, start: float, end: float) -> int:
    """Attempt pods created and job ends observed in [start, end]."""
    pods = sum(1 for p in history.pods.values() if start <= p.first_t <= end)
    ends = sum(
        1 for j in history.jobs.values() for _, t, c in j.conditions if start <= t <= end and c[:4] in ("True", "Fals")
    )
    return pods + ends


@dataclass
class Evidence:
    fault: dict[str, Any]
    result: dict[str, Any]
    history: History
    exits: list[Exit]
    requests: list[list[Any]]
    bound: float  # lease + renew deadline + retry: the nominal takeover bound
    stall: list[tuple[float, float]] = field(default_factory=list)  # chaos.pressure samples

    def allowance(self, start: float) -> float:
        """The CPU stall measured in the nominal bound's window from `start` (seconds)."""
        return stalled(self.stall, start, start + self.bound)


def judge(
    fault: dict[str, Any],
    history: History,
    exits: list[Exit],
    requests: list[list[Any]],
    timings: tuple[float, float, float],
    stall: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """{"ok": bool, "checks": {...}} for one fault record (name, result, started, ended); `stall`:
    the run's CPU pressure samples (chaos.pressure)."""
    if fault.get("error"):
        return {"ok": False, "checks": {"error": fault["error"]}}
    nominal = timings[0] + timings[1] + timings[2]
    ev = Evidence(fault, fault.get("result") or {}, history, exits, requests, nominal, stall or [])
    name = fault["name"]
    checks: dict[str, Any] = {}
    ok = True
    for applies, check in CHECKS:
        if name in applies:
            found, held = check(ev)
            checks.update(found)
            ok = ok and held
    return {"ok": bool(ok), "checks": checks}


def _killed(ev: Evidence) -> tuple[dict[str, Any], bool]:
    killed = ev.result["killed_at"]
    took = takeover(ev.history, killed)
    stall = ev.allowance(killed)
    bound = round(ev.bound + stall, 2)
    checks: dict[str, Any] = {"takeover_s": took, "takeover_bound_s": bound, "cpu_stall_s": stall}
    ok = took is not None and took <= bound
    if ev.fault["name"] == "failpoint":
        checks["fired"] = ev.result.get("fired")
        fired = [e for e in ev.exits if e.cause == "failpoint" and e.t > killed]
        if fired:
            start = fired[0].t - 0.1
            again = takeover(ev.history, start)
            stall = ev.allowance(start)
            checks["takeover_after_failpoint_s"] = again
            checks["takeover_after_failpoint_bound_s"] = round(ev.bound + stall, 2)
            ok = ok and again is not None and again <= ev.bound + stall
        ok = ok and bool(ev.result.get("fired"))
    return checks, ok


def _outage(ev: Evidence) -> tuple[dict[str, Any], bool]:
    result, fault = ev.result, ev.fault
    start = result.get("killed_at") or result.get("stalled_at") or fault["started"]
    end = (result.get("restarted_at") or result.get("bounced_at") or fault["ended"]) + 60
    unexplained = [e for e in ev.exits if start <= e.t <= end and e.cause == "other"]
    lost = [e for e in ev.exits if start <= e.t <= end and e.cause == "lost-lease"]
    resumed = progress(ev.history, fault["ended"], fault["ended"] + 180)
    checks = {"unexplained_exits": len(unexplained), "lost_lease_exits": len(lost), "progress_after": resumed}
    return checks, not unexplained and resumed > 0


def _silent(ev: Evidence) -> tuple[dict[str, Any], bool]:
    """The injection took: the operators' resumed watches met 410 Gone, or every replica was
    restarted during the stall (the API server's bounce outlasts a 3 s renew deadline) and so
    re-listed instead; either way no cache crossed the compaction without a LIST."""
    start = ev.result["stalled_at"]
    gone = [r for r in ev.requests if r[6] and r[4] == 410 and r[0] >= start]
    restarted = {e.replica for e in ev.exits if start <= e.t <= start + ev.result["stall_s"]}
    checks = {
        "operator_watches_410": len(gone),
        "replicas_restarted_meanwhile": len(restarted),
        "deleted_behind_its_back": len(ev.result.get("deleted") or []),
    }
    return checks, bool(gone) or len(restarted) >= REPLICAS


def _database(ev: Evidence) -> tuple[dict[str, Any], bool]:
    result, fault = ev.result, ev.fault
    start = result.get("stopped_at") or result.get("from") or fault["started"]
    end = result.get("started_at") or result.get("to") or fault["ended"]
    during = progress(ev.history, start, end) if end - start > 5 else None
    most = max((j.max_pending for j in ev.history.jobs.values()), default=0)
    return {"progress_during": during, "max_outbox": most}, most <= OUTBOX_HARD_LIMIT and (during is None or during > 0)


def _writer(ev: Evidence) -> tuple[dict[str, Any], bool]:
    result = ev.result
    conflicts = [r for r in ev.requests if r[2] == "PUT" and r[4] == 409 and result["from"] <= r[0] <= result["to"]]
    landed = sum(v for k, v in (result.get("writes") or {}).items() if "-" not in k)
    return {"writes": result.get("writes"), "operator_409s": len(conflicts)}, landed > 0


def _recreated(ev: Evidence) -> tuple[dict[str, Any], bool]:
    deleted = len(ev.result["deleted"])
    recreated = sum(1 for u in ev.result["recreated"] if u)
    return {"deleted": deleted, "recreated": recreated}, deleted > 0 and recreated == deleted


def _facts(ev: Evidence) -> tuple[dict[str, Any], bool]:
    return {k: v for k, v in ev.result.items() if not k.endswith("_at")}, True


def _stopped_check(ev: Evidence) -> tuple[dict[str, Any], bool]:
    return _stopped(ev.result, ev.history, ev.exits, ev.requests)


CHECKS: list[tuple[set[str], Callable[[Evidence], tuple[dict[str, Any], bool]]]] = [
    ({"leader-kill", "failpoint", "pg-down"}, _killed),
    ({"leader-stop"}, _stopped_check),
    ({"component-down", "silent-watch"}, _outage),
    ({"silent-watch"}, _silent),
    ({"pg-down", "pg-latency", "pg-restart"}, _database),
    ({"writer"}, _writer),
    ({"delete-recreate"}, _recreated),
    ({"node-lost", "disruptions"}, _facts),
]


def _stopped(
    result: dict[str, Any], history: History, exits: list[Exit], requests: list[list[Any]]
) -> tuple[dict[str, Any], bool]:
    """SIGSTOP past the lease: another holder before SIGCONT; no write sent by the stopped process
    between SIGCONT and its exit (the same replica's next process is another identity)."""
    took = takeover(history, result["stopped_at"])
    gone = next((e.t for e in exits if e.replica == result["replica"] and e.t >= result["continued_at"]), None)
    until = gone if gone is not None else float("inf")
    late = [
        r for r in requests if r[1] == result["replica"] and r[2] in WRITES and result["continued_at"] <= r[0] <= until
    ]
    checks: dict[str, Any] = {
        "takeover_s": took,
        "writes_sent_after_sigcont": len(late),
        "writes_accepted_after_sigcont": sum(1 for r in late if 200 <= r[4] < 300),
        "exited_after_s": None if gone is None else round(gone - result["continued_at"], 2),
        "late_writes": [f"{r[2]} {r[3]} -> {r[4]}" for r in late[:5]],
    }
    stopped_for = result["continued_at"] - result["stopped_at"]
    return checks, took is not None and took <= stopped_for and not late and gone is not None


def crash_loops(exits: list[Exit]) -> dict[str, Any]:
    """Exits by cause over the whole run; `other` exits are what no fault explains."""
    causes: dict[str, int] = {}
    for e in exits:
        causes[e.cause] = causes.get(e.cause, 0) + 1
    return {"by_cause": causes, "unexplained": [vars(e) for e in exits if e.cause == "other"][:10]}
