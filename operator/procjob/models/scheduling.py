"""Where a job's pods may run: tolerations, affinity, topology spread and label selectors, shaped
and named as in corev1 (so `kubectl explain` reads the same) and bounded in size.

Each rule the Pod API checks is written as CEL for the API server and in Python for the operator,
with the same message. The keys of `matchLabels` maps are checked by the operator only (InvalidSpec,
before any pod): a regular expression per key in CEL, at the depth selectors sit, would exceed the
API server's cost budget for a CRD.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from procjob.models.base import ApiModel
from procjob.models.container import LabelValue, cel_rules
from procjob.models.syntax import DNS_LABEL, MAX_KEY, QUALIFIED_NAME, Name, key_problem

QualifiedName = Annotated[str, Field(min_length=1, max_length=MAX_KEY, pattern=QUALIFIED_NAME)]
Weight = Annotated[int, Field(ge=1, le=100)]

SET_OPERATORS = ("In", "NotIn")
INTEGER = "^-?[0-9]{1,18}$"  # Gt and Lt compare a node label value read as an int64
SELECTOR_VALUES = "In and NotIn need values; Exists and DoesNotExist take none"
NODE_SELECTOR_VALUES = SELECTOR_VALUES + "; Gt and Lt take one integer"
FIELD_SELECTOR = "matchFields select on metadata.name with In or NotIn and exactly one value"
TOLERATION_KEYLESS = "a toleration without a key needs operator Exists"
TOLERATION_EXISTS = "a toleration with operator Exists has no value"
TOLERATION_SECONDS = "tolerationSeconds needs effect NoExecute"
MIN_DOMAINS = "minDomains needs whenUnsatisfiable DoNotSchedule"


def _values_rule(with_numbers: bool) -> list[dict[str, str]]:
    """CEL: how many values each operator takes (`_values_problem` in Python)."""
    none = "(!has(self.values) || self.values.size() == 0)"
    otherwise = (
        f"self.operator in ['Gt', 'Lt'] ? (has(self.values) && self.values.size() == 1 && "
        f"self.values[0].matches('{INTEGER}')) : {none}"
        if with_numbers
        else none
    )
    rule = f"self.operator in ['In', 'NotIn'] ? (has(self.values) && self.values.size() > 0) : {otherwise}"
    return [{"rule": rule, "message": NODE_SELECTOR_VALUES if with_numbers else SELECTOR_VALUES}]


def _values_problem(operator: str, values: list[str], with_numbers: bool) -> str | None:
    if operator in SET_OPERATORS:
        ok = bool(values)
    elif with_numbers and operator in ("Gt", "Lt"):
        ok = len(values) == 1 and re.match(INTEGER, values[0]) is not None
    else:
        ok = not values
    return None if ok else (NODE_SELECTOR_VALUES if with_numbers else SELECTOR_VALUES)


def _qualified(key: str) -> str:
    problem = key_problem(key)
    if problem:
        raise ValueError(problem)
    return key


class LabelSelectorRequirement(ApiModel):
    """A label key, an operator, and values: `{key: app, operator: In, values: [web]}`."""

    model_config = cel_rules(_values_rule(with_numbers=False))

    key: QualifiedName = Field(description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="In, NotIn, Exists, DoesNotExist.")
    values: list[LabelValue] | None = Field(default=None, max_length=64, description="Values for In and NotIn.")

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        return _qualified(key)

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        problem = _values_problem(self.operator, self.values or [], with_numbers=False)
        if problem:
            raise ValueError(problem)
        return self


class LabelSelector(ApiModel):
    """Selects pods (or namespaces) by label; the requirements are ANDed. Empty selects everything."""

    model_config = cel_rules(
        [
            {
                "rule": f"!has(self.matchLabels) || self.matchLabels.all(k, k.size() <= {MAX_KEY})",
                "message": f"matchLabels keys must be at most {MAX_KEY} characters",
                "fieldPath": ".matchLabels",
            }
        ]
    )

    match_labels: dict[Annotated[str, Field(max_length=MAX_KEY)], LabelValue] | None = Field(
        default=None, max_length=16, description="Labels that must match exactly (keys checked by the operator)."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=16, description="Requirements on labels."
    )

    @field_validator("match_labels")
    @classmethod
    def _keys(cls, labels: dict[str, str] | None) -> dict[str, str] | None:
        for key in labels or {}:
            _qualified(key)
        return labels


class Toleration(ApiModel):
    """Lets the pod run on nodes with a matching taint (e.g. a GPU pool's)."""

    model_config = cel_rules(
        [
            {
                "rule": "has(self.key) || (has(self.operator) && self.operator == 'Exists')",
                "message": TOLERATION_KEYLESS,
            },
            {
                "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "message": TOLERATION_EXISTS,
                "fieldPath": ".value",
            },
            {
                "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "message": TOLERATION_SECONDS,
                "fieldPath": ".tolerationSeconds",
            },
        ]
    )

    key: QualifiedName | None = Field(default=None, description="Taint key; unset with operator Exists: every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal (default Equal).")
    value: LabelValue | None = Field(default=None, description="Taint value, for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute; unset: all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, le=31536000, description="With NoExecute: how long the pod stays after the taint appears."
    )

    @field_validator("key")
    @classmethod
    def _key(cls, key: str | None) -> str | None:
        return None if key is None else _qualified(key)

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.key is None and self.operator != "Exists":
            raise ValueError(TOLERATION_KEYLESS)
        if self.operator == "Exists" and self.value:
            raise ValueError(TOLERATION_EXISTS)
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(TOLERATION_SECONDS)
        return self


class NodeSelectorRequirement(ApiModel):
    """A node label key, an operator and values: `{key: topology.kubernetes.io/zone, operator: In, values: [a]}`."""

    model_config = cel_rules(_values_rule(with_numbers=True))

    key: QualifiedName = Field(description="The node label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="In, NotIn, Exists, DoesNotExist, Gt or Lt (Gt and Lt compare one integer)."
    )
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=64, description="Values for In and NotIn; one integer for Gt and Lt."
    )

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        return _qualified(key)

    @model_validator(mode="after")
    def _values(self) -> NodeSelectorRequirement:
        problem = _values_problem(self.operator, self.values or [], with_numbers=True)
        if problem:
            raise ValueError(problem)
        return self


class NodeFieldSelectorRequirement(ApiModel):
    """Selects a node by name: `{key: metadata.name, operator: In, values: [node-1]}`."""

    key: Literal["metadata.name"] = Field(description="Only metadata.name.")
    operator: Literal["In", "NotIn"] = Field(description="In or NotIn.")
    values: list[Name] = Field(min_length=1, max_length=1, description="Exactly one node name.")


class NodeSelectorTerm(ApiModel):
    """Requirements on a node's labels and fields, ANDed."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(
        default=None, max_length=16, description="Requirements on node labels."
    )
    match_fields: list[NodeFieldSelectorRequirement] | None = Field(
        default=None, max_length=4, description="Requirements on node fields (metadata.name)."
    )


class NodeSelector(ApiModel):
    """Terms ORed: a node matching any of them qualifies."""

    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=16, description="The terms, ORed.")


class PreferredSchedulingTerm(ApiModel):
    """A weighted preference for nodes matching a term."""

    weight: Weight = Field(description="1-100, added to the score of matching nodes.")
    preference: NodeSelectorTerm = Field(description="The term.")


class NodeAffinity(ApiModel):
    """Node affinity: requirements and weighted preferences on node labels."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="Nodes must match one of these terms."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        default=None, max_length=16, description="Nodes matching these terms are preferred."
    )


class PodAffinityTerm(ApiModel):
    """Pods matching the selector, in the topology domain named by topologyKey."""

    label_selector: LabelSelector | None = Field(default=None, description="Which pods.")
    namespace_selector: LabelSelector | None = Field(default=None, description="In which namespaces (by label).")
    namespaces: list[Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]] | None = Field(
        default=None, max_length=16, description="In which namespaces (by name); unset: the pod's own."
    )
    topology_key: QualifiedName = Field(
        description="Node label whose value is the domain, e.g. kubernetes.io/hostname."
    )
    match_label_keys: list[QualifiedName] | None = Field(
        default=None, max_length=16, description="Pod label keys whose values (from this pod) are ANDed in."
    )
    mismatch_label_keys: list[QualifiedName] | None = Field(
        default=None, max_length=16, description="Pod label keys whose values (from this pod) must differ."
    )

    @field_validator("topology_key")
    @classmethod
    def _key(cls, key: str) -> str:
        return _qualified(key)


class WeightedPodAffinityTerm(ApiModel):
    """A weighted preference for a pod affinity term."""

    weight: Weight = Field(description="1-100, added to the score of matching nodes.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(ApiModel):
    """Run near pods matching these terms."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, max_length=16, description="Terms every candidate node must satisfy."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        default=None, max_length=16, description="Terms that add to a node's score."
    )


class PodAntiAffinity(PodAffinity):
    """Run away from pods matching these terms."""


class Affinity(ApiModel):
    """Node affinity, pod affinity and pod anti-affinity, as in a Pod."""

    node_affinity: NodeAffinity | None = Field(default=None, description="Constraints on nodes.")
    pod_affinity: PodAffinity | None = Field(default=None, description="Run near these pods.")
    pod_anti_affinity: PodAntiAffinity | None = Field(default=None, description="Run away from these pods.")


class TopologySpreadConstraint(ApiModel):
    """Spread matching pods evenly over topology domains (zones, nodes)."""

    model_config = cel_rules(
        [
            {
                "rule": "!has(self.minDomains) || self.whenUnsatisfiable == 'DoNotSchedule'",
                "message": MIN_DOMAINS,
                "fieldPath": ".minDomains",
            }
        ]
    )

    max_skew: int = Field(ge=1, le=1000, description="Largest allowed difference in matching pods.")
    topology_key: QualifiedName = Field(
        description="Node label whose value is the domain, e.g. topology.kubernetes.io/zone."
    )
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="DoNotSchedule or ScheduleAnyway."
    )
    label_selector: LabelSelector | None = Field(default=None, description="Which pods count.")
    min_domains: int | None = Field(default=None, ge=1, le=1000, description="Minimum number of eligible domains.")
    node_affinity_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether the pod's node affinity limits the domains (default Honor)."
    )
    node_taints_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether node taints limit the domains (default Ignore)."
    )
    match_label_keys: list[QualifiedName] | None = Field(
        default=None, max_length=16, description="Pod label keys whose values (from this pod) narrow the selector."
    )

    @field_validator("topology_key")
    @classmethod
    def _key(cls, key: str) -> str:
        return _qualified(key)

    @model_validator(mode="after")
    def _min_domains(self) -> TopologySpreadConstraint:
        if self.min_domains is not None and self.when_unsatisfiable != "DoNotSchedule":
            raise ValueError(MIN_DOMAINS)
        return self


class LocalObjectReference(ApiModel):
    """An object in the job's namespace, by name."""

    name: Name = Field(description="Its name.")
