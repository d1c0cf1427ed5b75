"""Small synthetic histories for the chaos checkers: a job's life told as the observer would have
recorded it (pod and job records with increasing resourceVersions) plus PostgreSQL's rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chaos.verdict import Row

T0 = 1_800_000_000.0


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def whole(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Story:
    """One single-stage job (stage `s1`); `t` advances by hand; every record gets the next rv."""

    def __init__(self, name: str = "j", uid: str = "job-1", retry: dict[str, Any] | None = None, **extra: Any) -> None:
        self.name, self.uid = name, uid
        self.retry = retry if retry is not None else {"limit": 2, "delaysSeconds": [2]}
        self.rv, self.t = 100, T0
        self.records: list[dict[str, Any]] = []
        self.rows: list[Row] = []
        self.seq = 0
        self.attempts: dict[int, list[Any]] = {}
        self.cond: str | None = None
        self.flags = {"sus": False, "can": False}
        self.extra = extra
        self.first = True

    def tick(self, seconds: float) -> Story:
        self.t += seconds
        return self

    def _rv(self) -> int:
        self.rv += 1
        return self.rv

    def job(self, *entries: tuple[Any, ...], cond: str | None = None, e: str = "MODIFIED", **flags: Any) -> Story:
        """A status write carrying `entries` ((type, reason, attempt[, action]) each) as new outbox entries."""
        self.flags.update(flags)
        if cond is not None:
            self.cond = cond
        new = []
        for entry in entries:
            kind, reason, attempt = entry[0], entry[1], entry[2]
            action = entry[3] if len(entry) > 3 else None
            self.seq += 1
            stage = "s1" if attempt is not None or kind.startswith("Stage") else None
            new.append([self.seq, kind, reason, stage, attempt, stamp(self.t), action])
            self.rows.append((self.seq, kind, reason, stage, attempt, self.t, action))
        record = {
            "k": "pj",
            "t": self.t,
            "rv": self._rv(),
            "e": "ADDED" if self.first else e,
            "ns": "ns",
            "n": self.name,
            "uid": self.uid,
            "kind": self.extra.get("kind", "ok"),
            "cond": self.cond,
            "ob": new,
            "pend": len(new),
            "last": self.seq,
            "flushed": self.seq - len(new),
            "att": [list(row) for row in self.attempts.values()],  # as written then, not as changed later
            "fz": ["f"],
            "dt": self.extra.get("dt"),
            "rr": None,
            "ann": None,
            **self.flags,
        }
        if self.first:
            record["spec"] = {"stages": [{"name": "s1"}], "retry": self.retry, "podGC": "Never"}
            self.first = False
        self.records.append(record)
        return self

    def attempt(
        self, n: int, state: str, reason: str | None = None, charged: bool | None = None, **times: float
    ) -> Story:
        """Record attempt `n` in the status as the operator would (create/finish times given)."""
        row = self.attempts.get(n) or ["s1", n, state, None, None, f"pod-{self.uid}-{n}", None, None, None]
        row[2], row[3], row[4] = state, reason, charged
        if "created" in times:
            row[6] = stamp(times["created"])
        if "finished" in times:
            row[7] = stamp(times["finished"])
        self.attempts[n] = row
        return self

    def pod(self, n: int, phase: str, *, e: str = "MODIFIED", uid: str | None = None, **fields: Any) -> Story:
        record = {
            "k": "pod",
            "t": self.t,
            "rv": self._rv(),
            "e": e,
            "ns": "ns",
            "n": f"{self.name}-s1-a{n}",
            "uid": uid or f"pod-{self.uid}-{n}",
            "job": self.uid,
            "owner": fields.pop("owner", self.uid),
            "st": "s1",
            "at": n,
            "ph": phase,
            "ex": None,
            "fin": None,
            "ct": whole(self.t),
            "dt": None,
            "dis": None,
            "fz": [],
            "node": "n1",
        }
        record.update(fields)
        self.records.append(record)
        return self


def succeeded(attempt: int) -> list[tuple[Any, ...]]:
    return [
        ("AttemptSucceeded", "Completed", attempt),
        ("StageSucceeded", "StageSucceeded", None),
        ("JobSucceeded", "Succeeded", None),
    ]


def succeeded_once(name: str = "j", uid: str = "job-1") -> Story:
    """Created, started, one attempt that succeeds, the job Succeeded."""
    s = Story(name, uid)
    s.job(("JobCreated", "JobCreated", None), ("JobStarted", "JobStarted", None), cond="Unknown:Running", e="ADDED")
    s.attempt(1, "Pending", created=s.t).job(
        ("StageStarted", "StageStarted", None), ("AttemptStarted", "AttemptStarted", 1)
    )
    s.tick(0.2).pod(1, "Pending", e="ADDED").tick(0.3).pod(1, "Running")
    s.tick(1).pod(1, "Succeeded", ex=0, fin=whole(s.t))
    s.attempt(1, "Succeeded", "Completed", finished=s.t).job(*succeeded(1), cond="True:Succeeded")
    return s


def flaky(delay_after_failure: float = 2.5) -> Story:
    """Attempt 1 exits 1 (charged, retry in 2 s), attempt 2 succeeds `delay_after_failure` later."""
    s = Story()
    s.job(("JobCreated", "JobCreated", None), ("JobStarted", "JobStarted", None), cond="Unknown:Running", e="ADDED")
    s.attempt(1, "Pending", created=s.t).job(
        ("StageStarted", "StageStarted", None), ("AttemptStarted", "AttemptStarted", 1)
    )
    s.tick(0.5).pod(1, "Pending", e="ADDED").tick(0.5).pod(1, "Running").tick(1)
    end = float(int(s.t))
    s.pod(1, "Failed", ex=1, fin=whole(end))
    s.attempt(1, "Failed", "Error", True, finished=end).job(
        ("AttemptFailed", "Error", 1), ("RetryScheduled", "RetryScheduled", 2, "Retry"), cond="Unknown:BackoffWaiting"
    )
    s.t = end + delay_after_failure
    s.attempt(2, "Pending", created=s.t).job(("AttemptStarted", "AttemptStarted", 2), cond="Unknown:Running")
    s.tick(0.1).pod(2, "Pending", e="ADDED").tick(0.4).pod(2, "Running").tick(1).pod(
        2, "Succeeded", ex=0, fin=whole(s.t)
    )
    s.attempt(2, "Succeeded", "Completed", finished=s.t).job(*succeeded(2), cond="True:Succeeded")
    return s
