"""The bench's Events breakdown: each Event object is one POST, attributed to the component that
reported it (events.k8s.io's reportingComponent, else core/v1's source.component), and only the Events
created in the measured window count."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.costs import events_by_source


def event(reason: str, created: str, *, reporting: str = "", source: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {"metadata": {"creationTimestamp": created}, "reason": reason}
    if reporting:
        item["reportingComponent"] = reporting
    if source:
        item["source"] = {"component": source}
    return item


T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_events_are_counted_by_reporter_and_reason_most_first() -> None:
    items = [
        event("Scheduled", "2027-01-15T08:00:01Z", reporting="default-scheduler"),
        event("Scheduled", "2027-01-15T08:00:02Z", reporting="default-scheduler"),
        event("StageSucceeded", "2027-01-15T08:00:02Z", source="procjob"),
        event("Odd", "2027-01-15T08:00:03Z"),
    ]
    assert list(events_by_source(items).items()) == [
        ("default-scheduler Scheduled", 2),
        ("? Odd", 1),
        ("procjob StageSucceeded", 1),
    ]


def test_reporting_component_wins_over_source_component() -> None:
    items = [event("Scheduled", "2027-01-15T08:00:01Z", reporting="default-scheduler", source="")]
    items[0]["source"] = {"component": "other"}
    assert events_by_source(items) == {"default-scheduler Scheduled": 1}


def test_events_created_before_the_window_do_not_count() -> None:
    items = [
        event("Scheduled", "2027-01-15T07:59:59Z", reporting="default-scheduler"),  # the warm-up
        event("Scheduled", "2027-01-15T08:00:00Z", reporting="default-scheduler"),
    ]
    assert events_by_source(items, since=T0 + 0.4) == {"default-scheduler Scheduled": 1}


def test_the_markdown_lists_events_per_stage_for_the_systems_that_have_them() -> None:
    results = {
        "procjob": {"stages_total": 100, "events_by_source": {"default-scheduler Scheduled": 100, "procjob X": 50}},
        "b0": {"stages_total": 100},
    }
    lines = report._events_by_source(results)
    assert [line for line in lines if line.startswith("- ")] == [
        "- procjob (burst): default-scheduler Scheduled 1.00, procjob X 0.50"
    ]
    assert report._events_by_source({"b0": {"stages_total": 100}}) == [], "no section without the breakdown"
