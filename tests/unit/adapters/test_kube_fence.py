"""The API client's write fence: every write the operator makes asks it right before sending and is
not sent when it says no (NotLeading, a connection error to the callers, who retry); reads, the
Lease's own requests and the history endpoint's reviews never ask it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from procjob.adapters.kube import Credentials, KubeClient, NotLeading
from procjob.adapters.lease import get_lease, write_lease
from procjob.models.lease import LeaseRecord

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
JOB = {"metadata": {"namespace": "ns", "name": "j"}, "status": {}}

Call = Callable[[KubeClient], Awaitable[Any]]
WRITES: dict[str, Call] = {
    "create_pod": lambda c: c.create_pod("ns", {"metadata": {"name": "p"}}),
    "delete_pod": lambda c: c.delete_pod("ns", "p", "uid-1"),
    "delete_finished_pods": lambda c: c.delete_finished_pods("ns", "uid-1"),
    "delete_job": lambda c: c.delete_job("ns", "j", "uid-1"),
    "replace_status": lambda c: c.replace_status(JOB),
    "patch_job": lambda c: c.patch_job("ns", "j", {"metadata": {"finalizers": []}}),
    "post_event": lambda c: c.post_event(
        namespace="ns", name="j", uid="u", type_="Normal", reason="R", message="m", now=NOW
    ),
}
UNFENCED: dict[str, Call] = {
    "get_pod": lambda c: c.get_pod("ns", "p"),
    "get_job": lambda c: c.get_job("ns", "j"),
    "token_review": lambda c: c.token_review("t"),
    "subject_access_review": lambda c: c.subject_access_review({"user": "u"}),
    "get_lease": lambda c: get_lease(c, "ns", "procjob-operator"),
    "write_lease": lambda c: write_lease(c, "ns", "procjob-operator", LeaseRecord("me", NOW, 15, 0, NOW, "3")),
}


@pytest.fixture
async def client() -> AsyncIterator[tuple[KubeClient, list[str], list[bool]]]:
    """A client whose fence answers from `leading[0]` and whose requests are recorded, not sent."""
    leading = [True]
    client = KubeClient(Credentials(server="http://127.0.0.1:9"), fence=lambda: leading[0])
    sent: list[str] = []

    async def request(method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        sent.append(f"{method} {path}")
        return {"metadata": {}, "status": {}}

    client.request = request  # type: ignore[method-assign]
    yield client, sent, leading
    await client.close()


def test_every_public_write_of_the_client_is_listed_here() -> None:
    """A new write method must be added to WRITES (fenced) or UNFENCED, with a reason."""
    public = {n for n in dir(KubeClient) if not n.startswith("_") and callable(getattr(KubeClient, n))}
    plumbing = {"request", "get_page", "stream_pod_log", "list_all", "job_path", "close"}
    assert public - plumbing == set(WRITES) | (set(UNFENCED) - {"get_lease", "write_lease"})


@pytest.mark.parametrize("name", sorted(WRITES))
async def test_a_write_is_not_sent_when_the_fence_says_no(
    client: tuple[KubeClient, list[str], list[bool]], name: str
) -> None:
    kube, sent, leading = client
    await WRITES[name](kube)
    assert len(sent) == 1
    leading[0] = False
    with pytest.raises(NotLeading):
        await WRITES[name](kube)
    assert len(sent) == 1
    assert isinstance(NotLeading("x"), OSError)  # what every caller already retries


@pytest.mark.parametrize("name", sorted(UNFENCED))
async def test_reads_the_lease_and_the_reviews_never_ask_the_fence(
    client: tuple[KubeClient, list[str], list[bool]], name: str
) -> None:
    kube, sent, leading = client
    leading[0] = False
    await UNFENCED[name](kube)
    assert len(sent) == 1
