"""Operator settings: flags over PROCJOB_* variables, and one clear line for a bad value."""

from __future__ import annotations

import dataclasses

import pytest

from procjob.controller.settings import SettingsError, from_sources


def test_flags_win_over_the_environment_and_defaults_apply() -> None:
    settings = from_sources({"workers": "4"}, {"PROCJOB_WORKERS": "16", "PROCJOB_EVENTS": "important"})
    assert settings.workers == 4
    assert settings.events == "important"
    assert settings.core().routine_events is False
    default = from_sources({}, {})
    assert (default.workers, default.events, default.max_running_jobs) == (8, "all", None)
    assert default.core().routine_events is True


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        ({"events": "some"}, {}, "--events (PROCJOB_EVENTS)"),
        ({}, {"PROCJOB_WORKERS": "0"}, "--workers (PROCJOB_WORKERS)"),
        ({}, {"PROCJOB_MAX_RUNNING_JOBS": "ten"}, "--max-running-jobs (PROCJOB_MAX_RUNNING_JOBS)"),
        ({"log_format": "xml"}, {}, "--log-format (PROCJOB_LOG_FORMAT)"),
        ({}, {"PROCJOB_FETCH_ALLOWED_NETWORKS": "10.0.0.0/8,nope"}, "--fetch-allowed-networks"),
    ],
)
def test_a_bad_value_names_the_flag_and_its_variable(
    flags: dict[str, str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        from_sources(flags, environ)


def test_tenancy_settings_default_to_the_safe_choice() -> None:
    default = from_sources({}, {})
    assert default.allowed_metadata_prefixes == ()
    assert default.s3_node_credentials is False
    assert (default.max_priority, default.namespace_max_priority) == (None, ())
    assert default.priority_cap("media") is None
    core = default.core()
    assert (core.allowed_metadata_prefixes, core.s3_node_credentials) == ((), False)


def test_tenancy_settings_from_the_environment_reach_the_core() -> None:
    settings = from_sources(
        {},
        {
            "PROCJOB_ALLOWED_METADATA_PREFIXES": "cluster-autoscaler.kubernetes.io/, app.kubernetes.io/name",
            "PROCJOB_S3_NODE_CREDENTIALS": "true",
            "PROCJOB_MAX_PRIORITY": "10",
            "PROCJOB_NAMESPACE_MAX_PRIORITY": "media=100, batch=-5",
        },
    )
    assert settings.allowed_metadata_prefixes == ("cluster-autoscaler.kubernetes.io/", "app.kubernetes.io/name")
    assert settings.namespace_max_priority == (("media", 100), ("batch", -5))
    core = settings.core()
    assert core.allowed_metadata_prefixes == settings.allowed_metadata_prefixes
    assert core.s3_node_credentials is True


@pytest.mark.parametrize(
    ("max_priority", "per_namespace", "ns", "cap"),
    [
        pytest.param(None, "", "media", None, id="no cap at all"),
        pytest.param("10", "", "media", 10, id="the default cap"),
        pytest.param("10", "media=100", "media", 100, id="a namespace's entry wins over the default, even above it"),
        pytest.param("10", "media=0", "media", 0, id="a namespace's zero cap is a cap, not none"),
        pytest.param("10", "media=100", "batch", 10, id="other namespaces get the default"),
        pytest.param(None, "media=-5", "batch", None, id="a namespace entry only caps that namespace"),
    ],
)
def test_priority_cap(max_priority: str | None, per_namespace: str, ns: str, cap: int | None) -> None:
    # (not `namespace`: that name is the rig's fixture, and would bring the rig up for a unit test)
    settings = from_sources({"max_priority": max_priority, "namespace_max_priority": per_namespace}, {})
    assert settings.priority_cap(ns) == cap


def test_flags_win_for_the_tenancy_settings_too() -> None:
    settings = from_sources(
        {"s3_node_credentials": "false", "max_priority": "3", "allowed_metadata_prefixes": ["k8s.io/a", "k8s.io/b"]},
        {"PROCJOB_S3_NODE_CREDENTIALS": "true", "PROCJOB_MAX_PRIORITY": "9"},
    )
    assert (settings.s3_node_credentials, settings.max_priority) == (False, 3)
    assert settings.allowed_metadata_prefixes == ("k8s.io/a", "k8s.io/b")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PROCJOB_S3_NODE_CREDENTIALS": "maybe"}, "--s3-node-credentials (PROCJOB_S3_NODE_CREDENTIALS)"),
        ({"PROCJOB_MAX_PRIORITY": "high"}, "--max-priority (PROCJOB_MAX_PRIORITY)"),
        ({"PROCJOB_MAX_PRIORITY": "1001"}, "--max-priority (PROCJOB_MAX_PRIORITY)"),
        ({"PROCJOB_NAMESPACE_MAX_PRIORITY": "media"}, "--namespace-max-priority (PROCJOB_NAMESPACE_MAX_PRIORITY)"),
        ({"PROCJOB_NAMESPACE_MAX_PRIORITY": "Media=1"}, "--namespace-max-priority (PROCJOB_NAMESPACE_MAX_PRIORITY)"),
        ({"PROCJOB_NAMESPACE_MAX_PRIORITY": "a=1,a=2"}, "--namespace-max-priority (PROCJOB_NAMESPACE_MAX_PRIORITY)"),
        ({"PROCJOB_NAMESPACE_MAX_PRIORITY": "a=-2000"}, "--namespace-max-priority (PROCJOB_NAMESPACE_MAX_PRIORITY)"),
        ({"PROCJOB_ALLOWED_METADATA_PREFIXES": "Kubernetes.IO/"}, "--allowed-metadata-prefixes"),
        ({"PROCJOB_ALLOWED_METADATA_PREFIXES": "a/b/c"}, "--allowed-metadata-prefixes"),
    ],
)
def test_a_bad_tenancy_setting_names_the_flag_and_its_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        from_sources({}, environ)


def test_leader_election_settings() -> None:
    default = from_sources({}, {"POD_NAMESPACE": "ops"})
    assert (default.leader_elect, default.leader_election_namespace) == (False, "ops")
    assert default.leader_election_timings == (15.0, 10.0, 2.0)
    assert default.leader_election_lease_name == "procjob-operator"
    on = from_sources(
        {"leader_elect": "true", "leader_election_lease_seconds": "3", "leader_election_renew_deadline_seconds": "2"},
        {
            "PROCJOB_LEADER_ELECTION_RETRY_SECONDS": "0.5",
            "PROCJOB_LEADER_ELECTION_NAMESPACE": "procjob-system",
            "PROCJOB_LEADER_ELECTION_LEASE_NAME": "team-a.procjob-operator",
        },
    )
    assert (on.leader_elect, on.leader_election_namespace, on.leader_election_timings) == (
        True,
        "procjob-system",
        (3.0, 2.0, 0.5),
    )
    assert on.leader_election_lease_name == "team-a.procjob-operator"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"leader_election_lease_seconds": "5"}, "retry < renew deadline < lease"),
        ({"leader_election_retry_seconds": "soon"}, "--leader-election-retry-seconds"),
        ({"leader_election_renew_deadline_seconds": "0"}, "must be > 0"),
        ({"leader_election_lease_name": "Procjob_Operator"}, "--leader-election-lease-name"),
        ({"leader_election_lease_name": "a" * 254}, "must be a DNS subdomain name"),
    ],
)
def test_bad_leader_election_timings_name_the_flag(flags: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        from_sources(flags, {})


def test_the_log_archive_is_on_with_a_database_and_its_bounds_reach_the_core() -> None:
    default = from_sources({}, {})
    assert (default.log_archive_max_bytes, default.log_archive_wait_seconds, default.log_archive_workers) == (
        1048576,
        300,
        4,
    )
    assert not default.log_archive  # no database: nothing is archived and podGC does not wait
    assert default.core().log_archive_wait_seconds is None
    with_db = dataclasses.replace(default, database_url="postgresql://h/db")
    assert with_db.log_archive
    assert with_db.core().log_archive_wait_seconds == 300
    tuned = from_sources(
        {"log_archive_wait_seconds": "60"},
        {"PROCJOB_LOG_ARCHIVE_MAX_BYTES": "65536", "PROCJOB_LOG_ARCHIVE_WORKERS": "2"},
    )
    assert (tuned.log_archive_max_bytes, tuned.log_archive_wait_seconds, tuned.log_archive_workers) == (65536, 60, 2)
    off = dataclasses.replace(
        from_sources({}, {"PROCJOB_LOG_ARCHIVE_MAX_BYTES": "0"}), database_url="postgresql://h/db"
    )
    assert not off.log_archive
    assert off.core().log_archive_wait_seconds is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PROCJOB_LOG_ARCHIVE_MAX_BYTES": "1MiB"}, "--log-archive-max-bytes (PROCJOB_LOG_ARCHIVE_MAX_BYTES)"),
        ({"PROCJOB_LOG_ARCHIVE_WAIT_SECONDS": "-1"}, "--log-archive-wait-seconds (PROCJOB_LOG_ARCHIVE_WAIT_SECONDS)"),
        ({"PROCJOB_LOG_ARCHIVE_WORKERS": "0"}, "--log-archive-workers (PROCJOB_LOG_ARCHIVE_WORKERS)"),
    ],
)
def test_a_bad_log_archive_setting_names_the_flag(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        from_sources({}, environ)


def test_the_pod_caps_default_to_100_per_job_and_no_total() -> None:
    default = from_sources({}, {})
    assert (default.max_running_pods, default.max_running_pods_per_job) == (None, 100)
    set_ = from_sources({"max_running_pods": "500"}, {"PROCJOB_MAX_RUNNING_PODS_PER_JOB": "20"})
    assert (set_.max_running_pods, set_.max_running_pods_per_job) == (500, 20)
    with pytest.raises(SettingsError, match=r"--max-running-pods-per-job \(PROCJOB_MAX_RUNNING_PODS_PER_JOB\)"):
        from_sources({}, {"PROCJOB_MAX_RUNNING_PODS_PER_JOB": "0"})
