"""Operator configuration the pure core needs, as an immutable value (no environment reads here)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_WORKER_IMAGE = "ghcr.io/procjob/procjob:0.1.0"


@dataclass(frozen=True, slots=True)
class S3Settings:
    """S3 settings injected into built-in (`uses:`) worker pods; credentials come from a Secret."""

    endpoint_url: str | None = None
    region: str | None = None
    force_path_style: bool = False
    credentials_secret: str | None = None  # keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """What `decide` and the pod builder may depend on besides the job itself."""

    worker_image: str = DEFAULT_WORKER_IMAGE
    allowed_service_accounts: frozenset[str] = frozenset()
    audit_enabled: bool = False
    fetch_allowed_networks: tuple[str, ...] = ()
    s3: S3Settings = field(default_factory=S3Settings)
    run_as_user: int = 65532
    # Label and annotation key prefixes in the kubernetes.io / k8s.io domains a job may set on its pods
    # (the platform's choice, e.g. "karpenter.sh/" is outside those domains and always allowed).
    allowed_metadata_prefixes: tuple[str, ...] = ()
    # Namespaces whose jobs may loosen their pods to the Pod Security Standards' baseline profile (root,
    # privilege escalation, baseline capabilities); every other namespace gets restricted (core.podsecurity).
    baseline_namespaces: frozenset[str] = frozenset()
    # Built-in stages may use the node's ambient cloud credentials only when the platform says so.
    s3_node_credentials: bool = False
    ttl_seconds_after_finished: int | None = None  # the default for jobs that set none
    # Seconds podGC (and ttlSecondsAfterFinished) waits after an attempt ended for its log to be
    # archived; None: logs are not archived (no database), nothing waits.
    log_archive_wait_seconds: int | None = None
    routine_events: bool = True  # False: no Event for StageStarted/AttemptStarted/StageSucceeded (the audit keeps them)
