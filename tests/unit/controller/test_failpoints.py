"""Failpoints (PROCJOB_FAILPOINTS): NAME exits at the first pass, NAME@N at the N-th; the
reconciler's two points sit between the status write and the pod create, and between the create
and the status that records the pod's UID."""

from __future__ import annotations

import pytest

from procjob.adapters.metrics import Metrics
from procjob.controller.cache import Cache
from procjob.controller.failpoints import EXIT_CODE, Failpoints, parse
from procjob.controller.queue import WorkQueue
from procjob.controller.reconcile import Reconciler
from procjob.core.config import CoreConfig
from tests.unit.controller.fakes import FakeClock, FakeKube
from tests.unit.controller.test_reconcile import NS, UID, Slots, job_body


class Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def exit_(code: int) -> None:
    raise Exited(code)


def test_parse_names_and_counts() -> None:
    assert parse(["pod-before-create", " pod-after-create@3 ", ""]) == {"pod-before-create": 1, "pod-after-create": 3}
    for bad in ("x@0", "x@-1", "x@two"):
        with pytest.raises(ValueError, match="PROCJOB_FAILPOINTS"):
            parse([bad])


def test_a_point_exits_at_its_occurrence_only() -> None:
    points = Failpoints(["a@3", "b"], exit=exit_)
    points.reach("unarmed")
    points.reach("a")
    points.reach("a")
    with pytest.raises(Exited) as exited:
        points.reach("a")
    assert exited.value.code == EXIT_CODE
    points.reach("a")  # past its occurrence: nothing
    with pytest.raises(Exited):
        points.reach("b")


def reconciler(*specs: str) -> tuple[Reconciler, FakeKube, str]:
    kube, cache = FakeKube(), Cache()
    key = cache.observe_job(kube.add_job(job_body()))
    rec = Reconciler(
        kube,  # type: ignore[arg-type]
        cache,
        WorkQueue(),
        CoreConfig(),
        Metrics(),
        clock=FakeClock(),
        admission=Slots(),
        failpoints=Failpoints(specs, exit=exit_),
    )
    return rec, kube, key


async def test_pod_before_create_exits_after_the_status_write_and_before_the_pod() -> None:
    rec, kube, key = reconciler("pod-before-create")
    with pytest.raises(Exited):
        await rec.reconcile(key)
    assert [verb for verb, _ in kube.calls] == ["replace_status"]
    attempts = kube.jobs[(NS, "j1")]["status"]["stages"][0]["attempts"]
    assert len(attempts) == 1
    assert attempts[0].get("podUid") is None
    assert not kube.pods


async def test_pod_after_create_exits_with_the_pod_created_and_its_uid_unrecorded() -> None:
    rec, kube, key = reconciler("pod-after-create")
    with pytest.raises(Exited):
        await rec.reconcile(key)
    assert [verb for verb, _ in kube.calls] == ["replace_status", "create_pod"]
    assert len(kube.pods) == 1
    (pod,) = kube.pods.values()
    assert pod["metadata"]["ownerReferences"][0]["uid"] == UID
    assert kube.jobs[(NS, "j1")]["status"]["stages"][0]["attempts"][0].get("podUid") is None
