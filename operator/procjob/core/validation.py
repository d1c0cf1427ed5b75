"""What the schema cannot check about a spec: problems only the operator's settings or a whole-spec
walk can find. Each problem names its field; any problem makes the job InvalidSpec before a pod runs.
"""

from __future__ import annotations

from procjob.core.config import CoreConfig
from procjob.core.templating import check_spec
from procjob.models.spec import ProcessingJobSpec


def validate_spec(spec: ProcessingJobSpec, config: CoreConfig) -> list[str]:
    """Problems the schema cannot see: templates, service accounts allowed by this operator."""
    problems = check_spec(spec)
    account = spec.service_account_name
    if account is not None and account not in config.allowed_service_accounts:
        allowed = ", ".join(sorted(config.allowed_service_accounts)) or "none"
        problems.append(f"spec.serviceAccountName: {account!r} is not allowed by the operator (allowed: {allowed})")
    return problems
