"""The local Kubernetes rig (hack/rig) for the `rig`-marked tests.

The rig is a real etcd + kube-apiserver + kube-controller-manager + kube-scheduler with kwok playing
the kubelet on fake Nodes (see hack/rig/README.md). Bringing it up costs seconds when its binaries
are cached, so it is session-scoped: brought up once per run, or reused when it already runs. Each
test isolates itself in its own namespace instead.

Teardown: a rig that was running before the session (`make rig-up`) is left running. A rig that a
test session started is torn down at the end of the last test session using it (several pytest runs
may share one rig; each holds a shared lock on .rig/sessions.lock, and only the one that can take it
exclusively at its end stops the rig), unless RIG_KEEP=1, which keeps it for good.

Fixture API:
- `rig` -> `Rig` (session): `.root` (repo Path), `.kubeconfig` (Path, admin), `.env` (dict for
  subprocesses: os.environ + KUBECONFIG + PATH with .rig/bin first), `.kubectl(*args, input=None,
  check=True, timeout=60.0) -> subprocess.CompletedProcess[str]`, `.kubectl_json(*args) -> Any`
  (runs `kubectl ... -o json`) and `.apply(manifest, namespace=None) -> None` (a dict or YAML text).
- `namespace` -> `str` (function): a fresh namespace whose `default` ServiceAccount exists (pods can
  be created at once); deleted afterwards without waiting for its finalisation.
- marker `rig`: a test marked `@pytest.mark.rig` gets the rig even without asking for the fixture;
  a test using `rig` or `namespace` is marked `rig` automatically (so `-m "not rig"` skips it).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from procjob.adapters.kube import Credentials, KubeClient

ROOT = Path(__file__).resolve().parents[2]
RIG_PY = ROOT / "hack" / "rig" / "rig.py"
SESSIONS_LOCK = ROOT / ".rig" / "sessions.lock"
OWNED_BY_TESTS = ROOT / ".rig" / "run" / "owned-by-test-session"
UP_TIMEOUT_SECONDS = 1800.0  # covers a cold build of the binaries on a small machine


@dataclass(frozen=True)
class Rig:
    """Handle on the running rig: where its kubeconfig is and how to run kubectl against it."""

    root: Path
    kubeconfig: Path
    env: dict[str, str]

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the rig's kubectl (v1.35, from .rig/bin) with the admin kubeconfig.

        With check=True a non-zero exit fails the test with kubectl's stderr, which says far more
        than a CalledProcessError.
        """
        proc = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip()}", pytrace=False)
        return proc

    def kubectl_json(self, *args: str, timeout: float = 60.0) -> Any:
        """`kubectl <args> -o json`, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout).stdout)

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        """Create or update objects from a dict or YAML text with `kubectl apply -f -`."""
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=text)


def _rig_py(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RIG_PY), command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 30) -> str:
    out = (proc.stdout + proc.stderr).strip().splitlines()
    return "\n".join(out[-lines:])


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    """Bring the rig up once for the session (or reuse a running one); see the module docstring."""
    SESSIONS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with SESSIONS_LOCK.open("a") as lock:
        # Blocks only while another session's teardown is stopping the rig.
        fcntl.flock(lock, fcntl.LOCK_SH)
        if _rig_py("status", 30).returncode != 0:
            up = _rig_py("up", UP_TIMEOUT_SECONDS)
            if up.returncode != 0:
                pytest.fail(f"the rig did not come up (hack/rig/rig.py up):\n{_tail(up)}", pytrace=False)
            if os.environ.get("RIG_KEEP") != "1":
                OWNED_BY_TESTS.touch()  # lives in .rig/run/, so `down` removes it with the rig
        env = dict(os.environ)
        env["KUBECONFIG"] = str(ROOT / ".rig" / "kubeconfig")
        env["PATH"] = f"{ROOT / '.rig' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        try:
            yield Rig(root=ROOT, kubeconfig=ROOT / ".rig" / "kubeconfig", env=env)
        finally:
            _teardown(lock)


def _teardown(lock: IO[str]) -> None:
    """Stop a test-started rig if no other session uses it (see the module docstring)."""
    if os.environ.get("RIG_KEEP") == "1":
        OWNED_BY_TESTS.unlink(missing_ok=True)  # kept for good: later sessions must not stop it
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another session still uses the rig; the last one out stops it
    if OWNED_BY_TESTS.exists():
        down = _rig_py("down", 120)
        if down.returncode != 0:
            print(f"rig: teardown failed:\n{_tail(down)}", file=sys.stderr)


def _fresh_namespace(rig: Rig) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    rig.kubectl("create", "namespace", name)
    # The ServiceAccount admission plugin rejects pods until the controller-manager made `default`.
    rig.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s", timeout=70)
    try:
        yield name
    finally:
        rig.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def namespace(rig: Rig) -> Iterator[str]:
    """A uniquely named namespace, ready for pods, deleted (not awaited) after the test."""
    yield from _fresh_namespace(rig)


@pytest.fixture
def tenant(rig: Rig) -> Iterator[str]:
    """A second namespace like `namespace`: the other tenant's."""
    yield from _fresh_namespace(rig)


def admin_credentials(kubeconfig: Path) -> Credentials:
    """The rig's admin kubeconfig as the operator's client takes it."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return Credentials(
        server=cluster["server"],
        ca_path=cluster.get("certificate-authority"),
        ca_data=cluster.get("certificate-authority-data"),
        token=user.get("token"),
        certificate_path=user.get("client-certificate"),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=user.get("client-key"),
        private_key_data=user.get("client-key-data"),
    )


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[KubeClient]:
    """The operator's API client, as the rig's admin."""
    kube = KubeClient(admin_credentials(rig.kubeconfig))
    yield kube
    await kube.close()


@pytest.fixture(autouse=True)
def _rig_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Give `@pytest.mark.rig` tests the rig even when they do not name the fixture."""
    if request.node.get_closest_marker("rig") is not None:
        request.getfixturevalue("rig")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the rig's fixtures `rig`, so that `-m "not rig"` deselects it."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if ("rig" in names or "namespace" in names) and item.get_closest_marker("rig") is None:
            item.add_marker(pytest.mark.rig)
