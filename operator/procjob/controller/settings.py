"""The operator's settings, from flags and PROCJOB_* environment variables (flags win).

Validated once at start; a bad value stops the operator with one line naming the flag and its
variable. The database URL is a secret: it is kept out of `repr()` and never logged.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from procjob.core.config import DEFAULT_WORKER_IMAGE, CoreConfig, S3Settings
from procjob.models.lease import LEASE_NAME

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class SettingsError(ValueError):
    """A setting is invalid; the message names the flag and the environment variable."""


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the operator's metrics port, inside its pod
    metrics_port: int = 8080
    workers: int = 8
    log_format: str = "text"
    log_level: str = "INFO"
    worker_image: str = DEFAULT_WORKER_IMAGE
    allowed_service_accounts: tuple[str, ...] = ()
    fetch_allowed_networks: tuple[str, ...] = ()
    s3: S3Settings = field(default_factory=S3Settings)
    database_url: str | None = field(default=None, repr=False)
    migrate: bool = False
    max_running_jobs: int | None = None
    max_running_jobs_per_namespace: int | None = None
    max_running_pods: int | None = None  # pods of all jobs running at once (controller.podcaps)
    max_running_pods_per_job: int | None = 100  # pods of one job running at once
    ttl_seconds_after_finished: int | None = None  # the default for jobs that set none
    leader_elect: bool = False  # several replicas: only the Lease holder writes
    leader_election_namespace: str = "default"
    leader_election_lease_name: str = LEASE_NAME  # one per operator installation sharing a namespace
    leader_election_timings: tuple[float, float, float] = (15.0, 10.0, 2.0)  # lease, renew deadline, retry
    max_finished_jobs_per_namespace: int | None = None  # finished jobs kept; the oldest go first
    events: str = "all"  # all | important (no Event for a stage's routine start and success)
    # Label/annotation key prefixes in the kubernetes.io and k8s.io domains that jobs may set on pods.
    allowed_metadata_prefixes: tuple[str, ...] = ()
    s3_node_credentials: bool = False  # built-in stages may use the node's ambient cloud credentials
    # Highest spec.priority a job is queued with (None: no cap); a namespace's own entry wins.
    max_priority: int | None = None
    namespace_max_priority: tuple[tuple[str, int], ...] = ()
    # Namespaces whose jobs may loosen their pods to the Pod Security Standards' baseline (others: restricted).
    baseline_namespaces: tuple[str, ...] = ()
    # The log archive (with a database): bytes kept per container log (0: off), how long podGC waits
    # for an attempt's archive, reads at once.
    log_archive_max_bytes: int = 1024 * 1024
    log_archive_wait_seconds: int = 300
    log_archive_workers: int = 4
    instance: str = ""
    failpoints: frozenset[str] = frozenset()  # tests only: PROCJOB_FAILPOINTS (controller.failpoints)

    def core(self) -> CoreConfig:
        return CoreConfig(
            worker_image=self.worker_image,
            allowed_service_accounts=frozenset(self.allowed_service_accounts),
            audit_enabled=self.database_url is not None,
            fetch_allowed_networks=self.fetch_allowed_networks,
            s3=self.s3,
            allowed_metadata_prefixes=self.allowed_metadata_prefixes,
            baseline_namespaces=frozenset(self.baseline_namespaces),
            s3_node_credentials=self.s3_node_credentials,
            routine_events=self.events == "all",
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            log_archive_wait_seconds=self.log_archive_wait_seconds if self.log_archive else None,
        )

    @property
    def log_archive(self) -> bool:
        """Finished attempts' logs are archived: there is a database, and a bound above 0."""
        return self.database_url is not None and self.log_archive_max_bytes > 0

    def priority_cap(self, namespace: str) -> int | None:
        """The highest priority a job in `namespace` is queued with: its own entry, else the default."""
        for name, cap in self.namespace_max_priority:
            if name == namespace:
                return cap
        return self.max_priority


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


TRUE, FALSE = {"1", "true", "yes"}, {"", "0", "false", "no"}
# A label/annotation key or the start of one: a DNS prefix, optionally '/' and the start of a name.
METADATA_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[A-Za-z0-9._-]*)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PRIORITY_RANGE = (-1000, 1000)  # spec.priority's range


def _flag(name: str, env: str) -> str:
    return f"--{name} ({env})"


def _bool(name: str, env: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text not in TRUE | FALSE:
        raise SettingsError(f"{_flag(name, env)} must be true or false, not {value!r}")
    return text in TRUE


def _priority(name: str, env: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{_flag(name, env)} must be an integer, not {value!r}") from None
    low, high = PRIORITY_RANGE
    if not low <= number <= high:
        raise SettingsError(f"{_flag(name, env)} must be {low}..{high} (the range of spec.priority), not {number}")
    return number


def _metadata_prefixes(value: str | None) -> tuple[str, ...]:
    prefixes = _list(value)
    for prefix in prefixes:
        if len(prefix) > 317 or not METADATA_PREFIX.match(prefix):
            raise SettingsError(
                f"{_flag('allowed-metadata-prefixes', 'PROCJOB_ALLOWED_METADATA_PREFIXES')}: {prefix!r} is not the "
                "start of a label or annotation key, e.g. cluster-autoscaler.kubernetes.io/"
            )
    return prefixes


def _namespace_priorities(value: str | None) -> tuple[tuple[str, int], ...]:
    """`ns=N,ns2=M` as ((ns, N), (ns2, M)); each namespace once."""
    name, env = "namespace-max-priority", "PROCJOB_NAMESPACE_MAX_PRIORITY"
    caps: dict[str, int] = {}
    for item in _list(value):
        namespace, equals, number = (part.strip() for part in item.partition("="))
        if not equals or not DNS_LABEL.match(namespace):
            raise SettingsError(f"{_flag(name, env)}: {item!r} is not NAMESPACE=PRIORITY")
        if namespace in caps:
            raise SettingsError(f"{_flag(name, env)}: namespace {namespace!r} is given twice")
        caps[namespace] = _priority(name, env, number)
    return tuple(caps.items())


def _namespace_names(name: str, env: str, value: str | None) -> tuple[str, ...]:
    names = _list(value)
    for namespace in names:
        if not DNS_LABEL.match(namespace):
            raise SettingsError(f"{_flag(name, env)}: {namespace!r} is not a namespace name")
    return names


def _tenancy(pick: Callable[[str, str], str | None]) -> dict[str, Any]:
    """The settings that confine tenants: pod metadata prefixes, node credentials, priority caps, the
    namespaces allowed the baseline pod security profile."""
    max_priority = pick("max_priority", "PROCJOB_MAX_PRIORITY")
    node_credentials = pick("s3_node_credentials", "PROCJOB_S3_NODE_CREDENTIALS")
    return {
        "allowed_metadata_prefixes": _metadata_prefixes(
            pick("allowed_metadata_prefixes", "PROCJOB_ALLOWED_METADATA_PREFIXES")
        ),
        "s3_node_credentials": _bool("s3-node-credentials", "PROCJOB_S3_NODE_CREDENTIALS", node_credentials),
        "max_priority": _priority("max-priority", "PROCJOB_MAX_PRIORITY", max_priority) if max_priority else None,
        "namespace_max_priority": _namespace_priorities(
            pick("namespace_max_priority", "PROCJOB_NAMESPACE_MAX_PRIORITY")
        ),
        "baseline_namespaces": _namespace_names(
            "baseline-namespaces",
            "PROCJOB_BASELINE_NAMESPACES",
            pick("baseline_namespaces", "PROCJOB_BASELINE_NAMESPACES"),
        ),
    }


def _positive(name: str, env: str, value: str | int | None, *, allow_zero: bool = False) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"--{name} ({env}) must be an integer, not {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise SettingsError(f"--{name} ({env}) must be {'>= 0' if allow_zero else '> 0'}, not {number}")
    return number


def _leadership(pick: Callable[..., str | None], environ: Mapping[str, str]) -> dict[str, Any]:
    """--leader-elect and the Lease's namespace (default: the pod's own, as the downward API or
    the service account says; else `default`)."""
    elect = (pick("leader_elect", "PROCJOB_LEADER_ELECT", "false") or "").lower() in {"1", "true", "yes"}
    namespace = pick("leader_election_namespace", "PROCJOB_LEADER_ELECTION_NAMESPACE") or environ.get("POD_NAMESPACE")
    if not namespace:
        try:
            with open(SERVICE_ACCOUNT_NAMESPACE) as f:
                namespace = f.read().strip()
        except OSError:
            namespace = "default"
    timings = tuple(
        _seconds(flag, env, pick(flag.replace("-", "_"), env), default)
        for flag, env, default in (
            ("leader-election-lease-seconds", "PROCJOB_LEADER_ELECTION_LEASE_SECONDS", 15.0),
            ("leader-election-renew-deadline-seconds", "PROCJOB_LEADER_ELECTION_RENEW_DEADLINE_SECONDS", 10.0),
            ("leader-election-retry-seconds", "PROCJOB_LEADER_ELECTION_RETRY_SECONDS", 2.0),
        )
    )
    lease, renew, retry = timings
    if not retry < renew < lease:
        raise SettingsError(
            "leader election needs retry < renew deadline < lease (--leader-election-retry-seconds, "
            f"--leader-election-renew-deadline-seconds, --leader-election-lease-seconds), not {retry}, {renew}, {lease}"
        )
    name = pick("leader_election_lease_name", "PROCJOB_LEADER_ELECTION_LEASE_NAME") or LEASE_NAME
    if not DNS_SUBDOMAIN.match(name):
        flag = "--leader-election-lease-name (PROCJOB_LEADER_ELECTION_LEASE_NAME)"
        raise SettingsError(f"{flag} must be a DNS subdomain name, not {name!r}")
    return {
        "leader_elect": elect,
        "leader_election_namespace": namespace,
        "leader_election_lease_name": name,
        "leader_election_timings": timings,
    }


def _seconds(flag: str, env: str, value: str | None, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(f"--{flag} ({env}) must be a number of seconds, not {value!r}") from None
    if not seconds > 0:
        raise SettingsError(f"--{flag} ({env}) must be > 0, not {value!r}")
    return seconds


def _retention(pick: Callable[..., str | None]) -> dict[str, Any]:
    """How long finished jobs are kept: a default TTL and a per-namespace cap (both off by default)."""
    ttl_env = "PROCJOB_TTL_SECONDS_AFTER_FINISHED"
    cap_env = "PROCJOB_MAX_FINISHED_JOBS_PER_NAMESPACE"
    return {
        "ttl_seconds_after_finished": _positive(
            "ttl-seconds-after-finished", ttl_env, pick("ttl_seconds_after_finished", ttl_env), allow_zero=True
        ),
        "max_finished_jobs_per_namespace": _positive(
            "max-finished-jobs-per-namespace", cap_env, pick("max_finished_jobs_per_namespace", cap_env)
        ),
    }


def _log_archive(pick: Callable[..., str | None]) -> dict[str, Any]:
    """The log archive's bounds: bytes per container log (0: off), podGC's wait, concurrent reads."""
    found = {}
    for flag, default, zero in (
        ("log-archive-max-bytes", 1024 * 1024, True),
        ("log-archive-wait-seconds", 300, True),
        ("log-archive-workers", 4, False),
    ):
        env = "PROCJOB_" + flag.upper().replace("-", "_")
        value = _positive(flag, env, pick(flag.replace("-", "_"), env), allow_zero=zero)
        found[flag.replace("-", "_")] = default if value is None else value
    return found


def _networks(value: str | None) -> tuple[str, ...]:
    networks = _list(value)
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise SettingsError(
                f"--fetch-allowed-networks (PROCJOB_FETCH_ALLOWED_NETWORKS): {net!r} is not a CIDR network"
            ) from None
    return networks


def _s3(pick: Callable[..., str | None]) -> S3Settings:
    return S3Settings(
        endpoint_url=pick("s3_endpoint_url", "PROCJOB_S3_ENDPOINT_URL"),
        region=pick("s3_region", "PROCJOB_S3_REGION"),
        force_path_style=(pick("s3_force_path_style", "PROCJOB_S3_FORCE_PATH_STYLE", "false") or "").lower()
        in {"1", "true", "yes"},
        credentials_secret=pick("s3_credentials_secret", "PROCJOB_S3_CREDENTIALS_SECRET"),
    )


def from_sources(flags: Mapping[str, object], environ: Mapping[str, str]) -> OperatorSettings:
    """Merge flags (None = not given) over the environment, and validate."""

    def pick(flag: str, env: str, default: str | None = None) -> str | None:
        value = flags.get(flag)
        if value is not None:
            return ",".join(value) if isinstance(value, list | tuple) else str(value)
        return environ.get(env, default)

    log_format = pick("log_format", "PROCJOB_LOG_FORMAT", "text") or "text"
    if log_format not in {"text", "json"}:
        raise SettingsError(f"--log-format (PROCJOB_LOG_FORMAT) must be text or json, not {log_format!r}")
    log_level = (pick("log_level", "PROCJOB_LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"--log-level (PROCJOB_LOG_LEVEL) must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")
    port = _positive(
        "metrics-port", "PROCJOB_METRICS_PORT", pick("metrics_port", "PROCJOB_METRICS_PORT", "8080"), allow_zero=True
    )
    if port is None or port > 65535:
        raise SettingsError(f"--metrics-port (PROCJOB_METRICS_PORT) must be 0..65535, not {port}")
    workers = _positive("workers", "PROCJOB_WORKERS", pick("workers", "PROCJOB_WORKERS", "8")) or 8
    networks = _networks(pick("fetch_allowed_networks", "PROCJOB_FETCH_ALLOWED_NETWORKS"))
    accounts = _list(pick("allowed_service_accounts", "PROCJOB_ALLOWED_SERVICE_ACCOUNTS"))
    s3 = _s3(pick)
    events = pick("events", "PROCJOB_EVENTS", "all") or "all"
    if events not in {"all", "important"}:
        raise SettingsError(f"--events (PROCJOB_EVENTS) must be all or important, not {events!r}")
    migrate = (pick("migrate", "PROCJOB_DATABASE_MIGRATE", "false") or "").lower() in {"1", "true", "yes"}
    return OperatorSettings(
        namespaces=_list(pick("namespace", "PROCJOB_NAMESPACES")),
        metrics_host=pick("metrics_host", "PROCJOB_METRICS_HOST", "0.0.0.0") or "0.0.0.0",  # noqa: S104
        metrics_port=port,
        workers=workers,
        log_format=log_format,
        log_level=log_level,
        worker_image=pick("worker_image", "PROCJOB_WORKER_IMAGE", DEFAULT_WORKER_IMAGE) or DEFAULT_WORKER_IMAGE,
        allowed_service_accounts=accounts,
        fetch_allowed_networks=networks,
        s3=s3,
        database_url=None,  # resolved by the caller from PROCJOB_DATABASE_URL(_FILE), never from a flag
        migrate=migrate,
        max_running_jobs=_positive(
            "max-running-jobs", "PROCJOB_MAX_RUNNING_JOBS", pick("max_running_jobs", "PROCJOB_MAX_RUNNING_JOBS")
        ),
        max_running_jobs_per_namespace=_positive(
            "max-running-jobs-per-namespace",
            "PROCJOB_MAX_RUNNING_JOBS_PER_NAMESPACE",
            pick("max_running_jobs_per_namespace", "PROCJOB_MAX_RUNNING_JOBS_PER_NAMESPACE"),
        ),
        max_running_pods=_positive(
            "max-running-pods", "PROCJOB_MAX_RUNNING_PODS", pick("max_running_pods", "PROCJOB_MAX_RUNNING_PODS")
        ),
        max_running_pods_per_job=_positive(
            "max-running-pods-per-job",
            "PROCJOB_MAX_RUNNING_PODS_PER_JOB",
            pick("max_running_pods_per_job", "PROCJOB_MAX_RUNNING_PODS_PER_JOB", "100"),
        ),
        events=events,
        **_retention(pick),
        **_log_archive(pick),
        **_leadership(pick, environ),
        **_tenancy(pick),
        instance=environ.get("POD_NAME", os.uname().nodename),
        failpoints=frozenset(_list(environ.get("PROCJOB_FAILPOINTS"))),
    )
