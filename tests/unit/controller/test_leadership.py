"""Leader election against a fake Lease store and fake clocks: one leader at a time, takeover only a
lease after the standby last saw the Lease change, a leader that cannot renew stops before anyone
else may lead, the write fence refuses a write past the renew deadline (a leader woken from
SIGSTOP) and stops the process, a released Lease is taken at once; metrics and log lines of each
transition."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from procjob.adapters.audit import AuditUnavailable
from procjob.adapters.kube import ApiError, Conflict, Credentials, NotFound
from procjob.adapters.metrics import Metrics
from procjob.controller.assembly import Operator
from procjob.controller.leadership import FencedStore, LeaderElector, Timings
from procjob.controller.settings import OperatorSettings
from tests.unit.controller.fakes import START, FakeClock

TIMINGS = Timings(lease=15, renew_deadline=10, retry=2)
LEASE = "procjob-operator"


class TurnOver(Exception):
    """Raised by the fake sleep: ends one turn of the election loop."""


class FakeLeases:
    """Leases by name, with resourceVersions and 409s; `down` refuses everything, `before` runs
    before each request (e.g. time passing while it is in flight)."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.rv = itertools.count(1)
        self.down = False
        self.before: Callable[[str], Awaitable[None]] | None = None
        self.writes = 0

    async def request(self, method: str, path: str, *, body: Any = None, **_: str) -> Any:
        if self.before is not None:
            await self.before(method)
        if self.down:
            raise OSError("connection refused")
        name = path.rsplit("/", 1)[-1] if method != "POST" else body["metadata"]["name"]
        if method == "GET":
            if name not in self.leases:
                raise NotFound(404, "NotFound", name)
            return copy.deepcopy(self.leases[name])
        if method == "POST" and name in self.leases:
            raise Conflict(409, "AlreadyExists", name)
        if method == "PUT" and self.leases[name]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", name)
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self.rv))
        self.leases[name] = stored
        return copy.deepcopy(stored)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.leases[LEASE]["spec"]
        return spec

    def holder(self) -> str | None:
        return self.spec()["holderIdentity"]

    def take(self, holder: str) -> None:
        """Someone else writes the Lease (as if it had taken it)."""
        self.leases[LEASE]["spec"]["holderIdentity"] = holder
        self.leases[LEASE]["metadata"]["resourceVersion"] = str(next(self.rv))


class World:
    """Candidates sharing one Lease store and one (fake) time; each has its own metrics."""

    def __init__(self) -> None:
        self.leases = FakeLeases()
        self.clock = FakeClock()
        self.started: list[str] = []
        self.lost: list[str] = []
        self.metrics: dict[str, Metrics] = {}

    def seconds(self) -> float:
        return (self.clock.now - START).total_seconds()

    def elector(self, name: str) -> LeaderElector:
        async def started() -> None:
            self.started.append(name)

        async def no_sleep(_: float) -> None:
            raise TurnOver  # one turn at a time: the test drives the loop

        self.metrics[name] = Metrics()
        return LeaderElector(
            self.leases,
            "ops",
            name,
            on_started=started,
            on_lost=lambda: self.lost.append(name),
            metrics=self.metrics[name],
            timings=TIMINGS,
            clock=self.clock,
            monotonic=self.seconds,
            sleep=no_sleep,
        )

    def metric(self, name: str, metric: str, **labels: str) -> float:
        value = self.metrics[name].registry.get_sample_value(metric, labels)
        return 0.0 if value is None else value


async def turn(elector: LeaderElector) -> None:
    with pytest.raises(TurnOver):
        await elector.run()


async def test_one_candidate_leads_and_the_other_stands_by() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    await turn(a)
    await turn(b)
    assert world.started == ["a"]
    assert (a.leading, b.leading) == (True, False)
    assert world.leases.holder() == "a"
    assert (world.metric("a", "procjob_leader"), world.metric("b", "procjob_leader")) == (1, 0)
    assert world.metric("a", "procjob_leadership_transitions_total", to="leader") == 1
    assert world.metric("b", "procjob_leadership_transitions_total", to="leader") == 0
    assert (a.may_write(), b.may_write()) == (True, False)
    assert world.lost == []  # a standby's refusal stops nothing
    assert (a.holder, b.holder) == ("a", "a")
    assert world.elector("c").holder is None  # not read yet


async def test_a_standby_takes_over_a_lease_after_it_last_saw_the_lease_change() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    await turn(a)
    await turn(b)  # b sees a's Lease at 0
    world.clock.tick(14)
    await turn(b)
    assert not b.leading
    world.clock.tick(1)
    await turn(b)
    assert b.leading
    assert world.leases.spec()["leaseTransitions"] == 1
    assert world.metric("b", "procjob_leadership_transitions_total", to="leader") == 1


async def test_a_standby_that_first_sees_a_lease_late_waits_its_whole_duration() -> None:
    """The holder's renewTime is not trusted (another node's clock): b first reads the Lease at 14s
    and waits until 29s, though by a's timestamp it ran out at 15s."""
    world = World()
    a = world.elector("a")
    await turn(a)
    world.clock.tick(14)
    b = world.elector("b")
    await turn(b)
    world.clock.tick(14)
    await turn(b)
    assert not b.leading
    world.clock.tick(1)
    await turn(b)
    assert b.leading


async def test_a_renewing_leader_keeps_the_lease() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    for _ in range(20):
        await turn(a)
        world.clock.tick(2)
        await turn(b)
    assert world.started == ["a"]
    assert not b.leading
    assert a.may_write()


async def test_a_leader_that_cannot_renew_stops_at_its_deadline_before_the_lease_can_be_taken() -> None:
    world = World()
    a = world.elector("a")
    await turn(a)
    world.leases.down = True
    world.clock.tick(9)
    await turn(a)
    assert world.lost == []
    assert a.may_write()
    world.clock.tick(1)
    await a.run()  # returns after on_lost, without sleeping
    assert world.lost == ["a"]
    assert not a.leading
    assert not a.may_write()
    assert world.metric("a", "procjob_leader_renew_failures_total") == 1  # at 10s it stops without trying
    assert world.metric("a", "procjob_leader") == 0
    assert world.metric("a", "procjob_leadership_transitions_total", to="standby") == 1
    assert TIMINGS.renew_deadline < TIMINGS.lease  # others may take it only after the leader stopped


async def test_a_leader_woken_past_its_deadline_refuses_the_first_write_and_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGSTOP, then SIGCONT 20s later: a reconcile's write comes before the loop's next turn.
    The fence refuses it by the leader's own clock and stops the process there."""
    world = World()
    a = world.elector("a")
    await turn(a)
    world.clock.tick(20)
    assert not a.may_write()
    assert world.lost == ["a"]
    assert "a stops leading: a write was refused: its last renewal is 20.0s old" in caplog.text
    assert not a.may_write()
    assert world.lost == ["a"]  # stopped once


async def test_a_leader_woken_past_its_deadline_stops_without_renewing_its_own_lease() -> None:
    """Nobody took the Lease meanwhile, but the leader does not renew it as if nothing happened:
    past its deadline it is done (client-go)."""
    world = World()
    a = world.elector("a")
    await turn(a)
    writes = world.leases.writes
    world.clock.tick(12)
    await a.run()
    assert world.lost == ["a"]
    assert world.leases.writes == writes


async def test_a_leader_stopped_between_reading_and_writing_the_lease_does_not_renew_late() -> None:
    """Found by the chaos suite (seed 20261202, quick): SIGSTOPped after its GET of the Lease and
    continued past its deadline, the leader sent its PUT anyway (refused 409 by then, but a write
    after the Lease was lost all the same). It stops instead."""
    world = World()
    a = world.elector("a")
    await turn(a)
    writes = world.leases.writes

    async def stopped_after_the_read(method: str) -> None:
        if method == "GET":
            world.clock.tick(12)

    world.leases.before = stopped_after_the_read
    await a.run()
    assert world.lost == ["a"]
    assert world.leases.writes == writes


async def test_a_renewal_counts_from_when_it_was_sent() -> None:
    """A renewal answered 3s after it was sent buys the deadline from the sending."""
    world = World()
    a = world.elector("a")
    await turn(a)

    async def slow(_: str) -> None:
        world.clock.tick(1.5)

    world.leases.before = slow  # GET and PUT: 3s in flight
    await turn(a)
    world.leases.before = None
    world.clock.tick(6.9)  # 9.9s after the renewal was sent
    assert a.may_write()
    world.clock.tick(0.1)
    assert not a.may_write()
    assert world.lost == ["a"]


async def test_a_renewal_that_fails_past_the_deadline_stops_the_leader(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    a = world.elector("a")
    await turn(a)
    world.clock.tick(8)

    async def refused_slowly(_: str) -> None:
        world.clock.tick(3)
        world.leases.down = True

    world.leases.before = refused_slowly
    await a.run()
    assert world.lost == ["a"]
    assert "a stops leading: it could not renew: its last renewal is 11.0s old" in caplog.text


async def test_a_leader_that_finds_the_lease_taken_stops_at_once() -> None:
    world = World()
    a = world.elector("a")
    await turn(a)
    world.leases.take("intruder")
    world.clock.tick(2)
    await a.run()
    assert world.lost == ["a"]
    assert world.metric("a", "procjob_leadership_transitions_total", to="standby") == 1


async def test_a_hung_renewal_is_cut_off_at_the_deadline() -> None:
    world = World()
    a = world.elector("a")
    await turn(a)
    hung = asyncio.Event()

    async def hang(_: str) -> None:
        await hung.wait()

    world.leases.before = hang
    world.clock.tick(9.95)  # 0.05s (real time) left of the deadline when the renewal starts
    await turn(a)  # cut off, counted as a failure
    assert world.metric("a", "procjob_leader_renew_failures_total") == 1
    world.clock.tick(0.05)
    await a.run()
    assert world.lost == ["a"]


async def test_a_released_lease_is_taken_at_the_next_try() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    await turn(a)
    await turn(b)
    await a.release()
    assert world.leases.holder() == ""
    assert not a.may_write()
    assert world.lost == []  # a release is not a loss: the shutdown goes on
    assert world.metric("a", "procjob_leadership_transitions_total", to="standby") == 1
    world.clock.tick(2)
    await turn(b)
    assert b.leading


async def test_a_release_writes_nothing_when_the_lease_is_no_longer_ours_or_we_never_led() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    await b.release()
    await turn(a)
    world.leases.take("c")
    writes = world.leases.writes
    await a.release()
    assert world.leases.holder() == "c"
    world.leases.down = True
    await a.release()  # not leading any more: nothing to do
    assert world.leases.writes == writes


async def test_a_release_that_fails_is_logged_and_the_fence_stays_shut(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    a = world.elector("a")
    await turn(a)
    world.leases.down = True
    with caplog.at_level(logging.WARNING, logger="procjob.leader"):
        await a.release()
    assert "the Lease was not released" in caplog.text
    assert not a.may_write()


async def test_each_transition_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    with caplog.at_level(logging.INFO, logger="procjob.leader"):
        await turn(a)
        await turn(b)
        await turn(b)  # the same holder again: no new line
        world.leases.down = True
        world.clock.tick(10)
        await a.run()
        world.leases.down = False
        world.clock.tick(5)
        await turn(b)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "leader election: a leads (lease ops/procjob-operator)",
        "leader election: a leads; b stands by",
        "leader election: a stops leading: its renew loop woke up late: its last renewal is 10.0s old, past the "
        "renew deadline (10s); exiting",
        "leader election: b leads (lease ops/procjob-operator)",
    ]


async def test_a_lease_that_cannot_be_used_is_a_warning_once_per_problem(caplog: pytest.LogCaptureFixture) -> None:
    """A standby whose Lease requests fail (RBAC, the network) says so, once per problem and once
    when it works again; losing a race for the Lease (409) is no problem."""
    world = World()
    b = world.elector("b")
    with caplog.at_level(logging.INFO, logger="procjob.leader"):
        world.leases.down = True
        await turn(b)
        await turn(b)
        world.leases.down = False

        async def forbidden(_: str) -> None:
            raise ApiError(403, "Forbidden", 'leases "procjob-operator" is forbidden')

        world.leases.before = forbidden
        await turn(b)
        world.leases.before = None
        a = world.elector("a")

        async def raced(method: str) -> None:
            if method == "POST":  # a creates the Lease between b's read and b's create
                world.leases.before = None
                await turn(a)

        world.leases.before = raced
        await turn(b)  # loses the race for the Lease: a 409 on its create, no problem
        assert (a.leading, b.leading) == (True, False)
        await turn(b)  # reads it and stands by: it works again
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or "again" in r.getMessage()]
    assert lines == [
        "leader election: b cannot use the Lease ops/procjob-operator: OSError: connection refused",
        "leader election: b cannot use the Lease ops/procjob-operator: "
        'ApiError: 403 Forbidden: leases "procjob-operator" is forbidden',
        "leader election: b can use the Lease again",
    ]


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def insert(self, records: Any) -> int:
        self.calls.append("insert")
        return len(records)

    async def upsert_jobs(self, jobs: Any) -> int:
        self.calls.append("upsert_jobs")
        return len(jobs)

    async def ping(self) -> None:
        self.calls.append("ping")

    async def logs_archived(self, job_uid: str, stage: str, attempt: int, item: int | None = None) -> bool:
        self.calls.append("logs_archived")
        return False

    async def save_logs(self, logs: Any) -> int:
        self.calls.append("save_logs")
        return len(logs)


async def test_the_audit_databases_writes_ask_the_fence_and_its_reads_do_not() -> None:
    store, leading = FakeStore(), [True]
    fenced = FencedStore(store, store, lambda: leading[0])
    assert await fenced.insert([]) == 0
    assert await fenced.upsert_jobs([]) == 0
    assert await fenced.save_logs([]) == 0
    leading[0] = False
    for write in (fenced.insert([]), fenced.upsert_jobs([]), fenced.save_logs([])):
        with pytest.raises(AuditUnavailable, match="does not lead"):
            await write
    await fenced.ping()
    assert await fenced.logs_archived("u", "s", 1) is False
    assert store.calls == ["insert", "upsert_jobs", "save_logs", "ping", "logs_archived"]


async def test_with_election_every_write_of_the_operator_asks_the_electors_fence() -> None:
    credentials = Credentials(server="http://127.0.0.1:9")
    alone = await Operator.build(OperatorSettings(), credentials)
    try:
        assert alone.elector is None
        assert alone.client.fence is None
    finally:
        await alone.stop()
    elected = await Operator.build(OperatorSettings(leader_elect=True, instance="pod-1"), credentials)
    try:
        assert elected.elector is not None
        assert elected.elector.identity.startswith("pod-1_")
        assert elected.client.fence == elected.elector.may_write
        assert not elected.client.fence()  # a standby until it takes the Lease
    finally:
        await elected.stop()
