"""`procjob run`: start the operator.

Every flag has a PROCJOB_* environment variable (the flag wins). The database URL is read only
from PROCJOB_DATABASE_URL or the file named by PROCJOB_DATABASE_URL_FILE, never from a flag, so it
does not show in `ps`; it is never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

ENV_HELP = "env: %s"


# Every `procjob run` flag: (flag, environment variable, help, argparse extras). Flags win over
# the environment; controller.settings.from_sources validates both.
FLAGS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("namespace", "PROCJOB_NAMESPACES", "namespace to watch (repeatable; default: all)", {"action": "append"}),
    ("metrics-host", "PROCJOB_METRICS_HOST", "address of the metrics/probe/history port (default 0.0.0.0)", {}),
    ("metrics-port", "PROCJOB_METRICS_PORT", "port for /metrics, /healthz, /readyz, history (default 8080)", {}),
    ("workers", "PROCJOB_WORKERS", "concurrent reconciles (default 8)", {}),
    ("log-format", "PROCJOB_LOG_FORMAT", "text or json (default text)", {}),
    ("log-level", "PROCJOB_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR (default INFO)", {}),
    (
        "events",
        "PROCJOB_EVENTS",
        "Kubernetes Events to post: all transitions, or important (no Event for a stage's routine start and "
        "success; the audit keeps every transition) (default all)",
        {},
    ),
    ("worker-image", "PROCJOB_WORKER_IMAGE", "image that runs built-in (uses:) stages", {}),
    (
        "allowed-service-accounts",
        "PROCJOB_ALLOWED_SERVICE_ACCOUNTS",
        "comma-separated service accounts jobs may ask for (default: none)",
        {},
    ),
    (
        "fetch-allowed-networks",
        "PROCJOB_FETCH_ALLOWED_NETWORKS",
        "CIDRs the fetch stage may reach although private (default: none)",
        {},
    ),
    ("s3-endpoint-url", "PROCJOB_S3_ENDPOINT_URL", "S3 endpoint given to built-in stages", {}),
    ("s3-region", "PROCJOB_S3_REGION", "S3 region given to built-in stages", {}),
    ("s3-force-path-style", "PROCJOB_S3_FORCE_PATH_STYLE", "path-style S3 addressing (true/false)", {}),
    (
        "s3-credentials-secret",
        "PROCJOB_S3_CREDENTIALS_SECRET",
        "Secret (in each job's namespace) with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        {},
    ),
    (
        "s3-node-credentials",
        "PROCJOB_S3_NODE_CREDENTIALS",
        "let built-in stages use the node's ambient cloud credentials when no --s3-credentials-secret is set "
        "(true/false, default false: no credentials)",
        {},
    ),
    (
        "allowed-metadata-prefixes",
        "PROCJOB_ALLOWED_METADATA_PREFIXES",
        "comma-separated label/annotation key prefixes in the kubernetes.io and k8s.io domains that jobs may set "
        "on their pods, e.g. cluster-autoscaler.kubernetes.io/ (default: none)",
        {},
    ),
    (
        "baseline-namespaces",
        "PROCJOB_BASELINE_NAMESPACES",
        "comma-separated namespaces whose jobs may loosen their pods to the Pod Security Standards' baseline "
        "profile (root, privilege escalation, baseline capabilities); elsewhere restricted (default: none)",
        {},
    ),
    (
        "max-priority",
        "PROCJOB_MAX_PRIORITY",
        "highest spec.priority a job is queued with; higher values count as this (default: no cap)",
        {},
    ),
    (
        "namespace-max-priority",
        "PROCJOB_NAMESPACE_MAX_PRIORITY",
        "per-namespace priority caps, NS=N,NS2=M; a namespace's entry wins over --max-priority",
        {},
    ),
    ("migrate", "PROCJOB_DATABASE_MIGRATE", "apply audit database migrations at start (true/false)", {}),
    ("max-running-jobs", "PROCJOB_MAX_RUNNING_JOBS", "running jobs allowed at once (default: no limit)", {}),
    (
        "leader-elect",
        "PROCJOB_LEADER_ELECT",
        "elect a leader over a coordination.k8s.io Lease; only the leader writes (default: off; the "
        "variable takes true/false)",
        {"action": "store_const", "const": "true"},
    ),
    (
        "leader-election-namespace",
        "PROCJOB_LEADER_ELECTION_NAMESPACE",
        "namespace of the Lease (default: the pod's own)",
        {},
    ),
    (
        "leader-election-lease-name",
        "PROCJOB_LEADER_ELECTION_LEASE_NAME",
        "name of the Lease (default procjob-operator); one per operator installation in that namespace",
        {},
    ),
    ("leader-election-lease-seconds", "PROCJOB_LEADER_ELECTION_LEASE_SECONDS", "lease duration (default 15)", {}),
    (
        "leader-election-renew-deadline-seconds",
        "PROCJOB_LEADER_ELECTION_RENEW_DEADLINE_SECONDS",
        "a leader that has not renewed for this long stops (default 10)",
        {},
    ),
    (
        "leader-election-retry-seconds",
        "PROCJOB_LEADER_ELECTION_RETRY_SECONDS",
        "time between attempts to take or renew the lease (default 2)",
        {},
    ),
    (
        "ttl-seconds-after-finished",
        "PROCJOB_TTL_SECONDS_AFTER_FINISHED",
        "delete finished jobs this many seconds after they end, unless they set ttlSecondsAfterFinished "
        "(default: keep them)",
        {},
    ),
    (
        "max-finished-jobs-per-namespace",
        "PROCJOB_MAX_FINISHED_JOBS_PER_NAMESPACE",
        "finished jobs kept per namespace; the oldest beyond it are deleted (default: no cap)",
        {},
    ),
    (
        "max-running-jobs-per-namespace",
        "PROCJOB_MAX_RUNNING_JOBS_PER_NAMESPACE",
        "running jobs allowed at once per namespace (default: no limit)",
        {},
    ),
    (
        "max-running-pods",
        "PROCJOB_MAX_RUNNING_PODS",
        "pods of all jobs running at once; new attempts wait for room (default: no limit)",
        {},
    ),
    (
        "max-running-pods-per-job",
        "PROCJOB_MAX_RUNNING_PODS_PER_JOB",
        "pods of one job running at once, e.g. the items of a fanned-out stage (default 100)",
        {},
    ),
    (
        "log-archive-max-bytes",
        "PROCJOB_LOG_ARCHIVE_MAX_BYTES",
        "with a database: archive the last N bytes of each finished attempt's container logs before podGC "
        "deletes the pod; 0 turns the archive off (default 1048576)",
        {},
    ),
    (
        "log-archive-wait-seconds",
        "PROCJOB_LOG_ARCHIVE_WAIT_SECONDS",
        "podGC waits at most this long after an attempt ended for its logs to be archived (default 300)",
        {},
    ),
    ("log-archive-workers", "PROCJOB_LOG_ARCHIVE_WORKERS", "container logs read at once (default 4)", {}),
)


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run the operator (watches ProcessingJobs and their pods)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, env, helptext, extra in FLAGS:
        run.add_argument(f"--{name}", default=None, help=f"{helptext} [{ENV_HELP % env}]", **extra)
    run.set_defaults(func=main)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kopf logs every handled watch event at INFO ("Handler ... succeeded"): noise at our volume.
    kopf_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("kopf.objects", "kopf.activities", "kopf._core.engines.activities"):
        logging.getLogger(name).setLevel(kopf_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(args: argparse.Namespace) -> int:
    from procjob.adapters.audit import AuditError, check_dsn, resolve_dsn
    from procjob.controller.settings import SettingsError, from_sources

    try:
        settings = from_sources(vars(args), os.environ)
        dsn = resolve_dsn(os.environ)
        if dsn is not None:
            check_dsn(dsn)
    except (SettingsError, AuditError) as exc:
        print(f"procjob run: {exc}", file=sys.stderr)
        return 2
    import dataclasses

    from procjob.cli.kopfimport import client_libraries_hidden

    with client_libraries_hidden():  # kopf would import the whole Kubernetes client, unused here
        import kopf
        from kopf._core.engines.peering import Identity  # kopf exports no public name for it

        from procjob import handlers  # noqa: F401 - importing registers the kopf handlers

    settings = dataclasses.replace(settings, database_url=dsn)
    configure_logging(settings.log_format, settings.log_level)
    memo = kopf.Memo(settings=settings)  # handlers.startup builds memo.operator from it
    try:
        asyncio.run(
            kopf.operator(
                # An explicit identity: kopf's own guess asks the password database for the user, and
                # the image's uid 65532 has no entry there (getpwuid raises KeyError, a crash loop).
                identity=Identity(settings.instance),
                standalone=True,
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
                memo=memo,
            )
        )
    except KeyboardInterrupt:
        return 0
    return 0
