"""The bench's write floor: derived from B0's measured kubelet writes, each system split into the
floor's components, procjob's own writes against the controller's floor; the markdown shows them."""

from __future__ import annotations

from typing import Any

from bench import floor, report


def run(writes: dict[str, int], stages: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "stages_total": stages,
        "apiserver_writes_per_stage": round(sum(writes.values()) / stages, 2),
        "apiserver_writes_by_resource": writes,
        **extra,
    }


B0 = run({"PATCH pods/status": 300, "POST pods": 100, "PUT leases": 1})
PROCJOB = run(
    {
        "POST pods": 100,
        "POST pods/binding": 100,
        "PATCH pods/status": 200,
        "PUT processingjobs/status": 150,
        "POST events": 230,
        "DELETE pods": 200,
        "POST processingjobs": 50,
        "PATCH processingjobs": 50,
    },
    operator_api_requests_per_stage={"DELETE": 1.0, "GET": 0.2, "PATCH": 0.5, "POST": 2.3, "PUT": 1.5},
)


def test_the_floor_takes_the_kubelets_writes_from_b0_and_adds_the_rest_of_a_controlled_stage() -> None:
    found = floor.write_floor({"b0": B0, "procjob": PROCJOB, "profile": "x"})
    assert found["kubelet_status_writes_per_stage"] == 3.0, "B0's PATCH pods/status, not the procjob run's 2"
    assert found["kubelet_status_measured_on"] == "b0"
    assert found["floor_writes_per_stage"] == 1 + 1 + 3 + 1
    assert found["floor_writes_per_stage_with_pod_gc"] == 6 + 2 + 1
    assert found["own_floor_writes_per_stage"] == 3.0


def test_without_b0_the_kubelets_writes_come_from_the_run_itself() -> None:
    found = floor.write_floor({"procjob": PROCJOB})
    assert (found["kubelet_status_writes_per_stage"], found["kubelet_status_measured_on"]) == (2.0, "procjob")
    assert found["floor_writes_per_stage_with_pod_gc"] == 8.0


def test_each_system_is_split_into_the_floors_components_and_compared_with_it() -> None:
    found = floor.write_floor({"b0": B0, "procjob": PROCJOB})["systems"]
    pj = found["procjob"]
    assert pj["writes_per_stage"] == 10.8
    assert pj["by_component"] == {
        "pod_create": 1.0,
        "binding": 1.0,
        "kubelet_status": 2.0,
        "status_write": 1.5,
        "events": 2.3,
        "pod_gc": 2.0,
        "other": 1.0,
    }
    assert pj["over_floor_with_pod_gc"] == round(10.8 / 9.0, 2)
    assert pj["own_writes_per_stage"] == 5.3, "every verb but GET"
    assert pj["own_over_floor"] == round(5.3 / 3.0, 2)
    assert found["b0"]["over_floor_with_pod_gc"] is None, "B0 controls nothing: no ratio"
    assert "own_writes_per_stage" not in found["b0"]


def test_nothing_measured_gives_no_floor_and_no_markdown() -> None:
    found = floor.write_floor({"b0": {"skipped": "not selected"}})
    assert found["floor_writes_per_stage"] is None
    assert found["systems"] == {}
    assert floor.markdown({"write_floor": found}, {}) == []


def test_the_report_shows_the_floor_and_procjob_against_it() -> None:
    results: dict[str, Any] = {"b0": B0, "procjob": PROCJOB}
    results["write_floor"] = floor.write_floor(results)
    lines = report._floor(results)
    assert lines[0].startswith("Write floor")
    assert "**6.00**" in lines[0]
    assert "**9.00**" in lines[0]
    [row] = [line for line in lines if line.startswith("| procjob (burst) |")]
    assert row.split(" | ")[1:4] == ["10.80", "1.20", "5.30 (1.77x)"]
    _, targets = report.judge(results)
    own = [t for t in targets if t["target"].startswith("procjob's own API writes")]
    assert own[0]["measured"] == 5.3
    assert own[0]["met"] is False
