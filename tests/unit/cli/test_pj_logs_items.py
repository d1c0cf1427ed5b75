"""`kubectl pj logs --item K` in a fanned-out stage (procjob.cli.pj_logs, procjob.cli.pj_items) against
httpx.MockTransport: each item has its own attempts, so `--item` is required there and refused
elsewhere; an item's attempt is found in the status, else by its pods' labels, else in the archive;
the archive is read for that item; a deleted job's archive asks for an item too; the history shows it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from procjob.adapters import web
from procjob.cli import audit, pj_history
from procjob.cli.pj_items import fan_out, item_selector, latest_pod
from procjob.core.naming import pod_name
from tests.unit.cli.test_pj_logs import NS, PROXY, UID, World, fails, run

STAGE = "thumbs"


def item_pod(item: int, attempt: int) -> str:
    return pod_name("j", UID, STAGE, attempt, item)


FAN_JOB: dict[str, Any] = {
    "metadata": {"name": "j", "namespace": NS, "uid": UID},
    "spec": {"stages": [{"name": "list"}, {"name": STAGE, "forEach": "{{ stages.list.outputs.keys }}"}]},
    "status": {
        "currentStage": STAGE,
        "stages": [
            {"name": "list", "attemptCount": 1, "attempts": [{"attempt": 1, "podName": "j-list-a1-0a1b2c3d"}]},
            {
                "name": STAGE,
                "attemptCount": 250,
                "attempts": [
                    {"attempt": 1, "item": 3, "podName": item_pod(3, 1)},
                    {"attempt": 2, "item": 3, "podName": item_pod(3, 2)},
                    {"attempt": 1, "item": 198, "podName": item_pod(198, 1)},
                ],
                "items": {
                    "total": 200,
                    "next": 200,
                    "maxAttempt": 2,
                    "inFlight": [
                        {"index": 7, "state": "Running", "attempt": {"attempt": 2, "podName": item_pod(7, 2)}}
                    ],
                },
            },
        ],
    },
}


class FanWorld(World):
    """The API server (job, pods by label, pods/log) and the operator's archive, keyed by item."""

    def __init__(self) -> None:
        super().__init__()
        self.job = FAN_JOB
        self.listed: list[dict[str, Any]] = []
        self.list_refused = False
        self.items_archive: dict[tuple[str, str, str], bytes] = {(STAGE, "42", "1"): b"item 42\n"}
        self.archive[("list", "1")] = b"listed\n"
        self.index: list[dict[str, Any]] = [
            {"stage": "list", "attempt": 1, "container": "main", "podName": "j-list-a1-0a1b2c3d"},
            {"stage": STAGE, "item": 5, "attempt": 1, "container": "main", "podName": item_pod(5, 1)},
            {"stage": STAGE, "item": 42, "attempt": 1, "container": "main", "podName": item_pod(42, 1)},
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == f"/api/v1/namespaces/{NS}/pods":
            self.requests.append(request)
            if self.list_refused:
                return self.status(403, 'pods is forbidden: User "alice" cannot list resource "pods"')
            return httpx.Response(200, json={"items": self.listed})
        return super().__call__(request)

    def operator(self, rest: str) -> httpx.Response:
        if rest == "":
            return httpx.Response(200, json={"uid": UID, "namespace": NS, "name": "j", "logs": self.index})
        request = self.requests[-1]
        item = request.url.params.get("item")
        if item is None:
            return super().operator(rest)
        _, stage, attempt = rest.split("/")
        content = self.items_archive.get((stage, item, attempt))
        if content is None:
            return httpx.Response(404, json={"error": f"no archived log for stage {stage} item {item}"})
        headers = {web.LOG_HEADER + "Pod": item_pod(int(item), int(attempt)), web.LOG_HEADER + "Size": "8"}
        return httpx.Response(200, content=content, headers=headers)


def labelled(item: int, attempt: int) -> dict[str, Any]:
    labels = {"procjob.dev/item": str(item), "procjob.dev/attempt": str(attempt)}
    return {"metadata": {"name": item_pod(item, attempt), "labels": labels}}


def test_a_fanned_out_stage_needs_an_item_and_says_how_many_it_has() -> None:
    world = FanWorld()
    assert fails(world, "j") == (
        f"processingjob {NS}/j: stage thumbs is fanned out over 200 items (forEach): name one with --item K"
    )
    assert fails(world, "j", "--stage", STAGE, "--attempt", "1") == (
        f"processingjob {NS}/j: stage thumbs is fanned out over 200 items (forEach): name one with --item K"
    )
    assert not any("/pods" in r.url.path for r in world.requests)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ("--stage", "list", "--item", "0"),
            "stage list has no items (it has no forEach); drop --item",
            id="no items",
        ),
        pytest.param(("--item", "200"), "stage thumbs has no item 200 (200 items: --item 0 to 199)", id="past the end"),
        pytest.param(("--item", "-1"), "stage thumbs has no item -1 (200 items: --item 0 to 199)", id="negative"),
        pytest.param(
            ("--item", "3", "--attempt", "3"),
            "stage thumbs item 3 has no attempt 3 (attempts numbered up to 2)",
            id="no such attempt",
        ),
        pytest.param(
            ("--item", "3", "--attempt", "0"),
            "stage thumbs item 3 has no attempt 0 (attempts numbered up to 2)",
            id="attempt 0",
        ),
    ],
)
def test_an_item_that_does_not_fit_the_stage_is_refused(argv: tuple[str, ...], message: str) -> None:
    assert fails(FanWorld(), "j", *argv) == f"processingjob {NS}/j: {message}"


def test_an_item_in_flight_is_streamed_live_from_its_current_attempt() -> None:
    world = FanWorld()
    world.pods[item_pod(7, 2)] = b"item 7 at work\n"
    out, err = run(world, "j", "--item", "7")
    assert out == b"item 7 at work\n"
    assert err == f"==> pod {item_pod(7, 2)} (stage thumbs, item 7, attempt 2) <==\n"


def test_an_items_attempt_is_its_own_pod() -> None:
    world = FanWorld()
    world.pods[item_pod(3, 1)] = b"item 3, first try\n"
    world.pods[item_pod(3, 2)] = b"item 3, second try\n"
    assert run(world, "j", "--item", "3")[0] == b"item 3, second try\n"
    assert run(world, "j", "--item", "3", "--attempt", "1")[0] == b"item 3, first try\n"
    world.pods[item_pod(150, 1)] = b"item 150\n"  # not listed in the status: its name is derived
    assert run(world, "j", "--item", "150", "--attempt", "1")[0] == b"item 150\n"


def test_an_item_the_status_no_longer_lists_is_found_by_its_pods_labels() -> None:
    world = FanWorld()
    world.listed = [labelled(42, 1), labelled(42, 2)]
    world.pods[item_pod(42, 2)] = b"item 42, again\n"
    out, err = run(world, "j", "--item", "42")
    assert out == b"item 42, again\n"
    assert err == f"==> pod {item_pod(42, 2)} (stage thumbs, item 42, attempt 2) <==\n"
    listing = next(r for r in world.requests if r.url.path == f"/api/v1/namespaces/{NS}/pods")
    assert listing.url.params["labelSelector"] == item_selector(UID, STAGE, 42)
    assert item_selector(UID, STAGE, 42) == f"procjob.dev/job-uid={UID},procjob.dev/stage=thumbs,procjob.dev/item=42"


@pytest.mark.parametrize("refused", [False, True], ids=["no pod left", "pods may not be listed"])
def test_an_item_without_pods_is_read_from_the_archive_for_that_item(refused: bool) -> None:
    world = FanWorld()
    world.list_refused = refused
    out, err = run(world, "j", "--item", "42")
    assert out == b"item 42\n"
    assert err.startswith(f"==> pod {item_pod(42, 1)} (stage thumbs, item 42, attempt 1) is gone; archived log:")
    request = world.requests[-1]
    assert request.url.path == PROXY + f"/api/v1/namespaces/{NS}/processingjobs/j/logs/thumbs/1"
    assert dict(request.url.params) == {"container": "main", "uid": UID, "item": "42"}


def test_an_item_that_is_nowhere_says_so() -> None:
    assert fails(FanWorld(), "j", "--item", "9") == (
        f"processingjob {NS}/j: stage thumbs item 9: the status no longer lists its attempts, none of its pods is"
        " left and the archive holds none of its logs"
    )


def test_a_gone_items_attempt_is_read_from_the_archive_by_item() -> None:
    world = FanWorld()
    out, _ = run(world, "j", "--item", "42", "--attempt", "1")
    assert out == b"item 42\n"
    assert world.requests[-1].url.params["item"] == "42"


def test_a_deleted_jobs_fanned_out_stage_needs_an_item_too() -> None:
    world = FanWorld()
    world.job = None
    assert fails(world, "j") == (
        f"processingjob {NS}/j is not in the API server any more; its stage thumbs is fanned out (forEach): name"
        " one item with --item K (the archive holds logs of 2 of its items: 5, 42)"
    )
    out, err = run(world, "j", "--item", "42")
    assert out == b"item 42\n"
    assert "(stage thumbs, item 42, attempt 1) is gone" in err
    assert fails(world, "j", "--item", "6") == (
        f"processingjob {NS}/j is not in the API server any more, and its archive holds no such log"
        " (archived: list attempt 1, thumbs item 42 attempt 1, thumbs item 5 attempt 1)"
    )
    out, _ = run(world, "j", "--stage", "list")  # a stage without items needs none
    assert out == b"listed\n"
    assert world.requests[-1].url.params.get("item") is None


def test_a_stage_whose_items_are_not_listed_yet_still_needs_an_item() -> None:
    job = {**FAN_JOB, "status": {"currentStage": STAGE, "stages": [{"name": STAGE, "state": "Running"}]}}
    assert fan_out(job, STAGE) == {}
    assert fan_out(job, "list") is None
    world = FanWorld()
    world.job = job
    assert fails(world, "j") == (
        f"processingjob {NS}/j: stage thumbs is fanned out (its items are not listed yet) (forEach): name one with"
        " --item K"
    )


def test_the_latest_pod_is_the_highest_attempt_label() -> None:
    odd = {"metadata": {"name": "x", "labels": {"procjob.dev/attempt": "two"}}}
    assert latest_pod([labelled(4, 1), labelled(4, 10), labelled(4, 9), odd]) == (10, item_pod(4, 10))
    assert latest_pod([odd, {}]) is None


def test_the_history_shows_the_item_of_an_archived_log() -> None:
    from procjob.adapters.audit import ArchivedLog, JobHistory

    common = {"job_uid": UID, "namespace": NS, "name": "j", "container": "main", "pod_uid": "p", "attempt": 1}
    logs = (
        ArchivedLog.model_validate({**common, "stage": "list", "pod_name": "j-list-a1", "size": 10}),
        ArchivedLog.model_validate({**common, "stage": STAGE, "item": 0, "pod_name": item_pod(0, 1), "size": 20}),
        ArchivedLog.model_validate({**common, "stage": STAGE, "item": 5, "pod_name": item_pod(5, 1), "size": 30}),
    )
    history = JobHistory(uid=UID, namespace=NS, name="j", logs=logs)
    text = audit.render_history(history)
    assert text.endswith(
        "\narchived logs (kubectl pj logs JOB --stage S [--item K] --attempt N):\n"
        "  list attempt 1 main: 10 bytes\n"
        "  thumbs item 0 attempt 1 main: 20 bytes\n"
        "  thumbs item 5 attempt 1 main: 30 bytes\n"
    )
    assert history.to_json_dict()["logs"][1]["item"] == 0
    assert pj_history.to_output(history.to_json_dict(), "table") == text
