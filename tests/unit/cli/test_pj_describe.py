"""`kubectl pj describe` as text (procjob.cli.pj_describe): every section of a job in backoff,
at a fixed `now`. The text is the one the plugin printed before it was split into modules; the
rig test (tests/integration/test_plugin.py) checks the same sections on a real job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from procjob.cli.pj_describe import render_describe

NOW = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
JOB: dict[str, Any] = {
    "metadata": {
        "name": "flaky",
        "namespace": "demo",
        "uid": "u-1",
        "creationTimestamp": "2026-03-01T10:00:00Z",
        "generation": 3,
        "annotations": {"procjob.dev/retry": "2026-03-01T10:01:00Z"},
    },
    "spec": {
        "suspend": True,
        "stages": [{"name": "fetch", "uses": "fetch"}, {"name": "work", "image": "img:1"}, {"name": "late"}],
    },
    "status": {
        "phase": "Retrying",
        "observedGeneration": 2,
        "progress": "1/3",
        "attempts": 3,
        "startTime": "2026-03-01T10:00:01Z",
        "duration": "5m",
        "queue": {"position": 2, "estimatedStartTime": "2026-03-01T10:06:00Z"},
        "lastRetryRequest": "2026-03-01T10:01:00Z",
        "conditions": [
            {
                "type": "Succeeded",
                "status": "Unknown",
                "reason": "BackoffWaiting",
                "message": "waiting",
                "lastTransitionTime": "2026-03-01T10:04:00Z",
            },
            {"type": "Suspended", "status": "False", "reason": "x", "lastTransitionTime": "2026-03-01T10:00:00Z"},
        ],
        "stages": [
            {
                "name": "fetch",
                "state": "Succeeded",
                "attemptCount": 1,
                "startTime": "2026-03-01T10:00:01Z",
                "completionTime": "2026-03-01T10:00:03Z",
                "attempts": [
                    {
                        "attempt": 1,
                        "podName": "p1",
                        "state": "Succeeded",
                        "startTime": "2026-03-01T10:00:01Z",
                        "finishTime": "2026-03-01T10:00:03Z",
                        "exitCode": 0,
                        "reason": "Completed",
                    }
                ],
            },
            {
                "name": "work",
                "state": "BackoffWaiting",
                "attemptCount": 2,
                "chargedFailures": 1,
                "startTime": "2026-03-01T10:00:04Z",
                "nextAttemptTime": "2026-03-01T10:06:00Z",
                "lastRetryDecision": {
                    "failureReason": "Error",
                    "exitCode": 1,
                    "rule": "default",
                    "action": "Retry",
                    "delaySeconds": 4.0,
                    "retriesLeft": 1,
                },
                "attempts": [
                    {
                        "attempt": 1,
                        "podName": "w1",
                        "state": "Failed",
                        "createTime": "2026-03-01T10:00:04Z",
                        "finishTime": "2026-03-01T10:00:09Z",
                        "exitCode": 1,
                        "reason": "Error",
                    },
                    {
                        "attempt": 2,
                        "podName": "w2",
                        "state": "Failed",
                        "charged": False,
                        "startTime": "2026-03-01T10:01:04Z",
                        "reason": "Evicted",
                    },
                ],
            },
        ],
    },
}
EVENTS: list[dict[str, Any]] = [
    {"type": "Normal", "reason": "StageSucceeded", "message": "m1", "lastTimestamp": "2026-03-01T10:00:03Z"},
    {"type": "Warning", "reason": "AttemptFailed", "message": "m2", "eventTime": "2026-03-01T10:00:09Z"},
]
EXPECTED = """\
Name:         flaky
Namespace:    demo
UID:          u-1
Created:      2026-03-01T10:00:00Z (5m00s ago)
State:        BackoffWaiting: waiting
Phase:        Retrying
Progress:     1/3  (attempts: 3)
Started:      2026-03-01T10:00:01Z (4m59s ago)
Finished:     -
Duration:     5m
Queue:        position 2, estimated start 2026-03-01T10:06:00Z (in 1m00s)
Requests:     suspend=true, retry 2026-03-01T10:01:00Z (acknowledged)
Observed:     generation 2 of 3 (the operator has not caught up yet)

Stages:
  STAGE   STATE            ATTEMPTS   CHARGED   DURATION   NEXT ATTEMPT                      RUNS
  fetch   Succeeded        1          0         2s         -                                 uses: fetch
  work    BackoffWaiting   2          1         4m56s+     2026-03-01T10:06:00Z (in 1m00s)   img:1
  late    Pending          0          0         -          -                                 -

Attempts:
  STAGE   #   STATE       POD   START      END        DURATION   EXIT   REASON
  fetch   1   Succeeded   p1    10:00:01   10:00:03   2s         0      Completed
  work    1   Failed      w1    10:00:04   10:00:09   5s         1      Error
  work    2   Failed      w2    10:01:04   -          3m56s+     -      Evicted (not charged)

Retry decisions (latest per stage):
  work: Error, exit 1 matched default -> Retry, next attempt after 4s; 1 charged retry left

Conditions:
  TYPE        STATUS    REASON           SINCE       MESSAGE
  Succeeded   Unknown   BackoffWaiting   1m00s ago   waiting
  Suspended   False     x                5m00s ago

Events:
  AGE     TYPE      REASON           MESSAGE
  4m57s   Normal    StageSucceeded   m1
  4m51s   Warning   AttemptFailed    m2
"""


def test_every_section_of_a_job_in_backoff() -> None:
    assert render_describe(JOB, EVENTS, NOW) == EXPECTED


def test_without_the_right_to_list_events_there_is_no_events_section() -> None:
    text = render_describe(JOB, None, NOW)
    assert text == EXPECTED[: EXPECTED.index("\nEvents:")]


def test_a_job_the_operator_has_not_seen() -> None:
    text = render_describe({"metadata": {"name": "new", "namespace": "demo"}, "spec": {"stages": []}}, [], NOW)
    assert "State:        Pending: not yet seen by the operator\n" in text
    assert "Attempts:\n  (none yet)\n" in text
    assert "Conditions:\n  (none: the operator has not reconciled this job yet)\n" in text
    assert text.endswith("Events:\n  (none)\n")


def test_a_graph_with_finally_is_drawn_by_level_with_each_stages_state() -> None:
    job = {
        "metadata": {"name": "d", "namespace": "n", "uid": "u", "creationTimestamp": "2026-03-01T10:00:00Z"},
        "spec": {
            "stages": [
                {"name": "d", "image": "i", "dependsOn": ["b", "c"]},
                {"name": "a", "image": "i", "dependsOn": []},
                {"name": "b", "image": "i", "dependsOn": ["a"]},
                {"name": "c", "image": "i", "dependsOn": ["a"]},
            ],
            "finally": [{"name": "cleanup", "image": "i"}, {"name": "notify", "image": "i"}],
        },
        "status": {
            "stages": [
                {"name": "a", "state": "Succeeded", "attemptCount": 1},
                {"name": "b", "state": "Failed", "attemptCount": 2},
                {"name": "c", "state": "Cancelled", "attemptCount": 1},
                {"name": "cleanup", "state": "Running", "attemptCount": 1},
            ],
            "finally": {"outcome": "Failed", "reason": "StageFailed", "startTime": "2026-03-01T10:00:09Z"},
        },
    }
    text = render_describe(job, None, NOW)
    graph = text.split("Graph:\n")[1].split("\n\n")[0]
    assert graph.splitlines() == [
        "  LEVEL   STAGE   STATE       WAITS FOR",
        "  1       a       Succeeded   -",
        "  2       b       Failed      a",
        "          c       Cancelled   a",
        "  3       d       Pending     b, c",
        "  Finally (after the stages end, whatever the outcome; they ended Failed, StageFailed):",
        "    LEVEL   STAGE     STATE                 WAITS FOR",
        "    1       cleanup   Running (attempt 1)   -",
        "    2       notify    Pending               cleanup",
    ]
    stages = text.split("Stages:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in stages] == ["STAGE", "d", "a", "b", "c", "cleanup", "notify"]


def test_a_chain_has_no_graph_section() -> None:
    assert "Graph:" not in render_describe(JOB, None, NOW)


def test_a_fanned_out_stage_shows_its_items() -> None:
    job = {
        "metadata": {"name": "f", "namespace": "n", "uid": "u", "creationTimestamp": "2026-03-01T10:00:00Z"},
        "spec": {
            "stages": [
                {"name": "fan", "image": "i", "forEach": [1, 2, 3, 4, 5], "parallelism": 2, "dependsOn": []},
            ],
        },
        "status": {
            "stages": [
                {
                    "name": "fan",
                    "state": "Running",
                    "attemptCount": 4,
                    "items": {
                        "total": 5,
                        "next": 4,
                        "succeeded": 1,
                        "failed": 1,
                        "failedIndexes": "2",
                        "inFlight": [
                            {"index": 1, "state": "Running", "attempt": {"attempt": 1, "podName": "f-fan-i1-a1-u"}},
                            {
                                "index": 3,
                                "state": "BackoffWaiting",
                                "attempt": {"attempt": 1, "podName": "f-fan-i3-a1-u"},
                                "nextAttemptTime": "2026-03-01T10:05:10Z",
                            },
                        ],
                    },
                }
            ]
        },
    }
    text = render_describe(job, None, NOW)
    assert "  1       fan     Running (items 2/5)   -" in text
    section = text.split("Items of fan")[1].split("\n\n")[0].splitlines()
    assert section == [
        " (parallelism 2, FailFast, 0 tolerated):",
        "  1 succeeded, 1 failed, 1 running, 1 waiting to retry, of 5",
        "  failed items: 2",
        "  ITEM   STATE            ATTEMPT   POD             NEXT ATTEMPT",
        "  1      Running          1         f-fan-i1-a1-u   -",
        "  3      BackoffWaiting   1         f-fan-i3-a1-u   2026-03-01T10:05:10Z (in 10s)",
    ]
