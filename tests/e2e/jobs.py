"""Builders for ProcessingJob manifests used by the e2e tests.

The rig's kwok stages make a pod on a fake node end as its annotations say
(`rig.procjob.dev/exit-code`, `run-seconds`, `fail-attempts`, `waiting-reason`,
`termination-message`); `rig(...)` puts them on a stage's pods through `podMetadata`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

IMAGE = "registry.example/procjob-test:1"


def rig(**annotations: str | int | float) -> dict[str, Any]:
    return {"annotations": {f"rig.procjob.dev/{k.replace('_', '-')}": str(v) for k, v in annotations.items()}}


def stage(name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": IMAGE}
    annotations = extra.pop("rig", None)
    if annotations is not None:
        body["podMetadata"] = rig(**annotations)
    body.update(extra)
    return body


def job(name: str, *stages: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"stages": list(stages), **spec}}


def when(value: str | None) -> datetime:
    assert value, "expected a timestamp"
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def stage_status(job_body: dict[str, Any], name: str) -> dict[str, Any]:
    for item in job_body["status"]["stages"]:
        if item["name"] == name:
            return dict(item)
    raise AssertionError(f"no status for stage {name}")
