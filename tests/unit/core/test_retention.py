"""Finished jobs are not kept forever: ttlSecondsAfterFinished per job (or the operator's default),
and a per-namespace cap on finished jobs (oldest first)."""

from __future__ import annotations

from datetime import timedelta

from procjob.core.config import CoreConfig
from procjob.core.retention import Finished, over_cap
from tests.unit.core.builders import NOW, Run, spec_of


def finished_run(ttl: int | None = None, config: CoreConfig | None = None) -> Run:
    spec = spec_of() if ttl is None else spec_of(ttlSecondsAfterFinished=ttl)
    run = Run(spec, config=config)
    run.decide()
    run.succeeded()
    run.decide()
    assert run.succeeded_condition == ("True", "Succeeded")
    return run


def test_a_finished_job_is_deleted_once_its_ttl_has_passed() -> None:
    run = finished_run(ttl=60)
    done = run.parsed.completion_time
    assert done is not None
    run.tick(30)
    decision = run.decide()
    assert not decision.delete_job
    assert decision.requeue_at == done + timedelta(seconds=60)
    run.tick(30)
    assert run.decide().delete_job


def test_a_zero_ttl_deletes_at_once() -> None:
    run = finished_run(ttl=0)
    assert run.decide().delete_job


def test_the_operators_default_applies_when_the_job_sets_none_and_the_jobs_own_wins() -> None:
    run = finished_run(config=CoreConfig(ttl_seconds_after_finished=10))
    run.tick(10)
    assert run.decide().delete_job
    run = finished_run(ttl=3600, config=CoreConfig(ttl_seconds_after_finished=10))
    run.tick(10)
    assert not run.decide().delete_job


def test_without_a_ttl_a_finished_job_stays() -> None:
    run = finished_run()
    run.tick(10**7)
    decision = run.decide()
    assert not decision.delete_job
    assert decision.requeue_at is None


def test_a_running_job_is_never_deleted_by_its_ttl() -> None:
    run = Run(spec_of(ttlSecondsAfterFinished=0))
    assert not run.decide().delete_job


def job(name: str, namespace: str, minutes: int) -> Finished:
    return Finished(f"{namespace}/{name}", f"uid-{name}", namespace, NOW + timedelta(minutes=minutes))


def test_the_cap_deletes_the_oldest_finished_jobs_of_each_namespace() -> None:
    jobs = [job("a1", "a", 3), job("a2", "a", 1), job("a3", "a", 2), job("b1", "b", 0)]
    assert [j.key for j in over_cap(jobs, 2)] == ["a/a2"]
    assert [j.key for j in over_cap(jobs, 1)] == ["a/a2", "a/a3"]
    assert over_cap(jobs, 5) == []
    assert [j.key for j in over_cap(jobs, 0)] == ["a/a2", "a/a3", "a/a1", "b/b1"]
