"""Leader election against a fake Lease store and fake clocks: one leader at a time, takeover only
after the lease expires, a leader that cannot renew stops before anyone else may lead."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from procjob.adapters.kube import Conflict, NotFound
from procjob.controller.leadership import LeaderElector, Timings
from tests.unit.controller.fakes import START, FakeClock

TIMINGS = Timings(lease=15, renew_deadline=10, retry=2)


class TurnOver(Exception):
    """Raised by the fake sleep: ends one turn of the election loop."""


class FakeLeases:
    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.rv = itertools.count(1)
        self.down = False

    async def request(self, method: str, path: str, *, body: Any = None, **_: str) -> Any:
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
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self.rv))
        self.leases[name] = stored
        return copy.deepcopy(stored)

    def holder(self) -> str | None:
        return self.leases["procjob-operator"]["spec"]["holderIdentity"]


class World:
    """Two candidates sharing one Lease store and one (fake) time."""

    def __init__(self) -> None:
        self.leases = FakeLeases()
        self.clock = FakeClock()
        self.started: list[str] = []
        self.lost: list[str] = []

    def seconds(self) -> float:
        return (self.clock.now - START).total_seconds()

    def elector(self, name: str) -> LeaderElector:
        async def started() -> None:
            self.started.append(name)

        async def no_sleep(_: float) -> None:
            raise TurnOver  # one turn at a time: the test drives the loop

        return LeaderElector(
            self.leases,
            "ops",
            name,
            on_started=started,
            on_lost=lambda: self.lost.append(name),
            timings=TIMINGS,
            clock=self.clock,
            monotonic=self.seconds,
            sleep=no_sleep,
        )


async def turn(elector: LeaderElector) -> None:
    with pytest.raises(TurnOver):
        await elector.run()


async def test_one_candidate_leads_and_the_other_waits() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    await turn(a)
    await turn(b)
    assert world.started == ["a"]
    assert (a.leading, b.leading) == (True, False)
    assert world.leases.holder() == "a"


async def test_a_standby_takes_over_only_after_the_lease_expired() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    await turn(a)
    world.clock.tick(14)
    await turn(b)
    assert not b.leading
    world.clock.tick(1)
    await turn(b)
    assert b.leading
    assert world.leases.leases["procjob-operator"]["spec"]["leaseTransitions"] == 1


async def test_a_renewing_leader_keeps_the_lease() -> None:
    world = World()
    a, b = world.elector("a"), world.elector("b")
    for _ in range(20):
        await turn(a)
        world.clock.tick(2)
        await turn(b)
    assert world.started == ["a"]
    assert not b.leading


async def test_a_leader_that_cannot_renew_stops_before_the_lease_can_be_taken() -> None:
    world = World()
    a = world.elector("a")
    await turn(a)
    world.leases.down = True
    world.clock.tick(9)
    await turn(a)
    assert world.lost == []
    world.clock.tick(1)
    await a.run()  # returns after on_lost, without sleeping
    assert world.lost == ["a"]
    assert not a.leading
    assert TIMINGS.renew_deadline < TIMINGS.lease  # others may take it only after the leader stopped
