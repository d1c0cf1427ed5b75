"""Build the Pod manifest of one attempt: secure by default, owned by its job, found by labels.

Job authors choose image, command, env and resources, and through pod templates (core.podtemplate)
scheduling, volumes and a security context the schema and validation (core.podsecurity) keep within
the Pod Security Standards. By default pods run as a non-root user with no privilege escalation,
all capabilities dropped, seccomp RuntimeDefault, a read-only root filesystem (with a writable
/tmp), no service-account token unless the job names an allowed service account, and never with
host namespaces or host paths. The operator's own parts — the container, its env, restartPolicy,
the service account, the procjob.dev/ labels — always win over a template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from procjob.core.config import CoreConfig
from procjob.core.naming import pod_name
from procjob.core.podtemplate import (
    StageTemplate,
    container_security_context,
    pod_fields,
    pod_security_context,
    stage_template,
    volumes_and_mounts,
)
from procjob.core.templating import Context, PodTooLarge, render, render_value
from procjob.models import contract
from procjob.models.builtin.base import Setting
from procjob.models.builtin.registry import BUILTIN_STAGES
from procjob.models.job import (
    API_VERSION,
    KIND,
    LABEL_ATTEMPT,
    LABEL_ITEM,
    LABEL_JOB,
    LABEL_JOB_UID,
    LABEL_STAGE,
    ProcessingJob,
)
from procjob.models.spec import Stage

CONTAINER = contract.WORKER_CONTAINER
__all__ = ["CONTAINER", "MAX_POD_BYTES", "build_pod", "container_security_context", "pod_labels"]


def pod_labels(job: ProcessingJob, stage: str, attempt: int, item: int | None = None) -> dict[str, str]:
    labels = {
        LABEL_JOB: job.meta.name,
        LABEL_JOB_UID: job.meta.uid,
        LABEL_STAGE: stage,
        LABEL_ATTEMPT: str(attempt),
        "app.kubernetes.io/managed-by": "procjob",
    }
    if item is not None:
        labels[LABEL_ITEM] = str(item)
    return labels


MAX_POD_BYTES = 512 * 1024  # a rendered pod manifest over this is refused (PodTooLarge)

Env = list[dict[str, Any]]


def _s3_env(config: CoreConfig) -> Env:
    """Where the platform's S3 is and where its keys come from (a Secret, the node, or none)."""
    s3 = config.s3
    env: Env = []
    if s3.endpoint_url:
        env.append({"name": contract.ENV_AWS_ENDPOINT_URL, "value": s3.endpoint_url})
    if s3.region:
        env.append({"name": contract.ENV_AWS_REGION, "value": s3.region})
    if s3.force_path_style:
        env.append({"name": contract.ENV_S3_FORCE_PATH_STYLE, "value": "true"})
    if s3.credentials_secret:
        env.append({"name": contract.ENV_S3_CREDENTIALS, "value": contract.S3Credentials.SECRET.value})
        for key in (contract.ENV_AWS_ACCESS_KEY_ID, contract.ENV_AWS_SECRET_ACCESS_KEY):
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": s3.credentials_secret, "key": key}}})
    else:
        mode = contract.S3Credentials.NODE if config.s3_node_credentials else contract.S3Credentials.NONE
        env.append({"name": contract.ENV_S3_CREDENTIALS, "value": mode.value})
    return env


def _fetch_allowed_networks_env(config: CoreConfig) -> Env:
    networks = config.fetch_allowed_networks
    return [{"name": contract.ENV_FETCH_ALLOWED_NETWORKS, "value": ",".join(networks)}] if networks else []


# Each operator setting a built-in stage may ask for (BuiltinStage.settings), as pod env.
SETTING_ENV = {Setting.S3: _s3_env, Setting.FETCH_ALLOWED_NETWORKS: _fetch_allowed_networks_env}


def _operator_env(stage: Stage, job: ProcessingJob, attempt: int, ctx: Context, config: CoreConfig) -> Env:
    """The worker contract's variables; for a built-in stage also its parameters and the operator
    settings its descriptor asks for, and no others (fetch's SSRF exceptions go to fetch alone)."""
    env: Env = [
        {"name": contract.ENV_JOB_NAME, "value": job.meta.name},
        {"name": contract.ENV_JOB_NAMESPACE, "value": job.meta.namespace},
        {"name": contract.ENV_JOB_UID, "value": job.meta.uid},
        {"name": contract.ENV_STAGE, "value": stage.name},
        {"name": contract.ENV_ATTEMPT, "value": str(attempt)},
        {"name": contract.ENV_TERMINATION_MESSAGE_PATH, "value": contract.TERMINATION_MESSAGE_PATH},
    ]
    if stage.uses is None:
        return env
    params = render_value(stage.with_ or {}, ctx, f"spec.stages[{stage.name}].with")
    env.append({"name": contract.ENV_STAGE_PARAMS, "value": json.dumps(params, separators=(",", ":"))})
    builtin = BUILTIN_STAGES.get(stage.uses)  # None only for a spec validation did not see
    for setting in sorted(builtin.settings if builtin else ()):
        env += SETTING_ENV[setting](config)
    return env


def _env(stage: Stage, job: ProcessingJob, attempt: int, ctx: Context, config: CoreConfig) -> Env:
    """The job's variables first, the operator's last: for a repeated name the last one wins in a
    container, so a job can never override the worker contract or a built-in stage's settings (the
    schema refuses those names too; this holds even for an object stored under an older schema)."""
    env: Env = []
    for index, var in enumerate(stage.env or []):
        if var.value_from is not None:
            env.append({"name": var.name, "valueFrom": var.value_from.to_api()})
        else:
            where = f"spec.stages[{stage.name}].env[{index}].value"
            env.append({"name": var.name, "value": render(var.value or "", ctx, where)})
    return [*env, *_operator_env(stage, job, attempt, ctx, config)]


def _command_and_args(stage: Stage, ctx: Context) -> tuple[list[str] | None, list[str] | None]:
    """A built-in stage runs `procjob worker NAME`; an image stage its own command and args, rendered."""
    if stage.uses is not None:
        return ["procjob", "worker", stage.uses], None
    where = f"spec.stages[{stage.name}]"
    command = [render(c, ctx, f"{where}.command[{i}]") for i, c in enumerate(stage.command or [])]
    args = [render(a, ctx, f"{where}.args[{i}]") for i, a in enumerate(stage.args or [])]
    return command or None, args or None


def _container(
    stage: Stage, job: ProcessingJob, attempt: int, ctx: Context, config: CoreConfig, template: StageTemplate
) -> dict[str, Any]:
    """The one container: the job's choices where it has any, the operator's posture everywhere else."""
    command, args = _command_and_args(stage, ctx)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.worker_image if stage.uses is not None else stage.image or "",
        "env": _env(stage, job, attempt, ctx, config),
        "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "securityContext": container_security_context(stage.security_context, template.spec.security_context),
    }
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    if stage.env_from:
        container["envFrom"] = [e.to_api() for e in stage.env_from]
    if stage.working_dir:
        container["workingDir"] = stage.working_dir
    if stage.image_pull_policy:
        container["imagePullPolicy"] = stage.image_pull_policy
    if stage.resources is not None:
        container["resources"] = stage.resources.to_api()
    return container


def _pod_spec(
    account: str | None, stage: Stage, container: dict[str, Any], config: CoreConfig, template: StageTemplate
) -> dict[str, Any]:
    """The template's Pod fields, then the operator's: never restarted, non-root by default, the
    stage's volumes and /tmp, no token unless the job names an (allowed) service account."""
    volumes, mounts = volumes_and_mounts(template.spec, stage.volume_mounts)
    pod_spec: dict[str, Any] = pod_fields(template.spec) | {
        "restartPolicy": "Never",
        "automountServiceAccountToken": account is not None,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(template.spec, config),
        "containers": [container | {"volumeMounts": mounts}],
        "volumes": volumes,
    }
    if account is not None:
        pod_spec["serviceAccountName"] = account
    return pod_spec


def _metadata(
    job: ProcessingJob, stage: Stage, attempt: int, template: StageTemplate, item: int | None
) -> dict[str, Any]:
    """Name, labels (the operator's win over the job's) and the controller reference to the job."""
    metadata: dict[str, Any] = {
        "name": pod_name(job.meta.name, job.meta.uid, stage.name, attempt, item),
        "namespace": job.meta.namespace,
        "labels": {**template.labels, **pod_labels(job, stage.name, attempt, item)},
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": job.meta.name,
                "uid": job.meta.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if template.annotations:
        metadata["annotations"] = template.annotations
    return metadata


def build_pod(
    job: ProcessingJob,
    index: int,
    attempt: int,
    outputs: Mapping[str, Mapping[str, Any] | None],
    config: CoreConfig,
    *,
    ended: tuple[str, str] | None = None,
    item: tuple[int, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of attempt `attempt` of stage `index` of spec.all_stages (the stages, then the
    finally stages); `ended`: {{ job.status }} and {{ job.reason }} for a finally stage; `item`: the
    index and value of an item of a fanned-out stage ({{ item }}). Raises TemplateError."""
    assert job.spec is not None
    stage = job.spec.all_stages[index]
    value = item[1] if item is not None else None
    ctx = Context(
        job.meta.name, job.meta.namespace, job.meta.uid, outputs, ended=ended, item=item is not None, value=value
    )
    template = stage_template(job.spec, stage)
    container = _container(stage, job, attempt, ctx, config, template)
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(job, stage, attempt, template, item[0] if item is not None else None),
        "spec": _pod_spec(job.spec.service_account_name, stage, container, config, template),
    }
    size = len(json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"))
    if size > MAX_POD_BYTES:
        raise PodTooLarge(
            f"stage {stage.name}: the rendered pod is {size // 1024} KiB, over the limit of {MAX_POD_BYTES // 1024} KiB"
        )
    return manifest
