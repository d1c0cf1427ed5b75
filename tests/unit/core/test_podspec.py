"""The pod manifest of one attempt: secure by default, owned by its job, found by its labels."""

from __future__ import annotations

import json
from typing import Any

import pytest

from procjob.core import podspec
from procjob.core.config import CoreConfig, S3Settings
from procjob.core.naming import pod_name
from procjob.core.podspec import build_pod
from procjob.core.templating import PodTooLarge, TemplateError
from procjob.models.job import ProcessingJob
from procjob.models.spec import PodMetadata, PodTemplate
from tests.unit.core.builders import JOB_NAME, JOB_NAMESPACE, JOB_UID, image_stage, make_job, spec_of

FETCH = {
    "name": "fetch",
    "uses": "fetch",
    "with": {
        "url": "https://example.org/{{ job.name }}.jpg",
        "bucket": "media",
        "maxBytes": 1024,
        "types": ["image/*"],
    },
}


def manifest(job: ProcessingJob, index: int = 0, attempt: int = 1, **kwargs: Any) -> dict[str, Any]:
    return build_pod(job, index, attempt, kwargs.pop("outputs", {}), kwargs.pop("config", CoreConfig()))


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (main,) = pod["spec"]["containers"]
    return dict(main)


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(pod)["env"]}


def test_pods_run_as_non_root_without_privileges() -> None:
    pod = manifest(make_job())
    assert container(pod)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["enableServiceLinks"] is False
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod["spec"].keys()
    assert pod["spec"]["volumes"] == [{"name": "procjob-tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    assert container(pod)["volumeMounts"] == [{"name": "procjob-tmp", "mountPath": "/tmp"}]


def test_the_user_id_comes_from_the_operator_config() -> None:
    pod = manifest(make_job(), config=CoreConfig(run_as_user=1000))
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000


@pytest.mark.parametrize(
    ("account", "automount", "expected"),
    [
        pytest.param(None, False, None, id="no serviceAccountName means no token and no account field"),
        pytest.param("reader", True, "reader", id="a serviceAccountName is used and its token mounted"),
    ],
)
def test_service_account_token(account: str | None, automount: bool, expected: str | None) -> None:
    spec = spec_of(**({"serviceAccountName": account} if account else {}))
    pod = manifest(make_job(spec))
    assert pod["spec"]["automountServiceAccountToken"] is automount
    assert pod["spec"].get("serviceAccountName") == expected


def test_labels_annotations_name_and_owner() -> None:
    stage = image_stage(podMetadata={"labels": {"team": "media"}, "annotations": {"note": "hi"}})
    pod = manifest(make_job(spec_of(stage)), attempt=3)
    meta = pod["metadata"]
    assert meta["name"] == pod_name(JOB_NAME, JOB_UID, "work", 3) == "thumbs-work-a3-0a1b2c3d"
    assert meta["namespace"] == JOB_NAMESPACE
    assert meta["labels"] == {
        "team": "media",
        "procjob.dev/job": JOB_NAME,
        "procjob.dev/job-uid": JOB_UID,
        "procjob.dev/stage": "work",
        "procjob.dev/attempt": "3",
        "app.kubernetes.io/managed-by": "procjob",
    }
    assert meta["annotations"] == {"note": "hi"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "procjob.dev/v1alpha1",
            "kind": "ProcessingJob",
            "name": JOB_NAME,
            "uid": JOB_UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_pod_metadata_cannot_override_the_operators_labels() -> None:
    """The schema refuses procjob.dev/ labels; should one get through anyway, the operator's labels win."""
    job = make_job()
    assert job.spec is not None
    sneaky = PodMetadata.model_construct(
        labels={
            "procjob.dev/job-uid": "someone-else",
            "procjob.dev/attempt": "9",
            "app.kubernetes.io/managed-by": "me",
        },
        annotations=None,
    )
    stage = job.spec.stages[0].model_copy(update={"pod_metadata": sneaky})
    job = ProcessingJob(meta=job.meta, spec=job.spec.model_copy(update={"stages": [stage]}), status=job.status)
    labels = manifest(job)["metadata"]["labels"]
    assert labels["procjob.dev/job-uid"] == JOB_UID
    assert labels["procjob.dev/attempt"] == "1"
    assert labels["app.kubernetes.io/managed-by"] == "procjob"


def test_no_pod_metadata_means_no_annotations() -> None:
    assert "annotations" not in manifest(make_job())["metadata"]


def test_an_image_stage_runs_its_image_with_rendered_command_args_and_env() -> None:
    stage = image_stage(
        "resize",
        image="registry.example.com/resize:1.4",
        command=["python", "-m", "resize"],
        args=["--in={{ stages.fetch.outputs.key }}", "--job={{ job.name }}"],
        env=[
            {"name": "INPUT_KEY", "value": "{{ stages.fetch.outputs.key }}"},
            {"name": "SIZE", "value": "{{ stages.fetch.outputs.size }}"},
            {"name": "EMPTY"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": True}}},
        ],
        envFrom=[{"prefix": "DB_", "secretRef": {"name": "db"}}],
        workingDir="/work",
        imagePullPolicy="IfNotPresent",
        resources={"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    )
    pod = manifest(
        make_job(spec_of(FETCH, stage)), index=1, attempt=2, outputs={"fetch": {"key": "raw/a.jpg", "size": 7}}
    )
    main = container(pod)
    assert main["name"] == "main"
    assert main["image"] == "registry.example.com/resize:1.4"
    assert main["command"] == ["python", "-m", "resize"]
    assert main["args"] == ["--in=raw/a.jpg", "--job=thumbs"]
    assert main["envFrom"] == [{"prefix": "DB_", "secretRef": {"name": "db"}}]
    assert main["workingDir"] == "/work"
    assert main["imagePullPolicy"] == "IfNotPresent"
    assert main["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    assert main["terminationMessagePath"] == "/dev/termination-log"
    assert main["terminationMessagePolicy"] == "File"
    assert env(pod) == {
        "PROCJOB_JOB_NAME": JOB_NAME,
        "PROCJOB_JOB_NAMESPACE": JOB_NAMESPACE,
        "PROCJOB_JOB_UID": JOB_UID,
        "PROCJOB_STAGE": "resize",
        "PROCJOB_ATTEMPT": "2",
        "PROCJOB_TERMINATION_MESSAGE_PATH": "/dev/termination-log",
        "INPUT_KEY": "raw/a.jpg",
        "SIZE": "7",
        "EMPTY": "",
        "TOKEN": {"secretKeyRef": {"name": "api", "key": "token"}},
        "MODE": {"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": True}},
    }


def test_a_minimal_image_stage_leaves_optional_container_fields_out() -> None:
    main = container(manifest(make_job()))
    assert not {"command", "args", "envFrom", "workingDir", "imagePullPolicy", "resources"} & main.keys()


def test_a_uses_stage_runs_the_worker_image_with_rendered_params_and_storage_settings() -> None:
    config = CoreConfig(
        worker_image="registry.example.com/procjob:9",
        fetch_allowed_networks=("10.0.0.0/8", "192.168.1.0/24"),
        s3=S3Settings(
            endpoint_url="http://s3.local:7070", region="eu-1", force_path_style=True, credentials_secret="s3-creds"
        ),
    )
    pod = manifest(make_job(spec_of(FETCH)), config=config)
    main = container(pod)
    assert main["image"] == "registry.example.com/procjob:9"
    assert main["command"] == ["procjob", "worker", "fetch"]
    assert "args" not in main
    variables = env(pod)
    assert json.loads(variables["PROCJOB_STAGE_PARAMS"]) == {
        "url": "https://example.org/thumbs.jpg",
        "bucket": "media",
        "maxBytes": 1024,
        "types": ["image/*"],
    }
    assert variables["PROCJOB_FETCH_ALLOWED_NETWORKS"] == "10.0.0.0/8,192.168.1.0/24"
    assert variables["AWS_ENDPOINT_URL"] == "http://s3.local:7070"
    assert variables["AWS_REGION"] == "eu-1"
    assert variables["PROCJOB_S3_FORCE_PATH_STYLE"] == "true"
    assert variables["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}}
    assert variables["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert variables["PROCJOB_S3_CREDENTIALS"] == "secret"


def test_a_uses_stage_without_storage_settings_gets_only_its_params() -> None:
    pod = manifest(make_job(spec_of({"name": "fetch", "uses": "fetch"})))
    variables = env(pod)
    assert variables["PROCJOB_STAGE_PARAMS"] == "{}"
    assert (
        not {
            "PROCJOB_FETCH_ALLOWED_NETWORKS",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "PROCJOB_S3_FORCE_PATH_STYLE",
            "AWS_ACCESS_KEY_ID",
        }
        & variables.keys()
    )
    assert variables["PROCJOB_S3_CREDENTIALS"] == "none"  # not the node's ambient credentials


STORAGE_CONFIG = CoreConfig(
    fetch_allowed_networks=("10.0.0.0/8",),
    s3=S3Settings(endpoint_url="http://s3.local:7070", region="eu-1", force_path_style=True, credentials_secret="s3"),
)
S3_ENV = {
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "PROCJOB_S3_FORCE_PATH_STYLE",
    "PROCJOB_S3_CREDENTIALS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
# What every pod gets, in this order (the worker contract), and a built-in stage its parameters too
EVERY_POD_ENV = [
    "PROCJOB_JOB_NAME",
    "PROCJOB_JOB_NAMESPACE",
    "PROCJOB_JOB_UID",
    "PROCJOB_STAGE",
    "PROCJOB_ATTEMPT",
    "PROCJOB_TERMINATION_MESSAGE_PATH",
]
CONTRACT_ENV = {*EVERY_POD_ENV, "PROCJOB_STAGE_PARAMS"}


@pytest.mark.parametrize(
    ("uses", "expected"),
    [
        pytest.param("fetch", CONTRACT_ENV | S3_ENV | {"PROCJOB_FETCH_ALLOWED_NETWORKS"}, id="fetch: S3 and SSRF"),
        pytest.param("checksum", CONTRACT_ENV | S3_ENV, id="checksum: S3 only, no SSRF exceptions"),
        pytest.param("upload", CONTRACT_ENV, id="a stage no descriptor describes gets no settings"),
    ],
)
def test_each_built_in_stage_gets_only_the_settings_its_descriptor_asks_for(uses: str, expected: set[str]) -> None:
    pod = manifest(make_job(spec_of({"name": "s", "uses": uses})), config=STORAGE_CONFIG)
    assert container(pod)["command"] == ["procjob", "worker", uses]
    assert env(pod).keys() == expected


def test_the_nodes_credentials_are_used_only_when_the_platform_opts_in() -> None:
    pod = manifest(make_job(spec_of({"name": "fetch", "uses": "fetch"})), config=CoreConfig(s3_node_credentials=True))
    assert env(pod)["PROCJOB_S3_CREDENTIALS"] == "node"


def test_the_operators_variables_come_last_so_they_win_over_the_jobs() -> None:
    stage = image_stage("work", env=[{"name": "MINE", "value": "1"}])
    names = [v["name"] for v in container(manifest(make_job(spec_of(stage))))["env"]]
    assert names[0] == "MINE"
    assert names[1:] == EVERY_POD_ENV


def test_templates_that_expand_outputs_into_a_huge_pod_are_refused_before_it_is_built() -> None:
    big = {"k": "x" * 4000}
    ref = "{{ stages.fetch.outputs.k }}" * 140  # one arg of 4 KiB expands to 560 KB
    stage = image_stage("resize", args=[ref] * 256)
    with pytest.raises(PodTooLarge, match=r"spec.stages\[resize\].args\[\d+\]: the rendered pod would exceed"):
        manifest(make_job(spec_of(FETCH, stage)), index=1, outputs={"fetch": big})


def test_a_pod_over_the_manifest_limit_is_refused_with_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # The schema's bounds keep real specs far below MAX_POD_BYTES; the check is the last line.
    monkeypatch.setattr(podspec, "MAX_POD_BYTES", 8 * 1024)
    stage = image_stage("work", env=[{"name": f"E{i}", "value": "y" * 1000} for i in range(10)])
    with pytest.raises(PodTooLarge, match=r"stage work: the rendered pod is \d+ KiB, over the limit of 8 KiB"):
        manifest(make_job(spec_of(stage)))


def test_a_missing_output_is_a_template_error() -> None:
    stage = image_stage("resize", args=["{{ stages.fetch.outputs.key }}"])
    with pytest.raises(TemplateError, match="stage 'fetch' has no output 'key'"):
        manifest(make_job(spec_of(FETCH, stage)), index=1, outputs={"fetch": {"url": "x"}})


def test_the_same_inputs_give_the_same_manifest() -> None:
    job = make_job(spec_of(FETCH))
    assert manifest(job) == manifest(job)


FULL_TEMPLATE = {
    "metadata": {"labels": {"team": "media"}, "annotations": {"note": "from the job"}},
    "spec": {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "priorityClassName": "batch-low",
        "runtimeClassName": "gvisor",
        "imagePullSecrets": [{"name": "registry"}],
        "volumes": [
            {"name": "inputs", "persistentVolumeClaim": {"claimName": "inputs", "readOnly": True}},
            {"name": "unused", "configMap": {"name": "other"}},
        ],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
        "hostNetwork": False,
    },
}


def test_a_pod_template_puts_its_fields_on_the_pod() -> None:
    stage = image_stage(
        volumeMounts=[{"name": "inputs", "mountPath": "/data", "readOnly": True}],
        securityContext={"readOnlyRootFilesystem": False},
        podTemplate={"spec": {"nodeSelector": {"zone": "a"}, "priorityClassName": "batch-high"}},
    )
    pod = manifest(make_job(spec_of(stage, podTemplate=FULL_TEMPLATE)))
    spec = pod["spec"]
    template = FULL_TEMPLATE["spec"]
    assert spec["nodeSelector"] == {"type": "kwok", "zone": "a"}
    assert spec["priorityClassName"] == "batch-high"
    for field in ("tolerations", "affinity", "topologySpreadConstraints", "runtimeClassName", "imagePullSecrets"):
        assert spec[field] == template[field], field
    assert spec["hostNetwork"] is False
    assert spec["volumes"] == [
        {"name": "inputs", "persistentVolumeClaim": {"claimName": "inputs", "readOnly": True}},
        {"name": "procjob-tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    assert container(pod)["volumeMounts"] == [
        {"name": "inputs", "mountPath": "/data", "readOnly": True},
        {"name": "procjob-tmp", "mountPath": "/tmp"},
    ]
    assert spec["securityContext"]["runAsUser"] == 1000
    assert container(pod)["securityContext"]["readOnlyRootFilesystem"] is False
    assert pod["metadata"]["labels"]["team"] == "media"
    assert pod["metadata"]["annotations"] == {"note": "from the job"}
    # the operator's own parts are untouched
    assert (spec["restartPolicy"], spec["automountServiceAccountToken"], spec["enableServiceLinks"]) == (
        "Never",
        False,
        False,
    )
    assert [c["name"] for c in spec["containers"]] == ["main"]
    assert "serviceAccountName" not in spec


def test_a_template_cannot_override_the_operators_labels() -> None:
    """The schema refuses procjob.dev/ labels; should one get through anyway, the operator's labels win."""
    job = make_job()
    assert job.spec is not None
    sneaky = PodTemplate.model_construct(
        metadata=PodMetadata.model_construct(labels={"procjob.dev/job-uid": "someone-else"}, annotations=None),
        spec=None,
    )
    job = ProcessingJob(meta=job.meta, spec=job.spec.model_copy(update={"pod_template": sneaky}), status=job.status)
    assert manifest(job)["metadata"]["labels"]["procjob.dev/job-uid"] == JOB_UID
