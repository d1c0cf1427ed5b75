"""EventPoster: a job's progress Events are held and posted with its next Event; nothing is left out."""

from __future__ import annotations

import asyncio

from procjob.adapters.metrics import Metrics
from procjob.controller.reporting import EVENT_MESSAGE_CHARS, EventPoster
from procjob.core.decision import Decision, Event, EventType
from procjob.models.job import JobMeta
from procjob.models.status import ProcessingJobStatus
from tests.unit.controller.fakes import START, FakeKube

META = JobMeta.from_api(
    {"name": "j1", "namespace": "team-a", "uid": "u-1", "creationTimestamp": "2026-01-02T03:00:00Z"}
)
NORMAL, WARNING = EventType.NORMAL, EventType.WARNING


def progress(message: str) -> Event:
    return Event(NORMAL, "StageSucceeded", message, progress=True)


def decision(*events: Event) -> Decision:
    return Decision(status=ProcessingJobStatus(), events=events)


async def posted(poster: EventPoster, kube: FakeKube) -> list[tuple[str, str, str]]:
    await asyncio.sleep(0)
    await asyncio.gather(*poster.tasks)
    return [(e["type_"], e["reason"], e["message"]) for e in kube.events]


async def test_progress_is_held_and_rides_on_the_next_normal_event_under_its_reason() -> None:
    kube = FakeKube()
    poster = EventPoster(kube, Metrics(), "")  # type: ignore[arg-type]
    poster.post_decision(META, decision(Event(NORMAL, "Started", "job started", progress=True)), START)
    poster.post_decision(META, decision(progress("stage a succeeded; stage b started")), START)
    assert (await posted(poster, kube), poster.held) == ([], 1)
    poster.post_decision(META, decision(Event(NORMAL, "JobSucceeded", "all 2 stages succeeded")), START)
    assert await posted(poster, kube) == [
        ("Normal", "JobSucceeded", "job started; stage a succeeded; stage b started; all 2 stages succeeded")
    ]
    assert poster.held == 0


async def test_a_warning_is_preceded_by_the_held_progress_posted_alone_under_the_newest_reason() -> None:
    kube = FakeKube()
    poster = EventPoster(kube, Metrics(), "")  # type: ignore[arg-type]
    poster.post_decision(META, decision(Event(NORMAL, "Started", "job started", progress=True)), START)
    poster.post_decision(META, decision(progress("stage a succeeded")), START)
    poster.post_decision(META, decision(progress("stage b succeeded")), START)
    poster.post_decision(META, decision(Event(WARNING, "AttemptFailed", "attempt 1 failed")), START)
    assert await posted(poster, kube) == [
        ("Normal", "StageSucceeded", "job started; stage a succeeded; stage b succeeded"),
        ("Warning", "AttemptFailed", "attempt 1 failed"),
    ]


async def test_held_progress_is_posted_alone_after_the_hold() -> None:
    kube = FakeKube()
    poster = EventPoster(kube, Metrics(), "", hold=0.01)  # type: ignore[arg-type]
    poster.post_decision(META, decision(progress("stage a succeeded")), START)
    for _ in range(500):  # the hold's timer fires; then its post
        if kube.events:
            break
        await asyncio.sleep(0.01)
    assert await posted(poster, kube) == [("Normal", "StageSucceeded", "stage a succeeded")]


async def test_a_message_never_grows_past_its_limit_every_transition_is_still_posted() -> None:
    kube = FakeKube()
    poster = EventPoster(kube, Metrics(), "")  # type: ignore[arg-type]
    parts = [f"stage s{i:02} succeeded; stage s{i + 1:02} started" + "." * 60 for i in range(30)]
    for part in parts:
        poster.post_decision(META, decision(progress(part)), START)
    poster.post_decision(META, decision(Event(NORMAL, "JobSucceeded", "x" * 1000)), START)
    poster.flush()
    events = await posted(poster, kube)
    assert all(len(message) <= EVENT_MESSAGE_CHARS for _, _, message in events)
    assert "; ".join(message for _, _, message in events).split("; ")[:-1] == "; ".join(parts).split("; ")
    assert events[-1] == ("Normal", "JobSucceeded", "x" * 1000)


async def test_without_a_hold_every_event_is_posted_at_once() -> None:
    kube = FakeKube()
    poster = EventPoster(kube, Metrics(), "", hold=0)  # type: ignore[arg-type]
    poster.post_decision(META, decision(progress("stage a succeeded")), START)
    assert await posted(poster, kube) == [("Normal", "StageSucceeded", "stage a succeeded")]
