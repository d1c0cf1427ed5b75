"""The audit relay against a fake store and a fake clock: batching, outages, one job's refused rows
kept to that job (quarantine), hostile content written degraded, a loop that never dies, and
`procjob_audit_up` set only from what was measured.

The fake store encodes every row with the real row builders of procjob.adapters.audit (so hostile
content goes the way it goes to PostgreSQL) and can refuse chosen jobs, raise arbitrary exceptions
or be down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from procjob.adapters.audit import (
    DEGRADED_KEY,
    AuditError,
    AuditUnavailable,
    JobSummary,
)
from procjob.adapters.audit.rows import batch, event_row, job_row
from procjob.adapters.metrics import Metrics
from procjob.controller import relay as relay_module
from procjob.controller.queue import WorkQueue
from procjob.controller.relay import AuditRelay, is_job_specific
from procjob.controller.summaries import spec_snapshot, summary_of
from procjob.core.redact import REDACTED
from procjob.models.audit import AuditEntry, AuditRecord
from procjob.models.job import ProcessingJob
from tests.unit.adapters.audit.hostile import hostile, hostile_text, strict_json
from tests.unit.core.builders import make_job, spec_of

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
UIDS = {name: f"00000000-0000-4000-8000-{i:012d}" for i, name in enumerate(("a", "b", "c", "d"), start=1)}


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeStore:
    """Rows by (uid, seq) and summaries by uid; `fail(uids)` may return an exception to raise."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, int], dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.writes: list[set[str]] = []  # the jobs of each insert call
        self.fail: Callable[[set[str]], BaseException | None] = lambda uids: None
        self.down = False
        self.pings = 0

    def refuse(self, *names: str, exc: Callable[[], BaseException] | None = None) -> None:
        """PostgreSQL refuses any batch holding one of these jobs (a data error, by default)."""
        bad = {UIDS[n] for n in names}
        make = exc or (lambda: AuditError("audit insert: invalid input syntax for type json", sqlstate="22P02"))
        self.fail = lambda uids: make() if uids & bad else None

    async def insert(self, records: Sequence[AuditRecord]) -> int:
        uids = {r.job_uid for r in records}
        self.writes.append(uids)
        if self.down:
            raise AuditUnavailable("audit insert: PostgreSQL at postgresql://x:***@db/audit: connection refused")
        exc = self.fail(uids)
        if exc is not None:
            raise exc
        rows = json.loads(batch(event_row(r) for r in records))  # what PostgreSQL would parse
        new = [row for row in rows if (row["job_uid"], row["seq"]) not in self.events]
        self.events.update({(row["job_uid"], row["seq"]): row for row in rows})
        return len(new)

    async def upsert_jobs(self, jobs: Sequence[JobSummary]) -> int:
        for row in json.loads(batch(job_row(job) for job in jobs)):
            self.jobs[row["uid"]] = row
        return len(jobs)

    async def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise AuditUnavailable("audit ping: connection refused")


def entry(seq: int, kind: str = "JobStarted", **fields: Any) -> AuditEntry:
    return AuditEntry.model_validate({"seq": seq, "type": kind, "time": T0, **fields})


def job(name: str, spec: dict[str, Any] | None = None) -> ProcessingJob:
    return make_job(spec, name=name, uid=UIDS[name])


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def queue() -> WorkQueue:
    return WorkQueue()


@pytest.fixture
def relay(store: FakeStore, queue: WorkQueue, metrics: Metrics, clock: FakeClock) -> AuditRelay:
    return AuditRelay(store, queue, metrics, clock)


def submit(relay: AuditRelay, *names: str, seqs: Sequence[int] = (1, 2)) -> None:
    for name in names:
        relay.submit(job(name), [entry(s) for s in seqs])


# ------------------------------------------------------------------------------- the plain path


async def test_a_batch_is_written_confirmed_and_its_jobs_requeued(
    relay: AuditRelay, store: FakeStore, queue: WorkQueue, metrics: Metrics
) -> None:
    submit(relay, "a", "b")
    assert relay.backlog == 4
    assert await relay.flush()
    assert store.writes == [{UIDS["a"], UIDS["b"]}], "one insert for the whole batch"
    assert relay.confirmed(UIDS["a"]) == relay.confirmed(UIDS["b"]) == 2
    assert relay.backlog == 0
    assert len(queue) == 2, "each job is requeued so that its next status write trims the outbox"
    assert sample(metrics, "procjob_audit_records_total") == 4
    assert sample(metrics, "procjob_audit_up") == 1
    assert not await relay.flush(), "nothing left to do"


async def test_entries_already_confirmed_are_not_submitted_again(relay: AuditRelay, store: FakeStore) -> None:
    submit(relay, "a", seqs=(1, 2))
    await relay.flush()
    submit(relay, "a", seqs=(1, 2, 3))
    assert relay.backlog == 1
    await relay.flush()
    assert relay.confirmed(UIDS["a"]) == 3


# ------------------------------------------------------------------------------------ audit_up


async def test_audit_up_is_not_assumed_it_is_measured_by_probes_and_writes(
    relay: AuditRelay, store: FakeStore, metrics: Metrics, clock: FakeClock
) -> None:
    assert metrics.registry.get_sample_value("procjob_audit_up") in (None, 0.0), "unset until measured"
    await relay.run_once()  # idle and never measured: probe now
    assert store.pings == 1
    assert sample(metrics, "procjob_audit_up") == 1
    store.down = True
    clock.advance(relay.probe_interval)
    await relay.run_once()
    assert store.pings == 2
    assert sample(metrics, "procjob_audit_up") == 0, "a failed probe says PostgreSQL is down"
    store.down = False
    submit(relay, "a")
    await relay.run_once()
    assert store.pings == 2, "a write measures too: no probe while there is work"
    assert sample(metrics, "procjob_audit_up") == 1


async def test_an_outage_keeps_every_record_and_retries_after_a_backoff(
    relay: AuditRelay, store: FakeStore, metrics: Metrics, clock: FakeClock
) -> None:
    store.down = True
    submit(relay, "a", "b")
    await relay.flush()
    assert relay.backlog == 4, "the batch is kept"
    assert relay.problem(UIDS["a"]) is None, "an outage is everyone's, not a job's problem"
    assert sample(metrics, "procjob_audit_up") == 0
    assert sample(metrics, "procjob_audit_errors_total") == 1
    submit(relay, "c")
    assert not await relay.flush(), "no write before the backoff ends, whatever is submitted"
    assert len(store.writes) == 1
    clock.advance(relay.retry_delays[0])
    store.down = False
    await relay.flush()
    assert [relay.confirmed(UIDS[n]) for n in "abc"] == [2, 2, 2]
    assert sample(metrics, "procjob_audit_up") == 1


async def test_the_outage_backoff_grows_and_is_capped(relay: AuditRelay, store: FakeStore, clock: FakeClock) -> None:
    store.down = True
    submit(relay, "a")
    waits = []
    for _ in range(6):
        await relay.flush()
        waits.append(relay._seconds_to_next())
        clock.advance(waits[-1])
    assert waits == [0.5, 1.0, 2.0, 5.0, 5.0, 5.0]


# ---------------------------------------------------------------------------------- quarantine


async def test_a_job_whose_rows_are_refused_is_quarantined_and_everyone_else_flows(
    relay: AuditRelay, store: FakeStore, metrics: Metrics, clock: FakeClock
) -> None:
    store.refuse("b")
    submit(relay, "a", "b", "c")
    await relay.flush()
    assert store.writes == [{UIDS[n] for n in "abc"}, {UIDS["a"]}, {UIDS["b"]}, {UIDS["c"]}], "then job by job"
    assert [relay.confirmed(UIDS[n]) for n in "abc"] == [2, 0, 2]
    assert relay.backlog == 2, "the refused job's entries stay pending"
    problem = relay.problem(UIDS["b"])
    assert problem is not None
    assert "invalid input syntax" in problem
    assert relay.problem(UIDS["a"]) is None
    assert sample(metrics, "procjob_audit_quarantined_jobs") == 1
    assert sample(metrics, "procjob_audit_quarantines_total") == 1
    assert sample(metrics, "procjob_audit_up") == 1, "PostgreSQL answered: it is up"

    submit(relay, "a", seqs=(1, 2, 3))
    submit(relay, "b", seqs=(1, 2, 3))
    store.writes.clear()
    await relay.flush()
    assert store.writes == [{UIDS["a"]}], "a quarantined job is not in the others' batches"
    assert relay.confirmed(UIDS["a"]) == 3

    clock.advance(relay.quarantine_delays[0])
    store.writes.clear()
    await relay.flush()
    assert store.writes == [{UIDS["b"]}], "retried alone once its delay is over"
    assert relay.problem(UIDS["b"]) is not None
    assert sample(metrics, "procjob_audit_quarantines_total") == 1, "counted once per quarantine"
    assert relay._quarantine[UIDS["b"]].until == clock.now + timedelta(seconds=relay.quarantine_delays[1])

    store.refuse()  # fixed (e.g. a new operator version)
    clock.advance(relay.quarantine_delays[1])
    await relay.flush()
    assert relay.confirmed(UIDS["b"]) == 3
    assert relay.problem(UIDS["b"]) is None
    assert sample(metrics, "procjob_audit_quarantined_jobs") == 0


@pytest.mark.parametrize(
    "failure",
    [
        lambda: RuntimeError("a bug in row building"),
        lambda: ValueError("Maximum serialization depth exceeded"),
        lambda: AuditError("audit insert: value too long", sqlstate="54000"),
        lambda: AuditError("audit insert: duplicate key", sqlstate="23505"),
    ],
    ids=["bug", "serialisation", "program-limit", "integrity"],
)
async def test_any_failure_that_may_be_one_jobs_is_isolated_to_that_job(
    relay: AuditRelay, store: FakeStore, failure: Callable[[], BaseException]
) -> None:
    store.refuse("a", exc=failure)
    submit(relay, "a", "b")
    await relay.flush()
    assert relay.confirmed(UIDS["b"]) == 2
    assert relay.problem(UIDS["a"]) is not None


@pytest.mark.parametrize(
    ("exc", "job_specific"),
    [
        (AuditUnavailable("down"), False),
        (AuditError("the store is closed"), False),
        (AuditError("the audit schema is missing", sqlstate="42P01"), False),
        (AuditError("serialization failure", sqlstate="40001"), False),
        (AuditError("invalid json", sqlstate="22P02"), True),
        (AuditError("check violation", sqlstate="23514"), True),
        (KeyError("bug"), True),
    ],
)
def test_what_is_everyones_failure_and_what_may_be_one_jobs(exc: BaseException, job_specific: bool) -> None:
    assert is_job_specific(exc) is job_specific


async def test_postgres_going_away_during_isolation_keeps_everything_and_quarantines_nobody(
    relay: AuditRelay, store: FakeStore, metrics: Metrics
) -> None:
    calls = 0

    def first_refused_then_down(uids: set[str]) -> BaseException | None:
        nonlocal calls
        calls += 1
        return AuditError("invalid", sqlstate="22P02") if calls == 1 else AuditUnavailable("gone")

    store.fail = first_refused_then_down
    submit(relay, "a", "b", "c")
    await relay.flush()
    assert calls == 2, "isolation stops at the first connection failure"
    assert relay.backlog == 6
    assert all(relay.problem(uid) is None for uid in UIDS.values())
    assert sample(metrics, "procjob_audit_up") == 0


async def test_a_lone_job_refused_is_quarantined_without_writing_it_twice_and_requeued_to_show_it(
    relay: AuditRelay, store: FakeStore, queue: WorkQueue
) -> None:
    store.refuse("a")
    submit(relay, "a")
    await relay.flush()
    assert len(store.writes) == 1
    assert relay.problem(UIDS["a"]) is not None
    assert await asyncio.wait_for(queue.get(), 1) == "media/a", "its next reconcile can show the problem"


async def test_a_quarantined_job_waits_out_an_outage_then_is_retried_without_a_busy_loop(
    relay: AuditRelay, store: FakeStore, clock: FakeClock
) -> None:
    store.refuse("a")
    submit(relay, "a")
    await relay.flush()
    store.down = True
    submit(relay, "b")
    await relay.flush()  # everyone's failure: back off
    clock.advance(relay.quarantine_delays[0] - 0.1)
    await relay.flush()  # b's retry fails again: backing off past a's due time
    clock.advance(0.2)
    assert relay._seconds_to_next() > 0, "a quarantined job due during the backoff does not spin the loop"
    store.writes.clear()
    assert not await relay.flush()
    assert store.writes == []
    relay.forget(UIDS["b"])
    store.down = False
    clock.advance(relay.retry_delays[1])
    assert relay._seconds_to_next() == 0
    await relay.flush()
    assert store.writes == [{UIDS["a"]}], "retried once the backoff is over, though no other batch ran"


async def test_forget_drops_the_quarantine_of_a_deleted_job(
    relay: AuditRelay, store: FakeStore, metrics: Metrics
) -> None:
    store.refuse("a")
    submit(relay, "a")
    await relay.flush()
    relay.forget(UIDS["a"])
    assert relay.problem(UIDS["a"]) is None
    assert relay.backlog == 0
    assert sample(metrics, "procjob_audit_quarantined_jobs") == 0


# ------------------------------------------------------------------------- hostile job content


def deep(levels: int, leaf: Any = "x") -> Any:
    for _ in range(levels):
        leaf = {"k": leaf}
    return leaf


def hostile_job() -> ProcessingJob:
    """A fetch stage whose `with` is nested 600 deep (to_api() gives up) and carries a header."""
    base = job("b", spec_of({"name": "fetch", "uses": "fetch", "with": {"url": "https://example.org/x"}}))
    assert base.spec is not None
    stage = base.spec.stages[0]
    params = {"url": "https://example.org/x", "headers": {"Authorization": "Bearer s3cr3t"}, "deep": deep(600)}
    spec = base.spec.model_copy(update={"stages": [stage.model_copy(update={"with_": params})]})
    return dataclasses.replace(base, spec=spec)


def hostile_entries() -> list[AuditEntry]:
    return [
        entry(1, "AttemptSucceeded", detail={"outputs": {"k": "\ud800"}}),  # {"k":"\ud800"} from json.loads
        entry(2, "AttemptFailed", message="exit\x00 1", detail={"outputs": deep(400), "n": float("nan")}),
        entry(3, "AttemptFailed", detail={"log": "y" * 1_000_000}),
    ]


async def test_a_hostile_job_is_written_degraded_and_marked_next_to_a_good_one(
    relay: AuditRelay, store: FakeStore
) -> None:
    relay.submit(hostile_job(), hostile_entries())
    submit(relay, "a")
    await relay.flush()
    assert relay.confirmed(UIDS["b"]) == 3, "no audit record is lost"
    assert relay.confirmed(UIDS["a"]) == 2
    assert relay.problem(UIDS["b"]) is None
    rows = {seq: row for (uid, seq), row in store.events.items() if uid == UIDS["b"]}
    assert rows[1]["detail"]["outputs"] == {"k": "\ufffd"}
    assert rows[2]["message"] == "exit\ufffd 1"
    assert rows[2]["detail"]["n"] == "NaN"
    assert len(json.dumps(rows[3])) < 100_000
    for row in rows.values():
        assert row["detail"][DEGRADED_KEY], "each degraded row says how"
    spec = store.jobs[UIDS["b"]]["spec"]
    assert spec["stages"][0]["with"]["headers"] == {"Authorization": REDACTED}
    assert DEGRADED_KEY in spec


def test_summary_of_never_raises_on_a_hostile_spec_and_redacts_it() -> None:
    summary = summary_of(hostile_job(), hostile_entries())
    assert summary.last_seq == 3
    stage = summary.spec["stages"][0]
    assert stage["with"]["url"] == "https://example.org/x"
    assert stage["with"]["headers"] == {"Authorization": REDACTED}
    assert any("nested deeper" in note for note in summary.spec[DEGRADED_KEY])


def test_the_snapshot_of_an_ordinary_spec_is_its_api_form_with_credentials_redacted() -> None:
    stages = [
        {"name": "fetch", "uses": "fetch", "with": {"url": "https://example.org/x", "bucket": "media"}},
        {"name": "resize", "image": "r:1", "env": [{"name": "API_TOKEN", "value": "t"}, {"name": "N", "value": "1"}]},
    ]
    parsed = job("a", spec_of(*stages))
    assert parsed.spec is not None
    expected = parsed.spec.to_api()
    expected["stages"][1]["env"][0]["value"] = REDACTED
    assert spec_snapshot(parsed.spec) == expected
    assert spec_snapshot(None) == {}


def test_a_spec_that_cannot_be_dumped_at_all_becomes_a_marker_document() -> None:
    class Broken:
        def model_dump(self, **_: Any) -> dict[str, Any]:
            raise RuntimeError("boom")

    assert spec_snapshot(Broken()) == {  # type: ignore[arg-type]
        DEGRADED_KEY: ["the spec could not be recorded (RuntimeError)"]
    }


# -------------------------------------------------------------------------------------- the loop


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll state the relay changes as it goes (no event to wait on in production code)."""
    async with asyncio.timeout(5):
        for _ in iter(condition, True):
            await asyncio.sleep(0.01)


async def test_the_loop_survives_unexpected_exceptions_and_counts_them(
    store: FakeStore, queue: WorkQueue, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "LOOP_ERROR_DELAY", 0.01)
    relay = AuditRelay(store, queue, metrics, lambda: datetime.now(UTC))
    failures = [RuntimeError("a bug"), RuntimeError("another bug")]
    planning = relay._seconds_to_next

    def buggy_planning() -> float:
        if failures:
            raise failures.pop()
        return planning()

    monkeypatch.setattr(relay, "_seconds_to_next", buggy_planning)
    task = asyncio.create_task(relay.run())
    try:
        submit(relay, "a")
        await wait_for(lambda: relay.confirmed(UIDS["a"]) == 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sample(metrics, "procjob_loop_errors_total", loop="audit-relay") == 2


async def test_the_loop_probes_while_idle_and_writes_what_is_submitted(
    store: FakeStore, queue: WorkQueue, metrics: Metrics
) -> None:
    relay = AuditRelay(store, queue, metrics, lambda: datetime.now(UTC), probe_interval=0.05, retry_delays=(0.01,))
    task = asyncio.create_task(relay.run())
    try:
        await wait_for(lambda: store.pings >= 2)
        assert sample(metrics, "procjob_audit_up") == 1
        store.down = True
        await wait_for(lambda: sample(metrics, "procjob_audit_up") == 0)
        submit(relay, "a")
        await asyncio.sleep(0.05)
        store.down = False
        await wait_for(lambda: relay.confirmed(UIDS["a"]) == 2)
        assert sample(metrics, "procjob_audit_up") == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=hostile, header=hostile_text)
def test_summary_of_any_with_is_a_valid_redacted_row(params: Any, header: str) -> None:
    base = hostile_job()
    assert base.spec is not None
    stage = base.spec.stages[0].model_copy(update={"with_": {"headers": {"Authorization": header}, "p": params}})
    hostile = dataclasses.replace(base, spec=base.spec.model_copy(update={"stages": [stage]}))
    summary = summary_of(hostile, hostile_entries())
    row = strict_json(job_row(summary))
    assert row["spec"]["stages"][0]["with"]["headers"] == {"Authorization": REDACTED}
