"""The ProcessingJob object as the operator sees it, and its identity constants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from procjob.models.spec import ProcessingJobSpec
from procjob.models.status import ProcessingJobStatus
from procjob.models.timestamps import parse_time

GROUP = "procjob.dev"
VERSION = "v1alpha1"
KIND = "ProcessingJob"
PLURAL = "processingjobs"
SINGULAR = "processingjob"
SHORT_NAMES = ("pj",)
CATEGORIES = ("procjob",)
API_VERSION = f"{GROUP}/{VERSION}"
MAX_JOB_NAME = 63  # the job name is a pod label value

LABEL_JOB = f"{GROUP}/job"
LABEL_JOB_UID = f"{GROUP}/job-uid"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_ITEM = f"{GROUP}/item"  # the item's index, on the pods of a fanned-out stage (forEach)
FINALIZER = f"{GROUP}/audit"
ANNOTATION_RETRY = f"{GROUP}/retry"  # set to a timestamp to re-run a Failed job from its failed stage


@dataclass(frozen=True, slots=True)
class JobMeta:
    """The parts of metadata the operator uses."""

    name: str
    namespace: str
    uid: str
    generation: int
    creation_time: datetime
    deletion_time: datetime | None = None
    resource_version: str | None = None
    finalizers: tuple[str, ...] = ()
    retry_request: str | None = None  # the procjob.dev/retry annotation (kubectl pj retry)

    @classmethod
    def from_api(cls, metadata: dict[str, Any]) -> JobMeta:
        created = parse_time(metadata.get("creationTimestamp"))
        if created is None:
            raise ValueError("metadata.creationTimestamp is missing")
        return cls(
            name=metadata["name"],
            namespace=metadata.get("namespace", "default"),
            uid=metadata["uid"],
            generation=int(metadata.get("generation", 1)),
            creation_time=created,
            deletion_time=parse_time(metadata.get("deletionTimestamp")),
            resource_version=metadata.get("resourceVersion"),
            finalizers=tuple(metadata.get("finalizers") or ()),
            retry_request=(metadata.get("annotations") or {}).get(ANNOTATION_RETRY),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ProcessingJob:
    """A parsed ProcessingJob. `spec` is None when the stored object does not parse (see `spec_error`)."""

    meta: JobMeta
    spec: ProcessingJobSpec | None
    status: ProcessingJobStatus
    spec_error: str | None = None

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> ProcessingJob:
        """Parse an API object. A bad spec is kept as an error naming the field; a bad status is reset
        only field by field is not possible, so an unreadable status is an error the caller raises."""
        meta = JobMeta.from_api(body.get("metadata") or {})
        status = ProcessingJobStatus.model_validate(body.get("status") or {})
        try:
            spec = ProcessingJobSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            return cls(meta=meta, spec=None, status=status, spec_error=describe_validation_error(exc, "spec"))
        except RecursionError:  # validators walk iteratively; this is the last line of defence
            return cls(meta=meta, spec=None, status=status, spec_error="spec: nested too deeply to read")
        return cls(meta=meta, spec=spec, status=status)


def describe_validation_error(exc: ValidationError, root: str) -> str:
    """One line per problem, each naming the field path, e.g. `spec.stages[1].name: ...`."""
    lines = []
    for err in exc.errors(include_url=False):
        path = root
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        lines.append(f"{path}: {err['msg']}")
    return "; ".join(lines)
