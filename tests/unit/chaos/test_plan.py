"""The seeded parts: the workload and the fault schedule are the same for the same seed and differ
for another; the policy replay and the attempt classification follow the documented semantics;
the observer's records keep what the checkers read."""

from __future__ import annotations

import pytest
from chaos.history import JobLife, PodLife
from chaos.policy import Disruption, Outcome, classify, delay_before, replay
from chaos.records import job_record, pod_record
from chaos.schedule import plan, profile
from chaos.workload import MIX, generate


def test_the_same_seed_gives_the_same_run() -> None:
    a = generate(7, 150, ["n1", "n2"], 300.0)
    b = generate(7, 150, ["n1", "n2"], 300.0)
    assert [(p.name, p.at, p.spec) for p in a.plans] == [(p.name, p.at, p.spec) for p in b.plans]
    assert plan(profile("quick", 7), 7).as_list() == plan(profile("quick", 7), 7).as_list()
    assert plan(profile("quick", 7), 7).as_list() != plan(profile("quick", 8), 8).as_list()
    assert [p.name for p in generate(8, 150, ["n1"], 300.0).plans] != [p.name for p in a.plans]


def test_the_workload_mixes_every_kind_and_spreads_its_arrivals() -> None:
    work = generate(3, 1000, ["n1", "n2", "n3"], 600.0)
    assert set(work.by_kind()) == set(MIX)
    assert max(p.at for p in work.plans) <= 600.0
    assert {p.namespace for p in work.plans} == {"n1", "n2", "n3"}
    assert len({p.name for p in work.plans}) == 1000


def test_profiles() -> None:
    quick, full = profile("quick", 1), profile("full", 1)
    assert quick.jobs == 150
    assert full.jobs == 1000
    assert full.flood == 10_000
    assert {f.name for f in full.faults} >= {f.name for f in quick.faults}
    assert plan(quick, 1).window < 540  # with set-up and drain, inside the quick budget of 10 minutes
    with pytest.raises(ValueError, match="unknown profile"):
        profile("nope", 1)


def test_delays_and_the_replay_of_a_stage() -> None:
    schedule = {"limit": 2, "delaysSeconds": [1, 4]}
    assert [delay_before(schedule, n) for n in (1, 2, 3)] == [1.0, 4.0, 4.0]
    expo = {"limit": 3, "backoff": {"initialSeconds": 1, "factor": 2, "maxSeconds": 3}}
    assert [delay_before(expo, n) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]
    e, d, s = Outcome.ERROR, Outcome.DISRUPTED, Outcome.SUCCEEDED
    assert replay([(1, e), (2, d), (3, e), (4, s)], schedule).result == "Succeeded"
    assert replay([(1, e), (2, d), (3, e), (4, s)], schedule).waits == {2: 1.0, 3: 4.0, 4: 4.0}
    assert replay([(1, e), (2, e), (3, e)], schedule).result == "BackoffLimitExceeded"
    assert replay([(1, Outcome.PERMANENT)], schedule).result == "StageFailed"
    assert replay([(1, Outcome.STOPPED), (2, Outcome.DELETED)], schedule).result is None


def pod(**fields: object) -> PodLife:
    base = PodLife("p", "n", "ns", "j", "j", "s1", 1, 10, 0.0)
    for name, value in fields.items():
        setattr(base, name, value)
    return base


def test_classify_what_a_pod_shows() -> None:
    job = JobLife("j", "n", "ns", "ok", 1, 0.0, flags=[(1, False, False), (30, True, False)])
    none: dict[str, Disruption] = {}
    assert classify(None, job, none) == Outcome.NEVER
    assert classify(pod(terminal_rv=20, phase="Succeeded"), job, none) == Outcome.SUCCEEDED
    assert classify(pod(terminal_rv=20, phase="Failed", exit_code=2), job, none) == Outcome.PERMANENT
    gc = {"disruption": "DeletionByPodGC"}
    assert classify(pod(terminal_rv=20, phase="Failed", exit_code=1, disruption_rv=20, **gc), job, none) == (
        Outcome.DISRUPTED
    )
    assert classify(pod(terminal_rv=20, phase="Failed", exit_code=1, disruption_rv=21, **gc), job, none) == (
        Outcome.ERROR  # the condition came after the failure: it did not end the pod
    )
    assert classify(pod(terminal_rv=20, phase="Succeeded", disruption_rv=19, **gc), job, none) == Outcome.SUCCEEDED
    assert classify(pod(deleting_rv=20), job, {"p": Disruption("delete", 1.0)}) == Outcome.DELETED
    assert classify(pod(deleting_rv=20), job, {"p": Disruption("evict", 1.0)}) == Outcome.DISRUPTED
    assert classify(pod(deleting_rv=20), job, none) == Outcome.UNEXPLAINED
    assert classify(pod(deleting_rv=31), job, none) == Outcome.STOPPED  # deleted after suspend was set
    assert classify(pod(), job, none) == Outcome.LIVE


def test_records_keep_what_the_checkers_read() -> None:
    raw_pod = {
        "metadata": {
            "name": "j-s1-a2-abc",
            "namespace": "ns",
            "uid": "pu",
            "resourceVersion": "42",
            "labels": {"procjob.dev/job-uid": "ju", "procjob.dev/stage": "s1", "procjob.dev/attempt": "2"},
            "ownerReferences": [{"uid": "ju", "controller": True}],
            "deletionTimestamp": "2026-01-01T00:00:05Z",
        },
        "status": {
            "phase": "Failed",
            "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
            "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "finishedAt": "2026-01-01T00:00:04Z"}}}],
        },
    }
    rec = pod_record(1.0, "MODIFIED", raw_pod)
    assert (rec["rv"], rec["job"], rec["owner"], rec["at"], rec["ex"], rec["dis"]) == (
        42,
        "ju",
        "ju",
        2,
        137,
        "EvictionByEvictionAPI",
    )
    entry = {"seq": 1, "type": "JobCreated", "reason": "JobCreated", "time": "2026-01-01T00:00:00Z"}
    raw_job = {
        "metadata": {"name": "j", "namespace": "ns", "uid": "ju", "resourceVersion": "43", "finalizers": ["f"]},
        "spec": {"stages": [], "suspend": True},
        "status": {
            "audit": {"lastSeq": 1, "pending": [entry]},
            "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Queued"}],
        },
    }
    seen: dict[str, set[int]] = {}
    first = job_record(1.0, "ADDED", raw_job, seen)
    again = job_record(2.0, "MODIFIED", raw_job, seen)
    assert first["ob"][0][:2] == [1, "JobCreated"]
    assert "spec" in first
    assert again["ob"] == []
    assert "spec" not in again
    assert (first["cond"], first["sus"], first["last"]) == ("Unknown:Queued", True, 1)
