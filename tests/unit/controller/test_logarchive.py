"""The log archive with a fake API source, a fake store and a fake clock: finished attempts are taken
in once, archived per container, known after a restart from the store, retried with backoff when a
read or write fails, given up at the bound, and read with bounded concurrency off the reconcile path."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from procjob.adapters.audit import ArchivedLog, AuditSchemaMissing, AuditUnavailable
from procjob.adapters.kube import ApiError
from procjob.adapters.metrics import Metrics
from procjob.controller.logarchive import LogArchiver
from procjob.controller.queue import WorkQueue
from procjob.core.observe import PodObservation
from procjob.models.job import ProcessingJob
from tests.unit.controller.fakes import START, FakeClock
from tests.unit.core.builders import JOB_UID, OTHER_UID, make_job, make_pod

WAIT = 300


class FakeSource:
    """pods/log: `logs[(pod, container)]` as one chunk; errors queued per pod; an optional gate."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, str], bytes] = {}
        self.errors: list[Exception] = []
        self.reads: list[tuple[str, str, str]] = []
        self.gate: asyncio.Event | None = None
        self.running = 0
        self.most = 0

    async def stream_pod_log(
        self, namespace: str, name: str, params: dict[str, str], *, seconds: float, chunk: int = 65536
    ) -> AsyncGenerator[bytes, None]:
        self.reads.append((namespace, name, params["container"]))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.errors:
                raise self.errors.pop(0)
            yield self.logs.get((name, params["container"]), b"")
        finally:
            self.running -= 1


class FakeStore:
    """`job_logs` keyed as the table is: (job UID, stage, item or None, attempt, container)."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str, int | None, int, str], ArchivedLog] = {}
        self.errors: list[Exception] = []
        self.asked = 0

    async def logs_archived(self, job_uid: str, stage: str, attempt: int, item: int | None = None) -> bool:
        self.asked += 1
        if self.errors:
            raise self.errors.pop(0)
        return any(k[:4] == (job_uid, stage, item, attempt) for k in self.saved)

    async def save_logs(self, logs: Sequence[ArchivedLog]) -> int:
        if self.errors:
            raise self.errors.pop(0)
        for entry in logs:
            self.saved.setdefault((entry.job_uid, entry.stage, entry.item, entry.attempt, entry.container), entry)
        return len(logs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def queue() -> WorkQueue:
    return WorkQueue()


@pytest.fixture
def archiver(store: FakeStore, source: FakeSource, queue: WorkQueue, metrics: Metrics, clock: FakeClock) -> LogArchiver:
    return LogArchiver(store, source, queue, metrics, clock, max_bytes=1024, wait_seconds=WAIT, workers=2)


JOB: ProcessingJob = make_job()


def finished(name: str = "p1", attempt: int = 1, phase: str = "Failed", **fields: object) -> PodObservation:
    values: dict[str, object] = {
        "uid": f"uid-{name}",
        "attempt": attempt,
        "phase": phase,
        "finished": START,
        "containers": ("setup", "main"),
        **fields,
    }
    return make_pod(name, **values)  # type: ignore[arg-type]


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll state the loop changes as it goes (no event to wait on in production code)."""
    async with asyncio.timeout(5):
        for _ in iter(condition, True):
            await asyncio.sleep(0.01)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_a_finished_attempt_is_archived_per_container_and_then_marked(
    archiver: LogArchiver, source: FakeSource, store: FakeStore, queue: WorkQueue, metrics: Metrics
) -> None:
    source.logs[("p1", "main")] = b"the end\n"
    source.logs[("p1", "setup")] = b"setting up\n"
    running = make_pod("p2", uid="uid-p2", attempt=2, phase="Running")
    seen = archiver.observe(JOB, [finished(), running])
    assert [p.log_archived for p in seen] == [False, False]
    assert archiver.pending == 1
    assert archiver.observe(JOB, [finished()]) == [finished()]  # taken in once
    assert await archiver.archive_due() == 1
    assert source.reads == [("media", "p1", "setup"), ("media", "p1", "main")]
    main = store.saved[(JOB_UID, "work", None, 1, "main")]
    assert (main.content, main.pod_name, main.pod_uid, main.namespace, main.name) == (
        b"the end\n",
        "p1",
        "uid-p1",
        "media",
        "thumbs",
    )
    assert (main.finished_at, main.truncated, main.complete, main.error) == (START, False, True, None)
    assert store.saved[(JOB_UID, "work", None, 1, "setup")].content == b"setting up\n"
    assert value(metrics, "procjob_log_archived_total") == 2
    assert value(metrics, "procjob_log_archive_bytes_total") == 19
    assert value(metrics, "procjob_log_archive_pending") == 0
    assert await asyncio.wait_for(queue.get(), 1) == "media/thumbs"  # podGC may go ahead
    assert [p.log_archived for p in archiver.observe(JOB, [finished(), running])] == [True, False]
    assert archiver.pending == 0


async def test_a_pod_without_container_names_is_read_as_the_worker_container(
    archiver: LogArchiver, source: FakeSource, store: FakeStore
) -> None:
    archiver.observe(JOB, [finished(containers=())])
    await archiver.archive_due()
    assert source.reads == [("media", "p1", "main")]


@pytest.mark.parametrize(
    "pod",
    [
        pytest.param(make_pod("x", uid="x", job_uid=OTHER_UID, phase="Failed"), id="another job's label"),
        pytest.param(make_pod("x", uid="x", owner_uid=OTHER_UID, phase="Failed"), id="another owner"),
        pytest.param(make_pod("x", uid="x", phase="Failed", namespace="elsewhere"), id="another namespace"),
        pytest.param(make_pod("x", uid="x", stage=None, phase="Failed"), id="no stage label"),
        pytest.param(make_pod("x", uid="x", attempt=None, phase="Failed"), id="no attempt label"),
        pytest.param(make_pod("x", uid="x", phase="Running", deleting=True), id="a running pod being deleted"),
    ],
)
def test_pods_that_are_not_a_finished_attempt_of_the_job_are_left_alone(
    archiver: LogArchiver, pod: PodObservation
) -> None:
    assert archiver.observe(JOB, [pod]) == [pod]
    assert archiver.pending == 0


async def test_a_restarted_operator_asks_the_store_and_reads_no_log_twice(
    archiver: LogArchiver, source: FakeSource, store: FakeStore, queue: WorkQueue
) -> None:
    store.saved[(JOB_UID, "work", None, 1, "main")] = ArchivedLog.model_validate(
        {"job_uid": JOB_UID, "namespace": "media", "name": "thumbs", "stage": "work", "attempt": 1}
        | {"container": "main", "pod_name": "p1", "pod_uid": "uid-p1"}
    )
    archiver.observe(JOB, [finished()])
    await archiver.archive_due()
    assert source.reads == []
    assert archiver.observe(JOB, [finished()])[0].log_archived
    assert await asyncio.wait_for(queue.get(), 1) == "media/thumbs"


async def test_a_log_the_api_cannot_serve_is_stored_as_unavailable(
    archiver: LogArchiver, source: FakeSource, store: FakeStore, metrics: Metrics
) -> None:
    source.errors = [ApiError(400, "BadRequest", 'container "setup" in pod "p1" is waiting to start')]
    source.logs[("p1", "main")] = b"ran\n"
    archiver.observe(JOB, [finished()])
    await archiver.archive_due()
    setup = store.saved[(JOB_UID, "work", None, 1, "setup")]
    assert setup.error == '400 BadRequest: container "setup" in pod "p1" is waiting to start'
    assert (setup.content, setup.complete) == (b"", False)
    assert store.saved[(JOB_UID, "work", None, 1, "main")].content == b"ran\n"
    assert value(metrics, "procjob_log_archive_failures_total", reason="unavailable") == 1
    assert value(metrics, "procjob_log_archived_total") == 1
    assert archiver.observe(JOB, [finished()])[0].log_archived


async def test_failures_are_retried_with_backoff_then_succeed(
    archiver: LogArchiver, source: FakeSource, store: FakeStore, metrics: Metrics, clock: FakeClock
) -> None:
    store.errors = [AuditUnavailable("PostgreSQL is down")]
    source.errors = [ApiError(500, "InternalError", "dial tcp 127.0.0.1:10250: connection refused")]
    archiver.observe(JOB, [finished()])
    assert await archiver.archive_due() == 1  # the store fails
    assert await archiver.archive_due() == 0  # not due before its delay
    clock.tick(1)
    assert await archiver.archive_due() == 1  # the read fails
    clock.tick(1)
    assert await archiver.archive_due() == 0
    clock.tick(1)
    assert await archiver.archive_due() == 1
    assert (JOB_UID, "work", None, 1, "main") in store.saved
    assert value(metrics, "procjob_log_archive_failures_total", reason="error") == 2
    assert archiver.observe(JOB, [finished()])[0].log_archived


async def test_an_attempt_is_given_up_at_the_bound_and_podgc_goes_ahead(
    archiver: LogArchiver, store: FakeStore, metrics: Metrics, clock: FakeClock, queue: WorkQueue
) -> None:
    store.errors = [AuditUnavailable("PostgreSQL is down")] * 100
    archiver.observe(JOB, [finished()])
    tries = 0
    while archiver.pending:
        tries += await archiver.archive_due()
        clock.tick(1)
    assert clock.now <= START + timedelta(seconds=WAIT)
    assert tries == value(metrics, "procjob_log_archive_failures_total", reason="error") > 5
    assert value(metrics, "procjob_log_archive_failures_total", reason="abandoned") == 1
    assert await asyncio.wait_for(queue.get(), 1) == "media/thumbs"
    pod = archiver.observe(JOB, [finished()])[0]
    assert not pod.log_archived  # the core lets it go by the bound
    assert archiver.pending == 0  # and it is not taken in again


async def test_an_attempt_finished_long_ago_is_tried_once(
    archiver: LogArchiver, store: FakeStore, metrics: Metrics, clock: FakeClock
) -> None:
    clock.tick(WAIT * 2)
    store.errors = [AuditUnavailable("PostgreSQL is down")]
    archiver.observe(JOB, [finished()])
    assert await archiver.archive_due() == 1
    assert archiver.pending == 0
    assert value(metrics, "procjob_log_archive_failures_total", reason="abandoned") == 1


async def test_each_item_of_a_fanned_out_stage_is_its_own_attempt(
    archiver: LogArchiver, source: FakeSource, store: FakeStore, queue: WorkQueue
) -> None:
    """Item 0's attempt 1 and item 5's attempt 1 are two attempts: both read, both stored, each marked
    archived on its own (they once collided: the second was taken for archived and never read)."""
    item0 = finished("thumbs-i0", item=0, containers=("main",))
    item5 = finished("thumbs-i5", uid="uid-i5", item=5, containers=("main",))
    source.logs[("thumbs-i0", "main")] = b"item 0\n"
    source.logs[("thumbs-i5", "main")] = b"item 5\n"
    archiver.observe(JOB, [item0, item5])
    assert archiver.pending == 2
    assert await archiver.archive_due() == 2
    assert sorted(source.reads) == [("media", "thumbs-i0", "main"), ("media", "thumbs-i5", "main")]
    assert store.saved[(JOB_UID, "work", 0, 1, "main")].content == b"item 0\n"
    assert store.saved[(JOB_UID, "work", 5, 1, "main")].content == b"item 5\n"
    assert store.saved[(JOB_UID, "work", 5, 1, "main")].item == 5
    assert [p.log_archived for p in archiver.observe(JOB, [item0, item5])] == [True, True]
    # A stage without items keeps its own key: its attempt 1 is not the items' attempt 1.
    plain = finished("plain", uid="uid-plain", containers=("main",))
    assert archiver.observe(JOB, [plain])[0].log_archived is False
    assert archiver.pending == 1


async def test_a_restarted_operator_asks_the_store_for_each_item_on_its_own(
    archiver: LogArchiver, source: FakeSource, store: FakeStore
) -> None:
    store.saved[(JOB_UID, "work", 0, 1, "main")] = ArchivedLog.model_validate(
        {"job_uid": JOB_UID, "namespace": "media", "name": "thumbs", "stage": "work", "item": 0, "attempt": 1}
        | {"container": "main", "pod_name": "thumbs-i0", "pod_uid": "uid-p1"}
    )
    item0 = finished("thumbs-i0", item=0, containers=("main",))
    item1 = finished("thumbs-i1", uid="uid-i1", item=1, containers=("main",))
    archiver.observe(JOB, [item0, item1])
    await archiver.archive_due()
    assert source.reads == [("media", "thumbs-i1", "main")]  # item 0 was archived already; item 1 was not
    assert (JOB_UID, "work", 1, 1, "main") in store.saved
    assert [p.log_archived for p in archiver.observe(JOB, [item0, item1])] == [True, True]


async def test_a_failure_names_the_item(
    archiver: LogArchiver, store: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.errors.append(AuditUnavailable("database down"))
    archiver.observe(JOB, [finished("thumbs-i3", item=3)])
    await archiver.archive_due()
    assert "media/thumbs stage work item 3 attempt 1: AuditUnavailable: database down; retrying" in caplog.text


async def test_forgetting_a_job_and_the_bound_on_what_is_remembered(
    store: FakeStore, source: FakeSource, queue: WorkQueue, metrics: Metrics, clock: FakeClock
) -> None:
    archiver = LogArchiver(store, source, queue, metrics, clock, max_bytes=64, wait_seconds=WAIT, done_limit=2)
    pods = [finished(f"p{i}", attempt=i) for i in (1, 2, 3)]
    archiver.observe(JOB, pods)
    await archiver.archive_due()
    assert [p.log_archived for p in archiver.observe(JOB, pods)] == [False, True, True]  # p1 was evicted
    assert archiver.pending == 1  # ... so it is taken in again: the store answers for it
    await archiver.archive_due()
    assert len(source.reads) == 6  # no log read twice
    archiver.forget_job(JOB_UID)
    assert archiver.observe(JOB, pods[1:2])[0].log_archived is False


async def test_the_loop_reads_at_most_workers_logs_at_once(
    archiver: LogArchiver, source: FakeSource, store: FakeStore
) -> None:
    source.gate = asyncio.Event()
    archiver.observe(JOB, [finished(f"p{i}", attempt=i, containers=("main",)) for i in range(1, 6)])
    loop = asyncio.create_task(archiver.run())
    try:
        await wait_for(lambda: source.running == 2)
        await asyncio.sleep(0.05)  # a third read would have started by now
        assert source.most == 2
        source.gate.set()
        await wait_for(lambda: len(store.saved) == 5)
        assert source.most == 2
        assert archiver.pending == 0
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_cancelled_loop_leaves_its_reads_pending_for_the_next(
    archiver: LogArchiver, source: FakeSource, store: FakeStore
) -> None:
    source.gate = asyncio.Event()
    archiver.observe(JOB, [finished(containers=("main",))])
    loop = asyncio.create_task(archiver.run())
    await wait_for(lambda: source.running == 1)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert archiver.pending == 1
    source.gate.set()
    assert await archiver.archive_due() == 1
    assert (JOB_UID, "work", None, 1, "main") in store.saved


async def test_a_bug_in_one_archive_is_counted_and_the_loop_goes_on(
    archiver: LogArchiver, source: FakeSource, store: FakeStore, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = archiver._archived

    def broken_once(*args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(archiver, "_archived", broken_once)
    monkeypatch.setattr(archiver, "retry_delays", (0.0,))
    archiver.observe(JOB, [finished(containers=("main",))])
    loop = asyncio.create_task(archiver.run())
    try:
        await wait_for(lambda: calls == 2)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert value(metrics, "procjob_loop_errors_total", loop="log-archive") == 1
    assert archiver.pending == 0


def test_without_a_finish_time_the_bound_counts_from_when_the_pod_was_taken_in(
    archiver: LogArchiver, clock: FakeClock
) -> None:
    clock.tick(100)
    archiver.observe(JOB, [dataclasses.replace(finished(), finished=None)])
    (target,) = archiver._pending.values()
    assert target.give_up_at == START + timedelta(seconds=100 + WAIT)
    assert target.finished_at is None


async def test_the_loop_sleeps_until_a_retry_is_due(
    store: FakeStore, source: FakeSource, queue: WorkQueue, metrics: Metrics
) -> None:
    archiver = LogArchiver(
        store, source, queue, metrics, lambda: datetime.now(UTC), max_bytes=64, wait_seconds=WAIT, retry_delays=(0.1,)
    )
    store.errors = [AuditUnavailable("PostgreSQL is down")]
    archiver.observe(JOB, [finished(finished=datetime.now(UTC), containers=("main",))])
    loop = asyncio.create_task(archiver.run())
    try:
        await wait_for(lambda: value(metrics, "procjob_log_archive_failures_total", reason="error") == 1)
        assert archiver.pending == 1
        await wait_for(lambda: archiver.pending == 0)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert (JOB_UID, "work", None, 1, "main") in store.saved


async def test_a_database_without_the_logs_table_gives_up_at_once(
    archiver: LogArchiver, store: FakeStore, metrics: Metrics, queue: WorkQueue
) -> None:
    store.errors = [AuditSchemaMissing("audit logs_archived: the audit schema is missing, run `procjob db migrate`")]
    archiver.observe(JOB, [finished()])
    assert await archiver.archive_due() == 1
    assert archiver.pending == 0  # podGC need not wait out the bound for a table that is not there
    assert value(metrics, "procjob_log_archive_failures_total", reason="abandoned") == 1
    assert await asyncio.wait_for(queue.get(), 1) == "media/thumbs"


async def test_a_deleted_pods_attempt_is_forgotten_and_another_jobs_kept(
    archiver: LogArchiver, source: FakeSource, store: FakeStore
) -> None:
    """Once its pod is deleted, whether an attempt was archived is asked no more (#18: the memory of
    20,000 finished jobs); a pod of another owner or without an attempt forgets nothing."""
    source.logs[("p1", "main")] = b"x"
    archiver.observe(JOB, [finished()])
    await archiver.archive_due()
    assert archiver.observe(JOB, [finished()])[0].log_archived
    archiver.forget_pod(dataclasses.replace(finished(), owner_uid=OTHER_UID))  # not the job's: ignored
    archiver.forget_pod(dataclasses.replace(finished(), attempt=None))
    assert archiver.observe(JOB, [finished()])[0].log_archived
    archiver.forget_pod(finished())
    again = archiver.observe(JOB, [finished()])  # were it back: taken in, and the store says archived
    assert not again[0].log_archived
    assert archiver.pending == 1
    assert await archiver.archive_due() == 1
    assert store.asked >= 1
    assert source.reads.count(("media", "p1", "main")) == 1  # never read twice
