"""The paced run at B1 tuned's own throughput (#18): its rate comes from B1 tuned's measured burst,
its transition p99 is judged against 1 s, and the markdown names it with the rate offered."""

from __future__ import annotations

from typing import Any

from bench import report, run


def test_the_rate_offered_is_b1_tuneds_measured_burst_rate() -> None:
    assert run._get_rate({"b1_tuned": {"stages_per_s": 24.5}}, "b1_tuned") == 24.5


def test_no_rate_without_a_measured_b1_tuned() -> None:
    assert run._get_rate({}, "b1_tuned") is None
    assert run._get_rate({"b1_tuned": {"skipped": "--no-restart"}}, "b1_tuned") is None
    assert run._get_rate({"b1_tuned": {"stages_per_s": 0}}, "b1_tuned") is None


def _target(results: dict[str, Any]) -> dict[str, Any]:
    _, targets = report.judge(results)
    [found] = [t for t in targets if t["target"].startswith("transition p99 <= 1 s paced at B1 tuned")]
    return found


def test_the_paced_run_at_b1s_rate_is_judged_against_one_second() -> None:
    assert _target({"procjob_paced_b1": {"transition_p99_s": 0.8}})["met"] is True
    assert _target({"procjob_paced_b1": {"transition_p99_s": 1.6}})["met"] is False
    assert _target({})["measured"] is None


def test_the_systems_table_names_the_rate_offered() -> None:
    row = {"offered_stages_per_s": 24.5, "skipped": "x"}
    lines = report._systems_table({"procjob_paced_b1": row})
    assert any(line.startswith("| procjob (paced, 24.5 stages/s offered) |") for line in lines)
