"""`PodObservation.from_api`: the few facts of a Pod object the core decides on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from procjob.core.observe import JobRef, PodObservation, owning_job
from tests.unit.core.builders import JOB_UID

T0 = "2025-03-14T09:00:00Z"
T1 = "2025-03-14T09:00:05Z"
T2 = "2025-03-14T09:01:00Z"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pod(status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    meta = {
        "name": "thumbs-work-a1-0a1b2c3d",
        "uid": "pod-1",
        "creationTimestamp": T0,
        "labels": {
            "procjob.dev/job": "thumbs",
            "procjob.dev/job-uid": JOB_UID,
            "procjob.dev/stage": "work",
            "procjob.dev/attempt": "1",
        },
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "not-the-controller"},
            {"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", "uid": JOB_UID, "controller": True},
        ],
        **metadata,
    }
    return {"metadata": meta, "spec": {"containers": [{"name": "main"}]}, "status": status or {}}


def container(state: dict[str, Any], name: str = "main") -> dict[str, Any]:
    return {"name": name, "state": state, "ready": False, "restartCount": 0}


BASE: dict[str, Any] = {
    "name": "thumbs-work-a1-0a1b2c3d",
    "uid": "pod-1",
    "job_uid": JOB_UID,
    "owner_uid": JOB_UID,
    "stage": "work",
    "attempt": 1,
    "created": at(T0),
    "containers": ("main",),
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            pod({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}),
            PodObservation(**BASE),
            id="a freshly scheduled pending pod has only identity facts",
        ),
        pytest.param(
            pod(
                {
                    "phase": "Pending",
                    "startTime": T0,
                    "containerStatuses": [
                        container(
                            {
                                "waiting": {
                                    "reason": "ImagePullBackOff",
                                    "message": 'Back-off pulling image "registry.example.com/nope:1"',
                                }
                            }
                        )
                    ],
                }
            ),
            PodObservation(
                **BASE,
                started=at(T0),
                waiting_reason="ImagePullBackOff",
                waiting_message='Back-off pulling image "registry.example.com/nope:1"',
            ),
            id="a pending pod pulling an image reports the waiting reason and message",
        ),
        pytest.param(
            pod(
                {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 Insufficient memory.",
                        }
                    ],
                }
            ),
            PodObservation(**BASE, unschedulable="0/3 nodes are available: 3 Insufficient memory."),
            id="an unschedulable pod carries the scheduler's message",
        ),
        pytest.param(
            pod({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}),
            PodObservation(**BASE, unschedulable="unschedulable"),
            id="an unschedulable pod without a message is still unschedulable",
        ),
        pytest.param(
            pod(
                {
                    "phase": "Running",
                    "startTime": T0,
                    "containerStatuses": [container({"running": {"startedAt": T1}})],
                }
            ),
            PodObservation(**BASE, phase="Running", started=at(T1)),
            id="a running pod started when its container started, not when the pod did",
        ),
        pytest.param(
            pod(
                {
                    "phase": "Succeeded",
                    "startTime": T0,
                    "containerStatuses": [
                        container(
                            {
                                "terminated": {
                                    "exitCode": 0,
                                    "reason": "Completed",
                                    "message": '{"key": "raw/thumbs.jpg"}',
                                    "startedAt": T1,
                                    "finishedAt": T2,
                                }
                            }
                        )
                    ],
                }
            ),
            PodObservation(
                **BASE,
                phase="Succeeded",
                started=at(T1),
                finished=at(T2),
                exit_code=0,
                terminated_reason="Completed",
                termination_message='{"key": "raw/thumbs.jpg"}',
            ),
            id="a succeeded pod has exit code 0 and its termination message",
        ),
        pytest.param(
            pod(
                {
                    "phase": "Failed",
                    "containerStatuses": [
                        container({"waiting": {"reason": "ignored"}}, name="sidecar"),
                        container(
                            {"terminated": {"exitCode": 3, "reason": "Error", "startedAt": T1, "finishedAt": T2}}
                        ),
                    ],
                }
            ),
            PodObservation(
                **BASE, phase="Failed", started=at(T1), finished=at(T2), exit_code=3, terminated_reason="Error"
            ),
            id="a failed pod reports the main container, not another one",
        ),
        pytest.param(
            pod(
                {
                    "phase": "Failed",
                    "containerStatuses": [
                        container({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, name="work")
                    ],
                }
            ),
            PodObservation(**BASE, phase="Failed", exit_code=137, terminated_reason="OOMKilled"),
            id="without a container named main the first container status counts",
        ),
        pytest.param(
            pod(
                {
                    "phase": "Failed",
                    "reason": "Evicted",
                    "message": "The node was low on resource: memory.",
                    "conditions": [
                        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"},
                    ],
                }
            ),
            PodObservation(
                **BASE,
                phase="Failed",
                status_reason="Evicted",
                status_message="The node was low on resource: memory.",
                disruption="TerminationByKubelet",
            ),
            id="an evicted pod carries the status reason and the DisruptionTarget reason",
        ),
        pytest.param(
            pod({"phase": "Running", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
            PodObservation(**BASE, phase="Running", disruption="DisruptionTarget"),
            id="a DisruptionTarget condition without a reason is named DisruptionTarget",
        ),
        pytest.param(
            pod({"phase": "Running", "conditions": [{"type": "DisruptionTarget", "status": "False"}]}),
            PodObservation(**BASE, phase="Running"),
            id="a DisruptionTarget condition that is False is no disruption",
        ),
        pytest.param(
            pod({"phase": "Running"}, deletionTimestamp=T2, deletionGracePeriodSeconds=30),
            PodObservation(**BASE, phase="Running", deleting=True, deletion_time=at(T2), grace_seconds=30),
            id="a pod with a deletionTimestamp is deleting, until then and with that grace",
        ),
        pytest.param(
            pod({"phase": "Running"}, namespace="media"),
            PodObservation(**BASE, phase="Running", namespace="media"),
            id="the namespace is kept",
        ),
        pytest.param(
            pod(
                {"phase": "Running"},
                ownerReferences=[{"apiVersion": "batch/v1", "kind": "Job", "uid": JOB_UID, "controller": True}],
            ),
            PodObservation(**{**BASE, "owner_uid": None}, phase="Running"),
            id="a controller of another kind is no owner, even with the job's UID",
        ),
        pytest.param(
            pod(
                {"phase": "Running"},
                ownerReferences=[{"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", "uid": JOB_UID}],
            ),
            PodObservation(**{**BASE, "owner_uid": None}, phase="Running"),
            id="an ownerReference that is not the controller is no owner",
        ),
        pytest.param(
            {"metadata": {"name": "bare", "uid": "u"}},
            PodObservation(name="bare", uid="u"),
            id="a pod without labels, owner or status is an unowned pending pod",
        ),
        pytest.param(
            {},
            PodObservation(name="", uid=""),
            id="an empty object does not raise",
        ),
        pytest.param(
            pod(None, labels={"procjob.dev/attempt": "one"}, ownerReferences=None),
            PodObservation(name=BASE["name"], uid="pod-1", created=at(T0), containers=("main",)),
            id="an attempt label that is not a number is ignored",
        ),
    ],
)
def test_from_api(body: dict[str, Any], expected: PodObservation) -> None:
    assert PodObservation.from_api(body) == expected


@pytest.mark.parametrize(
    ("phase", "deleting", "terminal", "live"),
    [
        pytest.param("Pending", False, False, True, id="a pending pod is live"),
        pytest.param("Running", False, False, True, id="a running pod is live"),
        pytest.param("Running", True, False, False, id="a running pod being deleted is not live"),
        pytest.param("Succeeded", False, True, False, id="a succeeded pod is terminal"),
        pytest.param("Failed", False, True, False, id="a failed pod is terminal"),
    ],
)
def test_terminal_and_live(phase: str, deleting: bool, terminal: bool, live: bool) -> None:
    observed = PodObservation(name="p", uid="u", phase=phase, deleting=deleting)
    assert (observed.terminal, observed.live) == (terminal, live)


def test_times_are_timezone_aware() -> None:
    observed = PodObservation.from_api(pod({"phase": "Running"}))
    assert observed.created == datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def test_a_deletion_time_alone_makes_an_observation_deleting() -> None:
    observed = PodObservation(name="p", uid="u", phase="Running", deletion_time=at(T2))
    assert observed.deleting
    assert not observed.live


def test_a_grace_period_that_is_not_an_integer_is_ignored() -> None:
    observed = PodObservation.from_api(pod({"phase": "Running"}, deletionGracePeriodSeconds=True))
    assert observed.grace_seconds is None


OWNER = {"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", "name": "thumbs", "uid": JOB_UID}


def owned(**metadata: Any) -> dict[str, Any]:
    """A pod as the operator makes it: in `media`, controlled by job media/thumbs, labelled for it."""
    fields: dict[str, Any] = {"namespace": "media", "ownerReferences": [{**OWNER, "controller": True}]}
    return pod(None, **{**fields, **metadata})


LABELS = {"procjob.dev/job": "thumbs", "procjob.dev/job-uid": JOB_UID}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(owned(), JobRef("media", "thumbs", JOB_UID), id="a pod the operator made belongs to its job"),
        pytest.param(
            owned(
                ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "uid": "c"}, {**OWNER, "controller": True}]
            ),
            JobRef("media", "thumbs", JOB_UID),
            id="other, non-controller references do not matter",
        ),
        pytest.param(owned(ownerReferences=None), None, id="a pod with no owner belongs to no job"),
        pytest.param(owned(ownerReferences=[OWNER]), None, id="an owner that is not the controller is not enough"),
        pytest.param(
            owned(ownerReferences=[{**OWNER, "controller": "true"}]), None, id="controller must be the boolean true"
        ),
        pytest.param(
            owned(ownerReferences=[{**OWNER, "kind": "Job", "controller": True}]),
            None,
            id="a controller of another kind",
        ),
        pytest.param(
            owned(ownerReferences=[{**OWNER, "apiVersion": "evil.dev/v1alpha1", "controller": True}]),
            None,
            id="a ProcessingJob of another API group",
        ),
        pytest.param(
            owned(ownerReferences=[{**OWNER, "apiVersion": "procjob.dev", "controller": True}]),
            None,
            id="an apiVersion without a version",
        ),
        pytest.param(
            owned(ownerReferences=[{**OWNER, "uid": "", "controller": True}]), None, id="a controller without a UID"
        ),
        pytest.param(
            owned(ownerReferences=[{**OWNER, "name": None, "controller": True}]), None, id="a controller without a name"
        ),
        pytest.param(
            owned(labels={**LABELS, "procjob.dev/job-uid": "another-uid"}),
            None,
            id="a job-uid label that disagrees with the controller",
        ),
        pytest.param(
            owned(labels={**LABELS, "procjob.dev/job": "other"}),
            None,
            id="a job label that disagrees with the controller",
        ),
        pytest.param(
            owned(labels={"procjob.dev/job-uid": JOB_UID}),
            None,
            id="a pod with only the job-uid label belongs to no job",
        ),
        pytest.param(owned(namespace=None), None, id="a pod without a namespace belongs to no job"),
        pytest.param({}, None, id="an empty object belongs to no job"),
    ],
)
def test_owning_job(body: dict[str, Any], expected: JobRef | None) -> None:
    assert owning_job(body) == expected


def test_the_containers_whose_logs_an_archive_keeps_are_the_init_containers_then_the_containers() -> None:
    body = pod({"phase": "Succeeded"})
    body["spec"] = {
        "initContainers": [{"name": "setup"}, {"image": "no-name"}, "not a container"],
        "containers": [{"name": "main"}, {"name": ""}, {"name": 7}],
    }
    assert PodObservation.from_api(body).containers == ("setup", "main")
    assert PodObservation.from_api({**body, "spec": None}).containers == ()
    assert not PodObservation.from_api(body).log_archived  # only the controller's archive says so
