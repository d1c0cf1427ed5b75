"""The benchmark harness end to end on its tiny `smoke` profile (N=5, S=2, B0 20 pods, B1 at the rig's
default client QPS only).

It checks that `python -m bench.run` runs every system on the rig and writes the report files with
the keys the README and the lead's tables rely on. It never asserts on speed: a loaded CI box must
not fail it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rig import Rig

pytestmark = [pytest.mark.rig, pytest.mark.postgres]

REQUIRED = (
    "stages_per_s",
    "transition_p50_s",
    "transition_p99_s",
    "first_pod_p99_s",
    "apiserver_writes_per_stage",
    "apiserver_cpu_s_per_1000_stages",
)


def test_smoke_profile_reports_every_system(rig: Rig, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profile", "smoke", "--out", str(tmp_path)],
        cwd=rig.root,
        env=rig.env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"bench.run exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    found = sorted(tmp_path.glob("*-smoke.json"))
    assert len(found) == 1, f"expected one JSON result, found {[p.name for p in tmp_path.iterdir()]}"
    results = json.loads(found[0].read_text())

    for system in ("b0", "b1_default", "b1_tuned", "procjob"):
        assert system in results, f"no {system} in the results"
        for key in REQUIRED:
            assert key in results[system], f"{system} lacks {key}"
    for system in ("b0", "b1_default", "procjob"):
        assert "error" not in results[system], results[system].get("error")
        for key in REQUIRED:
            assert results[system][key] is not None, f"{system}.{key} was not measured"
    assert "skipped" in results["b1_tuned"]  # the smoke profile never restarts the rig
    for system in ("b0", "b1_default", "procjob"):  # each namespace gone before the next system ran
        assert results[system]["namespace_gone_s"] >= 0, f"{system}'s namespace was not waited for"

    procjob = results["procjob"]
    for key in (
        "rss_peak_mib",
        "cpu_s_per_1000_jobs",
        "cpu_s_per_1000_stages",
        "audit_lag_p99_s",
        "operator_api_requests_per_stage",
        "operator_api_requests_per_stage_total",
    ):
        assert procjob.get(key) is not None, f"procjob.{key} was not measured"
    assert results["b1_default"].get("kcm_cpu_s_per_1000_stages") is not None
    floor = results["write_floor"]
    assert floor["floor_writes_per_stage"] is not None, "the kubelet's writes come from B0"
    assert floor["floor_writes_per_stage_with_pod_gc"] is not None
    assert floor["systems"]["procjob"]["own_writes_per_stage"] is not None
    assert set(floor["systems"]["procjob"]["by_component"]) >= {"pod_create", "kubelet_status", "status_write"}
    assert procjob["audit_exact"] is True, procjob.get("audit_problems")
    # the operator ran as in a cluster: its ServiceAccount's token, the chart's RBAC (bench/identity.py)
    assert procjob["operator_identity"].startswith("serviceaccount bench-procjob"), procjob["operator_identity"]
    assert results["b0"]["pods_succeeded_seen"] == 20
    # the chart's finalizer policy was bound to procjob's namespace (the rig serves it), then removed
    assert procjob["finalizer_policy"] in ("v1", "v1beta1"), procjob["finalizer_policy"]
    name = f"procjob-bench-{procjob['namespace']}"
    for kind in ("mutatingadmissionpolicies", "mutatingadmissionpolicybindings"):
        left = rig.kubectl("get", kind, "-o", "name").stdout
        assert name not in left, left

    machine = results["machine"]
    assert machine["cores"] >= 1
    assert len(machine["load_average_before"]) == 3
    assert "kube-apiserver" in machine["versions"]
    assert set(results["ratios"]) >= {"procjob_over_b1_default", "procjob_over_b1_tuned", "procjob_over_b0"}

    stem = found[0].with_suffix("")
    assert stem.with_suffix(".md").read_text().startswith("# procjob benchmark")
    assert "Write floor" in stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".png").stat().st_size > 0
