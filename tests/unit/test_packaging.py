"""The image's install steps and the shipped artifacts that need no cluster.

No Docker engine runs here, so `test_the_image_install_steps` repeats what the Dockerfile does:
copy the build context the .dockerignore lets through, build the wheel (`pip wheel --no-deps`),
install it into a fresh virtualenv, and run the image's entry points from that venv. It is the
one slow test of this file (about 30-60 s: the virtualenv installs the dependencies).

The Grafana dashboard may only query metrics that adapters/metrics.py defines.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
METRICS = ROOT / "operator" / "procjob" / "adapters" / "metrics.py"
DASHBOARD = ROOT / "dashboards" / "procjob.json"
KINDS = {"Counter", "Gauge", "Histogram"}


# ------------------------------------------------------------------------------------ image
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_builds_a_pinned_multi_stage_non_root_image() -> None:
    instructions = dockerfile_instructions()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in instructions if word == "ARG" and "=" in rest
    }
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert stages[0] == "${PYTHON_IMAGE} AS builder"
    assert "${PYTHON_IMAGE} AS runtime" in stages
    assert stages[-1] == "runtime", "the default (last) stage is the runtime image"
    runtime = instructions[
        next(i for i, (w, r) in enumerate(instructions) if (w, r) == ("FROM", "${PYTHON_IMAGE} AS runtime")) :
    ]
    runtime = runtime[: next(i for i, (w, _) in enumerate(runtime[1:], 1) if w == "FROM")]
    assert ("USER", "65532:65532") in runtime
    assert ("ENTRYPOINT", '["procjob"]') in runtime
    assert ("CMD", '["run"]') in runtime
    assert ("COPY", "--from=builder /opt/procjob /opt/procjob") in runtime
    assert not [r for w, r in runtime if w == "RUN"], "the runtime stage runs nothing (no compiler, no pip)"
    labels = " ".join(r for w, r in runtime if w == "LABEL")
    for key in ("source", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    builder = " ".join(r for w, r in instructions if w == "RUN")
    assert "python -m pip wheel --no-deps --wheel-dir /wheels ." in builder
    assert "python -m venv /opt/procjob" in builder


def _dockerignore() -> list[tuple[bool, str]]:
    """(exclude?, pattern) in order; the last matching pattern decides, as in Docker."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((not line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def _matches(pattern: str, rel: str) -> bool:
    """A pattern matches a path or any directory above it (`**/` matches at any depth)."""
    parts = rel.split("/")
    for candidate in ("/".join(parts[: i + 1]) for i in range(len(parts))):
        if fnmatch.fnmatchcase(candidate, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], pattern[3:]):
            return True
    return False


def build_context(destination: Path) -> Path:
    """Copy the files a `docker build .` would send: what .dockerignore lets through."""
    rules = _dockerignore()

    def excluded(rel: str) -> bool:
        result = False
        for exclude, pattern in rules:
            if _matches(pattern, rel):
                result = exclude
        return result

    def may_hold_included(rel: str) -> bool:
        return any(not ex and (p == rel or p.startswith(rel + "/")) for ex, p in rules)

    for dirpath, dirnames, filenames in os.walk(ROOT):
        base = Path(dirpath).relative_to(ROOT).as_posix()
        prefix = "" if base == "." else base + "/"
        dirnames[:] = [d for d in dirnames if not excluded(prefix + d) or may_hold_included(prefix + d)]
        for name in filenames:
            rel = prefix + name
            if not excluded(rel):
                target = destination / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)
    return destination


@pytest.mark.timeout(300)
def test_the_image_install_steps(tmp_path: Path) -> None:
    """Dockerfile, builder stage: wheel -> venv; runtime stage: the entry points (slow: ~30-60 s)."""
    context = build_context(tmp_path / "context")
    top = sorted(p.name for p in context.iterdir())
    assert top == ["README.md", "operator", "pyproject.toml"], top
    assert not list(context.rglob("__pycache__"))
    assert not list(context.rglob("*.egg-info"))

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(context)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = wheels.glob("procjob-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / "bin"
    install = subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    # Run as the image does: only the venv on PATH, from a neutral directory, no source tree.
    env = {"PATH": f"{bindir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
        )

    where = run("python", "-c", "import procjob, os; print(os.path.dirname(procjob.__file__))")
    assert where.stdout.strip().startswith(str(env_dir)), "procjob must come from the venv, not the source tree"
    migrations = sorted(Path(where.stdout.strip(), "migrations").glob("*.sql"))
    assert [m.name for m in migrations] == sorted(p.name for p in (ROOT / "operator/procjob/migrations").glob("*.sql"))

    help_ = run("procjob", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "run" in help_.stdout
    assert "worker" in help_.stdout
    crd = run("procjob", "crd")
    assert crd.returncode == 0, crd.stderr
    assert crd.stdout == (ROOT / "crds" / "processingjob.yaml").read_text()
    worker = run("procjob", "worker")
    assert worker.returncode == 2
    assert worker.stderr.startswith("procjob worker: no stage given")
    run_help = run("procjob", "run", "--help")
    assert run_help.returncode == 0
    assert "PROCJOB_DATABASE_URL" in run_help.stdout
    plugin = run("kubectl-pj", "--help")
    assert plugin.returncode == 0, plugin.stderr
    assert plugin.stdout.startswith("usage: kubectl pj")


# -------------------------------------------------------------------------------- dashboard
def defined_metrics() -> set[str]:
    """Metric names constructed in adapters/metrics.py, read from its source (no import)."""
    tree = ast.parse(METRICS.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in KINDS:
            first = node.args[0]
            assert isinstance(first, ast.Constant)
            kind = node.func.id
            name = str(first.value)
            if kind == "Counter" and not name.endswith("_total"):
                name += "_total"  # prometheus_client appends it
            names.add(name)
            if kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_the_dashboard_queries_only_metrics_the_operator_exports() -> None:
    defined = defined_metrics()
    assert "procjob_jobs_finished_total" in defined
    used = {m for expr in dashboard_exprs() for m in re.findall(r"\bprocjob_[a-z0-9_]+", expr)}
    assert used, "the dashboard queries no procjob_ metric"
    assert used <= defined, f"not exported by adapters/metrics.py: {sorted(used - defined)}"


def test_the_dashboard_covers_the_operator_signals() -> None:
    used = {m for expr in dashboard_exprs() for m in re.findall(r"\bprocjob_[a-z0-9_]+", expr)}
    for expected in (
        "procjob_jobs_finished_total",
        "procjob_jobs_active",
        "procjob_attempts_failed_total",
        "procjob_retries_total",
        "procjob_stage_duration_seconds_bucket",
        "procjob_job_duration_seconds_bucket",
        "procjob_reconcile_duration_seconds_bucket",
        "procjob_reconcile_errors_total",
        "procjob_workqueue_depth",
        "procjob_audit_backlog",
        "procjob_log_archive_failures_total",
        "procjob_audit_lag_seconds_bucket",
        "procjob_audit_up",
        "procjob_queue_depth",
        "procjob_queue_wait_seconds_bucket",
        "procjob_api_requests_total",
    ):
        assert expected in used, expected
    exprs = dashboard_exprs()
    assert any(
        "histogram_quantile(0.99, sum by (le) (rate(procjob_reconcile_duration_seconds_bucket" in e for e in exprs
    )
    assert any("histogram_quantile(0.95" in e and "procjob_stage_duration_seconds_bucket" in e for e in exprs)


def test_the_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["id"] is None
    assert dashboard["uid"] == "procjob-operator"
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "job"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["description"], panel["title"]
