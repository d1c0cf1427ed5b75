"""The census of ProcessingJob status writes by cause (bench/statuswrites.py) and the observer's use of it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from bench import statuswrites
from bench.analysis import analyse
from bench.observer import LABEL_CHAIN, Recorder
from bench.systems import Load


def job(**status: Any) -> dict[str, Any]:
    attempt = {"attempt": 1, "podName": "c1-s0-a1", "state": "Pending"}
    return {
        "metadata": {"name": "c1", "uid": "u1", "generation": 1, "labels": {LABEL_CHAIN: "c1"}},
        "status": {
            "phase": "Running",
            "stages": [{"name": "s0", "state": "Running", "attempts": [attempt]}],
            "audit": {"lastSeq": 4, "flushedSeq": 0},
            **status,
        },
    }


def changed(obj: dict[str, Any], *path: str, value: Any) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    where = new
    for step in path[:-1]:
        where = where[int(step)] if isinstance(where, list) else where[step]
    where[path[-1]] = value
    return new


BASE = job()


@pytest.mark.parametrize(
    ("after", "want"),
    [
        (
            changed(changed(BASE, "status", "audit", "lastSeq", value=9), "status", "audit", "flushedSeq", value=4),
            "transition",
        ),
        (changed(BASE, "status", "stages", "0", "attempts", "0", "podUid", value="p1"), "pod-uid"),
        (changed(BASE, "status", "audit", "flushedSeq", value=4), "outbox-trim"),
        (changed(BASE, "status", "stages", "0", "attempts", "0", "message", value="ContainerCreating"), "other"),
        (changed(BASE, "metadata", "finalizers", value=["procjob.dev/audit"]), "metadata"),
        (changed(BASE, "metadata", "deletionTimestamp", value="2026-12-04T19:00:00Z"), "metadata"),
        (copy.deepcopy(BASE), None),
    ],
    ids=["transition-with-trim", "pod-uid", "trim", "other", "finalizer", "deletion", "same"],
)
def test_each_change_is_classified_by_what_it_carried(after: dict[str, Any], want: str | None) -> None:
    assert statuswrites.cause(statuswrites.mark(BASE), statuswrites.mark(after)) == want


def entries(*types: str, first: int = 5) -> list[dict[str, Any]]:
    return [{"seq": first + i, "type": t} for i, t in enumerate(types)]


def test_a_transition_that_also_records_a_uid_counts_as_a_transition() -> None:
    after = changed(BASE, "status", "audit", "lastSeq", value=6)
    after = changed(after, "status", "audit", "pending", value=entries("AttemptRunning", "AttemptSucceeded"))
    after = changed(after, "status", "stages", "0", "attempts", "0", "podUid", value="p1")
    assert statuswrites.classify(statuswrites.mark(BASE), after)[1] == "transition"


def test_new_entries_that_are_all_attempt_running_are_a_running_record() -> None:
    old = changed(BASE, "status", "audit", "pending", value=entries("JobCreated", "AttemptStarted", first=3))
    after = changed(old, "status", "audit", "lastSeq", value=5)
    after = changed(
        after, "status", "audit", "pending", value=entries("JobCreated", "AttemptStarted", "AttemptRunning", first=3)
    )
    after = changed(after, "status", "stages", "0", "attempts", "0", "podUid", value="p1")
    assert statuswrites.classify(statuswrites.mark(old), after)[1] == "running"
    assert statuswrites.classify(None, after) == (statuswrites.mark(after), None)


def test_the_observer_records_one_classified_change_per_version_of_a_job() -> None:
    recorder = Recorder()
    sink = recorder.sink("pj")
    finalized = changed(BASE, "metadata", "finalizers", value=["procjob.dev/audit"])
    uid = changed(finalized, "status", "stages", "0", "attempts", "0", "podUid", value="p1")
    ended = changed(uid, "status", "audit", "lastSeq", value=9)
    for t, (etype, obj) in enumerate(
        [("ADDED", BASE), ("MODIFIED", finalized), ("MODIFIED", uid), ("MODIFIED", ended), ("DELETED", ended)]
    ):
        sink(float(t), etype, obj)
    census = [(r["t"], r["p"], r["c"]) for r in recorder.records if r["r"] == statuswrites.RECORD]
    assert census == [(1.0, "metadata", "c1"), (2.0, "pod-uid", "c1"), (3.0, "transition", "c1")]
    assert not recorder._marks  # a deleted job's mark goes with it


def test_per_stage_counts_only_the_runs_chains_and_reports_every_cause() -> None:
    records = [
        {"t": 1.0, "r": "pjw", "c": "c1", "p": "transition"},
        {"t": 2.0, "r": "pjw", "c": "c1", "p": "transition"},
        {"t": 3.0, "r": "pjw", "c": "c2", "p": "pod-uid"},
        {"t": 4.0, "r": "pjw", "c": "warm", "p": "transition"},
        {"t": 5.0, "r": "pj", "c": "c1", "p": "True:Succeeded"},
    ]
    got = statuswrites.per_stage(records, {"c1", "c2"}, 4)
    assert got == {
        "transition": 0.5,
        "running": 0.0,
        "pod-uid": 0.25,
        "outbox-trim": 0.0,
        "other": 0.0,
        "metadata": 0.0,
    }
    assert statuswrites.per_stage(records, {"c9"}, 4) == {}


def test_analyse_adds_the_census_to_procjob_runs_only() -> None:
    records = [
        {"t": 1.0, "r": "pjw", "c": "c1", "p": "transition"},
        {"t": 1.5, "r": "pod", "c": "c1", "s": 0, "p": "Succeeded"},
        {"t": 2.0, "r": "pj", "c": "c1", "s": None, "p": "True:Succeeded"},
    ]
    load = Load(requested={("c1", 0): 0.5}, first_request=0.5, last_done=2.0)
    assert analyse(records, load, ["c1"], 1, "pj")["status_writes_by_cause_per_stage"]["transition"] == 1.0
    assert "status_writes_by_cause_per_stage" not in analyse(records, load, ["c1"], 1, "pod")


def test_the_report_sums_the_status_writes_and_lists_metadata_changes_apart() -> None:
    census = {"transition": 1.33, "running": 0.1, "pod-uid": 0.8, "outbox-trim": 0.02, "other": 0.0, "metadata": 0.67}
    lines = statuswrites.report_lines([("procjob (burst)", {"status_writes_by_cause_per_stage": census}), ("B0", {})])
    assert lines[2] == (
        "- procjob (burst): 2.25 status writes (transition 1.33, running 0.10, pod-uid 0.80, outbox-trim 0.02, "
        "other 0.00); metadata-only changes 0.67"
    )
    assert len(lines) == 4
    assert statuswrites.report_lines([("B0", {})]) == []
