"""The worker contract: what the operator's pod builder and a worker pod agree on, spelled once.

Both sides import these names: `procjob.core.podspec` sets the variables and the termination
message path, `procjob.core.backoff` fails a job on EXIT_PERMANENT by default, `procjob.core.outputs`
keeps at most MAX_OUTPUT_BYTES, and `procjob.worker` reads the variables, writes the termination
message and exits with one of the codes below. Any container image may follow the same contract
(worker/README.md describes it for authors of stages).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

# -- the prefixes of those names: a job author may set none of them (AWS_* only on built-in stages,
#    whose S3 client reads them). models.syntax refuses them in the schema.
ENV_PREFIX = "PROCJOB_"
BUILTIN_ENV_PREFIXES = (ENV_PREFIX, "AWS_")

# -- variables every worker container gets (image stages and built-in stages alike)
ENV_JOB_NAME = "PROCJOB_JOB_NAME"
ENV_JOB_NAMESPACE = "PROCJOB_JOB_NAMESPACE"
ENV_JOB_UID = "PROCJOB_JOB_UID"
ENV_STAGE = "PROCJOB_STAGE"
ENV_ATTEMPT = "PROCJOB_ATTEMPT"
ENV_TERMINATION_MESSAGE_PATH = "PROCJOB_TERMINATION_MESSAGE_PATH"

# -- variables of built-in (`uses:`) stages
ENV_STAGE_PARAMS = "PROCJOB_STAGE_PARAMS"  # the rendered `with:` object as JSON
# S3, for stages whose descriptor needs it (procjob.models.builtin.base.Setting.S3)
ENV_S3_CREDENTIALS = "PROCJOB_S3_CREDENTIALS"  # an S3Credentials value: where the S3 keys come from
ENV_S3_FORCE_PATH_STYLE = "PROCJOB_S3_FORCE_PATH_STYLE"  # "true": path-style addressing
ENV_AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
ENV_AWS_REGION = "AWS_REGION"
ENV_AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"  # also the key's name in the platform's Secret
ENV_AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable's name, likewise the key's
# The SSRF guard's exceptions, for stages that open URLs (Setting.FETCH_ALLOWED_NETWORKS)
ENV_FETCH_ALLOWED_NETWORKS = "PROCJOB_FETCH_ALLOWED_NETWORKS"  # comma-separated CIDRs


class S3Credentials(StrEnum):
    """The values of PROCJOB_S3_CREDENTIALS: the platform's choice, never the job author's."""

    SECRET = "secret"  # noqa: S105 - AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the operator's Secret, nothing else
    NODE = "node"  # botocore's chain (web identity, instance roles): only when the platform opted in
    NONE = "none"  # unsigned requests: the node's ambient credentials are never used


# -- where the outputs go, and how large they may be
TERMINATION_MESSAGE_PATH = "/dev/termination-log"  # the container's terminationMessagePath
MAX_OUTPUT_BYTES = 4096  # the kubelet keeps at most 4 KiB of a termination message

# -- the worker pod's own parts: its one container, its writable /tmp (an emptyDir, unless the stage
#    mounts a volume of its own there), and names and paths a job's volumes may not take
WorkerContainer = Literal["main"]
WORKER_CONTAINER: str = get_args(WorkerContainer)[0]
TMP_VOLUME = "procjob-tmp"
TMP_PATH = "/tmp"  # noqa: S108 - the pod's own emptyDir
TMP_SIZE_LIMIT = "1Gi"
RESERVED_VOLUME_PREFIX = "procjob-"  # volume names of the operator's
# mounted when a job names an allowed service account
SERVICE_ACCOUNT_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105 - a path

# -- exit codes
EXIT_OK = 0
EXIT_FAILED = 1  # a bug in the stage: the job's retry rules decide
EXIT_PERMANENT = 2  # retrying cannot help: the default retry rules fail the job
EXIT_TRANSIENT = 75  # EX_TEMPFAIL from sysexits.h: the same attempt may work later
