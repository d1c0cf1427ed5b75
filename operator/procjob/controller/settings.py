"""The operator's settings, from flags and PROCJOB_* environment variables (flags win).

Validated once at start; a bad value stops the operator with one line naming the flag and its
variable. The database URL is a secret: it is kept out of `repr()` and never logged.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from procjob.core.config import DEFAULT_WORKER_IMAGE, CoreConfig, S3Settings


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
    events: str = "all"  # all | important (no Event for a stage's routine start and success)
    instance: str = ""
    failpoints: frozenset[str] = frozenset()  # tests only: PROCJOB_FAILPOINTS=audit-after-insert

    def core(self) -> CoreConfig:
        return CoreConfig(
            worker_image=self.worker_image,
            allowed_service_accounts=frozenset(self.allowed_service_accounts),
            audit_enabled=self.database_url is not None,
            fetch_allowed_networks=self.fetch_allowed_networks,
            s3=self.s3,
            routine_events=self.events == "all",
        )


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


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
    networks = _list(pick("fetch_allowed_networks", "PROCJOB_FETCH_ALLOWED_NETWORKS"))
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise SettingsError(
                f"--fetch-allowed-networks (PROCJOB_FETCH_ALLOWED_NETWORKS): {net!r} is not a CIDR network"
            ) from None
    accounts = _list(pick("allowed_service_accounts", "PROCJOB_ALLOWED_SERVICE_ACCOUNTS"))
    s3 = S3Settings(
        endpoint_url=pick("s3_endpoint_url", "PROCJOB_S3_ENDPOINT_URL"),
        region=pick("s3_region", "PROCJOB_S3_REGION"),
        force_path_style=(pick("s3_force_path_style", "PROCJOB_S3_FORCE_PATH_STYLE", "false") or "").lower()
        in {"1", "true", "yes"},
        credentials_secret=pick("s3_credentials_secret", "PROCJOB_S3_CREDENTIALS_SECRET"),
    )
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
        events=events,
        instance=environ.get("POD_NAME", os.uname().nodename),
        failpoints=frozenset(_list(environ.get("PROCJOB_FAILPOINTS"))),
    )
