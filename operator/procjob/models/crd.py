"""Generate the ProcessingJob CustomResourceDefinition from the pydantic models.

pydantic's JSON Schema is close to what Kubernetes wants, but a structural schema differs:
no `$ref` (definitions are inlined), no `anyOf` with null for optional fields, no
`additionalProperties: false`, no `title`; maps use `additionalProperties`; free-form objects use
`x-kubernetes-preserve-unknown-fields`. `structural()` does that conversion; `crd()` wraps the
result with names, printer columns and the status subresource. crds/processingjob.yaml is this
output, and a test fails when the two drift.
"""

from __future__ import annotations

from typing import Any

import yaml

from procjob.models.job import (
    CATEGORIES,
    GROUP,
    KIND,
    MAX_JOB_NAME,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from procjob.models.spec import ProcessingJobSpec
from procjob.models.status import ProcessingJobStatus

Schema = dict[str, Any]

PRINTER_COLUMNS: list[Schema] = [
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Succeeded")].reason',
        "description": "Reason of the Succeeded condition.",
    },
    {
        "name": "Stage",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "Stages reached of all; with fanned-out stages, their items done of all (2/3 57/200).",
    },
    {
        "name": "Attempts",
        "type": "integer",
        "jsonPath": ".status.attempts",
        "description": "Attempts in all.",
    },
    {"name": "Duration", "type": "string", "jsonPath": ".status.duration", "description": "Start to end."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Current",
        "type": "string",
        "jsonPath": ".status.currentStage",
        "priority": 1,
        "description": "Stage in progress.",
    },
    {
        "name": "Queue",
        "type": "integer",
        "jsonPath": ".status.queue.position",
        "priority": 1,
        "description": "Position while queued (1 = next).",
    },
    {
        "name": "Message",
        "type": "string",
        "jsonPath": ".status.message",
        "priority": 1,
        "description": "What is happening.",
    },
]

# `kubectl get pj --field-selector status.phase=Failed` (GA in Kubernetes 1.32, on by default since
# 1.31). An older API server drops the field and refuses the selector; the README gives the label-free
# alternative. Only what users filter on.
SELECTABLE_FIELDS: list[Schema] = [{"jsonPath": ".status.phase"}]

# propertyNames (pydantic's bounds on map keys) is not part of a CRD schema: the API server drops it inside
# `items` and server-side apply refuses it elsewhere. Map keys are checked by CEL rules instead.
_DROP = {"title", "additionalProperties", "$defs", "discriminator", "propertyNames"}


def structural(schema: Schema, defs: dict[str, Schema] | None = None, *, keep_defaults: bool = True) -> Schema:
    """Turn a pydantic JSON Schema (node) into a Kubernetes structural schema (node)."""
    defs = schema.get("$defs", {}) if defs is None else defs
    node = dict(schema)

    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**target, **node}  # a field's own description wins over the model's docstring
        return structural(merged, defs, keep_defaults=keep_defaults)

    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unions are not supported in the CRD schema: {options}")
        merged = {**options[0], **node}
        return structural(merged, defs, keep_defaults=keep_defaults)

    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**node.pop("allOf")[0], **node}
        return structural(merged, defs, keep_defaults=keep_defaults)

    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and (value is None or not keep_defaults)):
            continue
        out[key] = value

    if node.get("x-kubernetes-preserve-unknown-fields") is True and "type" not in node:
        # Any JSON value with value validations written by the model (models.syntax.with_schema, fanout.for_each_schema)
        return {key: value for key, value in node.items() if key != "title" and (key, value) != ("default", None)}
    if node.get("additionalProperties") is True and "properties" not in node:
        out["x-kubernetes-preserve-unknown-fields"] = True  # dict[str, Any]: a free-form object, not pruned
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("properties", None)
        return out

    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {
            name: structural(sub, defs, keep_defaults=keep_defaults) for name, sub in node["properties"].items()
        }
    elif node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(node["additionalProperties"], defs, keep_defaults=keep_defaults)

    if "items" in node:
        out["items"] = structural(node["items"], defs, keep_defaults=keep_defaults)

    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "const" in out:
        out["enum"] = [out.pop("const")]
        out.setdefault("type", "string")
    if out.get("format") in {"date-time"}:
        out["type"] = "string"
    return out


def _model_schema(model: type[ProcessingJobSpec] | type[ProcessingJobStatus]) -> Schema:
    return model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")


def open_api_schema() -> Schema:
    """The openAPIV3Schema of the ProcessingJob kind."""
    spec = structural(_model_schema(ProcessingJobSpec))
    status = structural(_model_schema(ProcessingJobStatus), keep_defaults=False)
    return {
        "type": "object",
        "description": "A staged processing job: ordered stages run as worker pods, retried with backoff.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "procjob.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ProcessingJob"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_JOB_NAME}",
                "message": f"metadata.name must be at most {MAX_JOB_NAME} characters (it is a pod label value)",
            }
        ],
    }


def crd() -> Schema:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "procjob", "app.kubernetes.io/part-of": "procjob"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "selectableFields": SELECTABLE_FIELDS,
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `procjob crd` from operator/procjob/models; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)
