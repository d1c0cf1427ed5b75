"""The pydantic models: what a spec may say, errors that name the field, and the wire form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from procjob.models.audit import AuditEntry, AuditRecord
from procjob.models.job import JobMeta, ProcessingJob, describe_validation_error
from procjob.models.spec import MAX_RULES, MAX_STAGES, PodGC, ProcessingJobSpec, RetryAction
from procjob.models.status import MAX_ATTEMPTS_KEPT, Attempt, AttemptState, ProcessingJobStatus

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def image(name: str = "work", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.example.com/work:1", **fields}


def spec(*stages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"stages": list(stages) or [image()], **fields}


def problems(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ProcessingJobSpec.model_validate(body)
    return describe_validation_error(caught.value, "spec")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            spec({"name": "a", "image": "x", "uses": "fetch"}),
            "spec.stages[0]: Value error, set exactly one of image or uses",
            id="a stage with both image and uses is refused",
        ),
        pytest.param(
            spec({"name": "a"}),
            "spec.stages[0]: Value error, set exactly one of image or uses",
            id="a stage with neither image nor uses is refused",
        ),
        pytest.param(
            spec(image("a"), image("b"), image("a")),
            "spec.stages: Value error, stage names must be unique: 'a' appears twice",
            id="duplicate stage names are refused at spec.stages",
        ),
        pytest.param(
            spec(image("ok"), image("Not_A_Label")),
            "spec.stages[1].name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
            id="a stage name that is not a DNS label is refused",
        ),
        pytest.param(
            spec(image("a" * 41)),
            "spec.stages[0].name: String should have at most 40 characters",
            id="a stage name over 40 characters is refused",
        ),
        pytest.param(
            spec(retry={"limit": -1}),
            "spec.retry.limit: Input should be greater than or equal to 0",
            id="a negative retry limit is refused",
        ),
        pytest.param(
            spec(image(retry={"limit": 51})),
            "spec.stages[0].retry.limit: Input should be less than or equal to 50",
            id="a stage retry limit over 50 is refused",
        ),
        pytest.param(
            spec(retry={"backoff": {"initialSeconds": 1}, "delaysSeconds": [1, 4]}),
            "spec.retry: Value error, set backoff or delaysSeconds, not both",
            id="backoff and delaysSeconds together are refused",
        ),
        pytest.param(
            spec(retry={"backoff": {"factor": 0.5}}),
            "spec.retry.backoff.factor: Input should be greater than or equal to 1",
            id="a backoff factor below 1 is refused",
        ),
        pytest.param(
            spec(retry={"rules": [{"action": "Retry"}]}),
            "spec.retry.rules[0]: Value error, a rule needs onExitCodes or onReasons",
            id="a rule without a matcher is refused",
        ),
        pytest.param(
            spec(retry={"rules": [{"onReasons": ["Sneezed"], "action": "Retry"}]}),
            "spec.retry.rules[0].onReasons[0]: Input should be",
            id="an unknown failure reason is refused",
        ),
        pytest.param(
            spec(retry={"rules": [{"onExitCodes": [256], "action": "Retry"}]}),
            "spec.retry.rules[0].onExitCodes[0]: Input should be less than or equal to 255",
            id="an exit code over 255 is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {"procjob.dev/job": "x"}})),
            "spec.stages[0].podMetadata.labels: Value error, labels under procjob.dev/ are reserved for the operator",
            id="a label under procjob.dev/ is reserved",
        ),
        pytest.param(
            spec(*[image(f"s{i}") for i in range(MAX_STAGES + 1)]),
            "spec.stages: List should have at most 32 items after validation, not 33",
            id="more than 32 stages are refused",
        ),
        pytest.param(
            spec(stages=[]),
            "spec.stages: List should have at least 1 item after validation, not 0",
            id="a job needs a stage",
        ),
        pytest.param(
            spec(retry={"rules": [{"onExitCodes": [1], "action": "Retry"}] * (MAX_RULES + 1)}),
            "spec.retry.rules: List should have at most 16 items after validation, not 17",
            id="more than 16 rules are refused",
        ),
        pytest.param(
            spec(retry={"delaysSeconds": [1] * 51}),
            "spec.retry.delaysSeconds: List should have at most 50 items after validation, not 51",
            id="more than 50 explicit delays are refused",
        ),
        pytest.param(
            spec(image(args=["a"] * 257)),
            "spec.stages[0].args: List should have at most 256 items after validation, not 257",
            id="more than 256 args are refused",
        ),
        pytest.param(
            spec(image(env=[{"name": f"V{i}", "value": "x"} for i in range(129)])),
            "spec.stages[0].env: List should have at most 128 items after validation, not 129",
            id="more than 128 env variables are refused",
        ),
        pytest.param(
            spec(image(command=["x" * 4097])),
            "spec.stages[0].command[0]: String should have at most 4096 characters",
            id="an over-long command string is refused",
        ),
        pytest.param(
            spec(image(podMetadata={"labels": {f"k{i}": "v" for i in range(33)}})),
            "spec.stages[0].podMetadata.labels: Dictionary should have at most 32 items after validation",
            id="more than 32 pod labels are refused",
        ),
        pytest.param(
            spec(image() | {"with": {"a": 1}}),
            "spec.stages[0]: Value error, with is for built-in stages (uses)",
            id="with on an image stage is refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])),
            "spec.stages[0].env[0]: Value error, set value or valueFrom",
            id="an env variable with value and valueFrom is refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "A", "valueFrom": {}}])),
            "spec.stages[0].env[0].valueFrom: Value error, set exactly one of secretKeyRef or configMapKeyRef",
            id="an env source with no reference is refused",
        ),
        pytest.param(
            spec(image(env=[{"name": "1A", "value": "x"}])),
            "spec.stages[0].env[0].name: String should match pattern",
            id="an env name starting with a digit is refused",
        ),
        pytest.param(
            spec(image(envFrom=[{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}])),
            "spec.stages[0].envFrom[0]: Value error, set exactly one of secretRef or configMapRef",
            id="an envFrom with two sources is refused",
        ),
        pytest.param(
            spec(image(resources={"limits": {"memory": "lots"}})),
            "spec.stages[0].resources.limits.memory: String should match pattern",
            id="a resource quantity that is not a quantity is refused",
        ),
        pytest.param(
            spec(image(imagePullPolicy="Sometimes")),
            "spec.stages[0].imagePullPolicy: String should match pattern",
            id="an unknown image pull policy is refused",
        ),
        pytest.param(
            spec(image(timeoutSeconds=0)),
            "spec.stages[0].timeoutSeconds: Input should be greater than or equal to 1",
            id="a zero attempt timeout is refused",
        ),
        pytest.param(spec(podGC="Sometimes"), "spec.podGC: Input should be", id="an unknown podGC is refused"),
        pytest.param(
            spec(serviceAccountName="Admin!"),
            "spec.serviceAccountName: String should match pattern",
            id="a service account name that is not a DNS label is refused",
        ),
        pytest.param(
            spec(image(hostNetwork=True)),
            "spec.stages[0].hostNetwork: Extra inputs are not permitted",
            id="a field the spec does not have (hostNetwork) is refused, not dropped",
        ),
        pytest.param(
            spec(privileged=True),
            "spec.privileged: Extra inputs are not permitted",
            id="an unknown spec field is refused",
        ),
    ],
)
def test_bad_specs_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    assert problems(body).startswith(message)


def test_every_problem_is_reported_on_its_own_line() -> None:
    text = problems(spec(image("Bad"), image("ok", timeoutSeconds=0), retry={"limit": -1}))
    assert text.split("; ") == [
        "spec.stages[0].name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        "spec.stages[1].timeoutSeconds: Input should be greater than or equal to 1",
        "spec.retry.limit: Input should be greater than or equal to 0",
    ]


FULL: dict[str, Any] = {
    "priority": 5,
    "activeDeadlineSeconds": 3600,
    "podGC": "OnCompletion",
    "serviceAccountName": "reader",
    "retry": {
        "limit": 3,
        "backoff": {"initialSeconds": 1, "factor": 2, "maxSeconds": 300, "jitter": 0.1},
        "rules": [
            {"onExitCodes": [2], "action": "FailJob"},
            {"onReasons": ["Evicted", "PodDeleted"], "action": "Ignore"},
        ],
    },
    "stages": [
        {
            "name": "fetch",
            "uses": "fetch",
            "with": {"url": "https://example.org/a.jpg", "bucket": "media", "contentTypes": ["image/*"]},
        },
        {
            "name": "resize",
            "image": "registry.example.com/resize:1.4",
            "command": ["python", "-m", "resize"],
            "args": ["--fast"],
            "env": [
                {"name": "INPUT_KEY", "value": "{{ stages.fetch.outputs.key }}"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token", "optional": True}}},
            ],
            "envFrom": [{"prefix": "DB_", "configMapRef": {"name": "db"}}],
            "workingDir": "/work",
            "imagePullPolicy": "IfNotPresent",
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "timeoutSeconds": 600,
            "startupTimeoutSeconds": 120,
            "retry": {"limit": 5, "delaysSeconds": [1, 4, 8]},
            "podMetadata": {"labels": {"team": "media"}, "annotations": {"note": "x"}},
        },
    ],
}


def test_a_full_spec_parses_and_round_trips_to_the_wire_form() -> None:
    parsed = ProcessingJobSpec.model_validate(FULL)
    assert parsed.to_api() == {**FULL, "suspend": False, "cancel": False} | {
        "stages": [FULL["stages"][0] | {"startupTimeoutSeconds": 300}, FULL["stages"][1]]
    }
    assert parsed.stages[0].with_ == {
        "url": "https://example.org/a.jpg",
        "bucket": "media",
        "contentTypes": ["image/*"],
    }
    assert parsed.retry is not None
    assert parsed.retry.rules is not None
    assert parsed.retry.rules[1].action == RetryAction.IGNORE


def test_defaults() -> None:
    parsed = ProcessingJobSpec.model_validate(spec())
    assert (parsed.priority, parsed.suspend, parsed.cancel, parsed.pod_gc) == (0, False, False, PodGC.ON_SUCCESS)
    assert (parsed.retry, parsed.active_deadline_seconds, parsed.service_account_name) == (None, None, None)
    assert parsed.stages[0].startup_timeout_seconds == 300
    assert parsed.stages[0].timeout_seconds is None


def test_fields_may_be_given_by_python_name_too() -> None:
    parsed = ProcessingJobSpec.model_validate({"stages": [image()], "pod_gc": "Never", "active_deadline_seconds": 5})
    assert (parsed.pod_gc, parsed.active_deadline_seconds) == (PodGC.NEVER, 5)


def test_models_are_frozen() -> None:
    parsed = ProcessingJobSpec.model_validate(spec())
    with pytest.raises(ValidationError, match="frozen"):
        parsed.priority = 3  # type: ignore[misc]


META = {
    "name": "thumbs",
    "namespace": "media",
    "uid": "u-1",
    "generation": 4,
    "creationTimestamp": "2025-03-14T09:00:00Z",
    "resourceVersion": "77",
}


class TestProcessingJob:
    def test_a_valid_object_parses(self) -> None:
        job = ProcessingJob.from_api(
            {"metadata": META | {"finalizers": ["procjob.dev/audit"]}, "spec": spec(), "status": {"attempts": 2}}
        )
        assert job.meta == JobMeta(
            name="thumbs",
            namespace="media",
            uid="u-1",
            generation=4,
            creation_time=T0,
            resource_version="77",
            finalizers=("procjob.dev/audit",),
        )
        assert job.meta.key == "media/thumbs"
        assert job.spec is not None
        assert job.status.attempts == 2
        assert job.spec_error is None

    def test_a_bad_spec_is_kept_as_an_error_naming_the_field(self) -> None:
        job = ProcessingJob.from_api({"metadata": META, "spec": spec(image("Bad"))})
        assert job.spec is None
        assert job.spec_error == "spec.stages[0].name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
        assert job.status == ProcessingJobStatus()

    def test_a_missing_spec_is_an_error_too(self) -> None:
        job = ProcessingJob.from_api({"metadata": META})
        assert job.spec_error == "spec.stages: Field required"

    def test_metadata_defaults_and_deletion_time(self) -> None:
        meta = JobMeta.from_api(
            {
                "name": "j",
                "uid": "u",
                "creationTimestamp": "2025-03-14T09:00:00Z",
                "deletionTimestamp": "2025-03-14T09:00:00Z",
            }
        )
        assert (meta.namespace, meta.generation, meta.finalizers, meta.resource_version) == ("default", 1, (), None)
        assert meta.deletion_time == T0

    def test_metadata_needs_a_creation_time(self) -> None:
        with pytest.raises(ValueError, match=r"metadata.creationTimestamp is missing"):
            JobMeta.from_api({"name": "j", "uid": "u"})

    def test_an_unreadable_status_raises(self) -> None:
        with pytest.raises(ValidationError):
            ProcessingJob.from_api({"metadata": META, "spec": spec(), "status": {"attempts": -1}})


class TestStatus:
    def test_the_status_round_trips_with_camel_case_keys(self) -> None:
        body = {
            "phase": "Retrying",
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "Unknown",
                    "reason": "BackoffWaiting",
                    "message": "m",
                    "lastTransitionTime": "2025-03-14T09:00:00Z",
                    "observedGeneration": 1,
                }
            ],
            "startTime": "2025-03-14T09:00:00Z",
            "currentStage": "resize",
            "progress": "1/1",
            "attempts": 1,
            "stages": [
                {
                    "name": "resize",
                    "state": "BackoffWaiting",
                    "attemptCount": 1,
                    "chargedFailures": 1,
                    "attempts": [
                        {
                            "attempt": 1,
                            "podName": "p",
                            "podUid": "u",
                            "state": "Failed",
                            "createTime": "2025-03-14T09:00:00Z",
                            "finishTime": "2025-03-14T09:00:00Z",
                            "exitCode": 1,
                            "reason": "Error",
                            "charged": True,
                        }
                    ],
                    "nextAttemptTime": "2025-03-14T09:00:00Z",
                    "lastRetryDecision": {
                        "rule": "default",
                        "action": "Retry",
                        "failureReason": "Error",
                        "exitCode": 1,
                        "delaySeconds": 4.0,
                        "retriesLeft": 2,
                    },
                    "outputs": {"any": {"json": [1, None]}},
                }
            ],
            "queue": {"position": 2},
            "audit": {
                "lastSeq": 2,
                "flushedSeq": 1,
                "pending": [
                    {
                        "seq": 2,
                        "type": "AttemptFailed",
                        "reason": "Error",
                        "message": "",
                        "stage": "resize",
                        "attempt": 1,
                        "podName": "p",
                        "exitCode": 1,
                        "time": "2025-03-14T09:00:00Z",
                        "detail": {"k": "v"},
                    }
                ],
                "deletionRecorded": False,
            },
        }
        parsed = ProcessingJobStatus.model_validate(body)
        assert parsed.to_api() == body

    def test_an_empty_status_is_the_default(self) -> None:
        assert ProcessingJobStatus.model_validate({}).to_api() == {
            "attempts": 0,
            "conditions": [],
            "stages": [],
            "audit": {"lastSeq": 0, "flushedSeq": 0, "pending": [], "deletionRecorded": False},
        }

    def test_the_attempt_list_is_bounded(self) -> None:
        attempt = Attempt(attempt=1, pod_name="p", state=AttemptState.FAILED, create_time=T0).to_api()
        with pytest.raises(ValidationError, match=r"stages\.0\.attempts"):
            ProcessingJobStatus.model_validate(
                {"stages": [{"name": "s", "state": "Failed", "attempts": [attempt] * (MAX_ATTEMPTS_KEPT + 1)}]}
            )


def test_audit_entries_take_wire_or_python_names() -> None:
    wire = AuditEntry.model_validate({"seq": 1, "type": "JobStarted", "podName": "p", "exitCode": 0, "time": T0})
    python = AuditEntry.model_validate({"seq": 1, "type": "JobStarted", "pod_name": "p", "exit_code": 0, "time": T0})
    assert wire == python
    assert wire.model_dump(by_alias=True)["podName"] == "p"
    record = AuditRecord(job_uid="u", namespace="n", name="j", entry=wire)
    assert record.entry.seq == 1
    with pytest.raises(ValidationError):
        AuditEntry.model_validate({"seq": 0, "type": "X", "time": T0})
