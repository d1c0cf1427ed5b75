"""What the schema cannot check about a spec: problems only the operator's settings or a whole-spec
walk can find. Each problem names its field; any problem makes the job InvalidSpec before a pod runs.

The schema (and the same pydantic models) already bound the spec's size and shape, so this walk is
short and never raises on a spec that parsed: it returns problems, it does not throw them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from procjob.core.config import CoreConfig
from procjob.core.templating import check_spec
from procjob.models.spec import ProcessingJobSpec

# Kubernetes' own label and annotation domains: keys there change how Kubernetes and its add-ons
# treat the pod (AppArmor and seccomp profiles, mesh injection, eviction, scheduling), so only the
# platform team may open a prefix of them (CoreConfig.allowed_metadata_prefixes).
KUBERNETES_DOMAINS = ("kubernetes.io", "k8s.io")


def key_domain(key: str) -> str | None:
    """The DNS prefix of a label or annotation key (`example.com` of `example.com/x`), or None."""
    prefix, slash, _ = key.rpartition("/")
    return prefix.lower() if slash else None


def is_kubernetes_key(key: str) -> bool:
    """Whether the key's prefix is kubernetes.io or k8s.io, or a subdomain of either."""
    domain = key_domain(key)
    return domain is not None and any(domain == d or domain.endswith(f".{d}") for d in KUBERNETES_DOMAINS)


def metadata_problems(where: str, keys: Iterable[str], allowed_prefixes: tuple[str, ...]) -> list[str]:
    """One problem per key in the Kubernetes domains that no allowed prefix opens."""
    allowed = ", ".join(allowed_prefixes) or "none"
    return [
        f"{where}: {key!r} is in the kubernetes.io/k8s.io domains, which the operator does not allow "
        f"(allowed prefixes: {allowed})"
        for key in keys
        if is_kubernetes_key(key) and not key.startswith(allowed_prefixes)
    ]


def _metadata(spec: ProcessingJobSpec, config: CoreConfig) -> list[str]:
    problems: list[str] = []
    for index, stage in enumerate(spec.stages):
        metadata = stage.pod_metadata
        if metadata is None:
            continue
        fields: tuple[tuple[str, Mapping[str, str] | None], ...] = (
            ("labels", metadata.labels),
            ("annotations", metadata.annotations),
        )
        for field, values in fields:
            where = f"spec.stages[{index}].podMetadata.{field}"
            problems += metadata_problems(where, values or {}, config.allowed_metadata_prefixes)
    return problems


def validate_spec(spec: ProcessingJobSpec, config: CoreConfig) -> list[str]:
    """Problems the schema cannot see: templates, service accounts allowed by this operator, pod label
    and annotation keys in the Kubernetes domains that the operator's settings do not allow."""
    problems = check_spec(spec)
    account = spec.service_account_name
    if account is not None and account not in config.allowed_service_accounts:
        allowed = ", ".join(sorted(config.allowed_service_accounts)) or "none"
        problems.append(f"spec.serviceAccountName: {account!r} is not allowed by the operator (allowed: {allowed})")
    problems += _metadata(spec, config)
    return problems
