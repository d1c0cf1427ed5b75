"""The operator's connection in a pod, and the identity it gives kopf (found on the real node).

In the real image the operator runs as uid 65532 with no password-database entry, and kopf's own
guesses broke there: its identity asked `getpwuid()` (KeyError, a crash loop) and its service-account
login dials `kubernetes.default.svc`, which needs cluster DNS.
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import pwd
from typing import Any

import kopf
import pytest

from procjob import handlers
from procjob.cli import run
from procjob.cli.main import build_parser
from procjob.models.job import GROUP, LABEL_JOB_UID, PLURAL, VERSION


@pytest.mark.parametrize(
    ("env", "server"),
    [
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "https://10.96.0.1:443"),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "https://10.96.0.1:443"),
        ({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}, "https://[fd00::1]:6443"),
        ({"KUBERNETES_SERVICE_HOST": " "}, None),
        ({}, None),
    ],
)
def test_the_in_cluster_server_comes_from_the_kubelets_environment(env: dict[str, str], server: str | None) -> None:
    assert handlers.in_cluster_server(env) == server


def test_in_a_pod_the_service_account_is_used_with_the_servers_address_not_its_dns_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t", ca_path="/sa/ca.crt")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = handlers.connection_info(kopf.OperatorSettings())
    assert info is not None
    assert (info.server, info.token, info.ca_path) == ("https://10.96.0.1:443", "t", "/sa/ca.crt")
    creds = handlers.credentials(kopf.OperatorSettings())
    assert (creds.server, creds.token) == ("https://10.96.0.1:443", "t")


def test_outside_a_pod_the_kubeconfig_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    config = kopf.ConnectionInfo(server="https://127.0.0.1:16443", insecure=True)
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.setattr(kopf, "login_with_kubeconfig", lambda **_: config)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert handlers.connection_info(kopf.OperatorSettings()) is config


def test_without_any_credentials_the_operator_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.setattr(kopf, "login_with_kubeconfig", lambda **_: None)
    with pytest.raises(kopf.PermanentError, match="no Kubernetes credentials"):
        handlers.credentials(kopf.OperatorSettings())


def test_procjob_run_starts_for_a_uid_without_a_password_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """As uid 65532 in the image: no USER/LOGNAME and getpwuid fails; kopf must get an identity anyway."""

    def no_entry(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME", "PROCJOB_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setenv("POD_NAME", "procjob-7d9f-abcde")
    with pytest.raises(KeyError):
        getpass.getuser()  # what kopf's own identity detection calls
    seen: dict[str, Any] = {}

    async def operator(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(kopf, "operator", operator)
    args: argparse.Namespace = build_parser().parse_args(["run"])
    assert run.main(args) == 0
    assert seen["identity"] == "procjob-7d9f-abcde"


def test_pods_are_selected_by_our_label_on_the_server_and_jobs_are_not_filtered() -> None:
    """kopf sends the selector with the pods' LIST and watch (its fetching/watching read
    `label_selectors.collect`), so other pods never reach the operator."""
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    pods = kopf.Resource("", "v1", "pods")
    jobs = kopf.Resource(GROUP, VERSION, PLURAL)
    assert list(settings.watching.label_selectors.collect(pods)) == [LABEL_JOB_UID]
    assert list(settings.watching.label_selectors.collect(jobs)) == []


def test_kopf_retries_a_failed_api_request_for_as_long_as_it_takes_from_the_start_each_time() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    backoffs = settings.networking.error_backoffs
    assert not isinstance(backoffs, (int, float))
    first = list(itertools.islice(backoffs, 1000))
    assert first[: len(handlers.API_BACKOFFS)] == list(handlers.API_BACKOFFS)
    assert set(first[len(handlers.API_BACKOFFS) :]) == {handlers.API_BACKOFF_CAP}  # no last attempt
    assert list(itertools.islice(backoffs, 3)) == list(handlers.API_BACKOFFS[:3])  # a new request starts over


def test_kopfs_listings_come_in_pages() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    assert settings.watching.chunk_size == handlers.LIST_CHUNK


def test_kopfs_idle_object_workers_exit_soon_so_a_burst_does_not_keep_thousands_of_objects() -> None:
    settings = kopf.OperatorSettings()
    default = settings.queueing.idle_timeout
    handlers.configure(settings)
    assert settings.queueing.idle_timeout == handlers.IDLE_WORKER_SECONDS < default


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, bool]] = []

    def job_seen(self, body: dict[str, Any], *, urgent: bool, new: bool) -> None:
        self.seen.append((urgent, new))


@pytest.mark.parametrize(
    ("status", "meta", "lanes"),
    [
        pytest.param({}, {}, (False, True), id="a new job: admission work"),
        pytest.param({"queue": {"position": 4}}, {}, (False, True), id="a queued job not yet seen in this spec"),
        pytest.param(
            {"queue": {"position": 4}, "observedGeneration": 1}, {}, (False, False), id="our write's echo, queued"
        ),
        pytest.param(
            {"queue": {"position": 4}, "observedGeneration": 1}, {"generation": 2}, (False, True), id="resumed"
        ),
        pytest.param({"startTime": "t", "observedGeneration": 1}, {}, (False, False), id="our own write's echo"),
        pytest.param(
            {"startTime": "t", "observedGeneration": 1}, {"generation": 2}, (True, False), id="a user's change"
        ),
        pytest.param(
            {"startTime": "t", "observedGeneration": 1},
            {"deletionTimestamp": "t"},
            (True, False),
            id="a started job being deleted",
        ),
    ],
)
async def test_a_job_event_is_queued_as_admission_work_until_the_job_starts(
    status: dict[str, Any], meta: dict[str, Any], lanes: tuple[bool, bool]
) -> None:
    recorder = Recorder()
    body = {"metadata": {"name": "j", "namespace": "ns", "generation": 1, **meta}, "status": status}
    await handlers.job_event(event={"type": "MODIFIED", "object": body}, memo=argparse.Namespace(operator=recorder))
    assert recorder.seen == [lanes]


class EventRecorder:
    """The operator's side of the event handlers: what each call asked of it, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def job_seen(self, body: dict[str, Any], *, urgent: bool, new: bool) -> None:
        self.calls.append(("job_seen", body["metadata"]["name"]))

    def job_deleted(self, body: dict[str, Any]) -> None:
        self.calls.append(("job_deleted", body["metadata"]["name"]))

    def pod_seen(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        self.calls.append(("pod_seen", deleted))

    def relisted(self) -> None:
        self.calls.append(("relisted", None))


@pytest.mark.parametrize(
    ("kind", "calls"),
    [
        pytest.param(None, [("job_seen", "j"), ("relisted", None)], id="listed: filed, and a relist after start"),
        pytest.param("ADDED", [("job_seen", "j")], id="added"),
        pytest.param("MODIFIED", [("job_seen", "j")], id="modified"),
        pytest.param("DELETED", [("job_deleted", "j")], id="deleted"),
    ],
)
async def test_a_job_event_files_the_job_or_drops_it(kind: str | None, calls: list[tuple[str, Any]]) -> None:
    recorder = EventRecorder()
    body = {"metadata": {"name": "j", "namespace": "ns"}}
    await handlers.job_event(event={"type": kind, "object": body}, memo=argparse.Namespace(operator=recorder))
    assert recorder.calls == calls


@pytest.mark.parametrize(
    ("kind", "calls"),
    [
        pytest.param(None, [("pod_seen", False), ("relisted", None)], id="listed"),
        pytest.param("MODIFIED", [("pod_seen", False)], id="modified"),
        pytest.param("DELETED", [("pod_seen", True)], id="deleted"),
    ],
)
async def test_a_pod_event_files_the_pod_or_removes_it(kind: str | None, calls: list[tuple[str, Any]]) -> None:
    recorder = EventRecorder()
    await handlers.pod_event(
        event={"type": kind, "object": {"metadata": {}}}, memo=argparse.Namespace(operator=recorder)
    )
    assert recorder.calls == calls


def test_no_index_handlers_so_a_large_listing_is_filed_in_linear_time() -> None:
    # kopf's index wait costs every listed object a wake-up per other listed object (see the
    # module docstring); controller.sync.wait_for_sync is the operator's own start-up barrier.
    registry = kopf.get_default_registry()
    assert registry._indexing.get_all_handlers() == []
    assert sorted(h.id for h in registry._watching.get_all_handlers()) == ["job_event", "pod_event"]
