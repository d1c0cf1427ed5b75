"""The fan-out benchmark end to end at a tiny size (12 items, parallelism 4): B1 (one Indexed Job)
and procjob (`forEach`, with and without the audit database) each run on the rig, and the report has
the keys the README's fan-out table reads. Speed is never asserted; the parallelism bound is (a
property of both systems, not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rig import Rig

pytestmark = [pytest.mark.rig, pytest.mark.postgres]

KEYS = ("items", "parallelism", "pods_seen", "pods_per_s", "steady_pods_per_s", "first_pod_s", "total_s", "peak_live")


def test_fanout_profile_reports_every_system(rig: Rig, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--items", "12", "--parallelism", "4", "--out", str(tmp_path)],
        cwd=rig.root,
        env=rig.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"bench.fanout exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    found = sorted(tmp_path.glob("*-fanout.json"))
    assert len(found) == 1, f"expected one JSON result, found {[p.name for p in tmp_path.iterdir()]}"
    results = json.loads(found[0].read_text())
    for system in ("b1", "procjob", "procjob_audit"):
        assert "error" not in results[system], results[system].get("error")
        for key in KEYS:
            assert key in results[system], f"{system} lacks {key}"
        assert results[system]["pods_seen"] == 12
        assert results[system]["peak_live"] <= 4, f"{system} ran more pods at once than its parallelism"
    for key in ("operator_cpu_s", "operator_rss_peak_mib"):
        assert key in results["procjob"]
    assert set(results["ratios"]) == {"procjob_vs_b1", "procjob_audit_vs_b1"}
    assert "procjob / B1" in found[0].with_suffix(".md").read_text()
