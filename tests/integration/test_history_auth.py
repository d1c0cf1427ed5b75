"""The history endpoint's guard against the rig's API server: real TokenReview and SubjectAccessReview.

The web app (procjob.adapters.web.build_app) runs on 127.0.0.1 in a thread, with a real KubeClient
authenticated as the chart's operator service account (a token from `kubectl create token`, the
chart's RBAC applied, namespaced mode so only the reviews ClusterRole is cluster-scoped) and the
ReviewAuthorizer. Callers are service accounts with tokens from `kubectl create token`:
- `reader` in the job's namespace, with a Role allowing `get` on processingjobs there: 200;
- `reader` of another namespace with the same Role there: 403;
- `nobody` (no Role): 403; `one-job` (a Role with resourceNames: [job1]): 200 for job1, 403 job2;
- no token, a forged token: 401 with `WWW-Authenticate: Bearer`; probes and metrics stay open.
`history_server` is also used by tests/integration/test_plugin.py with the real audit store.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from procjob.adapters.audit import AuditStore, history_document
from procjob.adapters.authn import ReviewAuthorizer
from procjob.adapters.kube import Credentials, KubeClient
from procjob.adapters.web import HistoryLookup, build_app, serve
from tests.support.rig import Rig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "procjob"
HISTORY = "/api/v1/namespaces/{ns}/processingjobs/{name}/history"

LookupFactory = Callable[[], Awaitable[tuple[HistoryLookup, Callable[[], Awaitable[None]]]]]


@dataclass
class Served:
    url: str
    authorizer: ReviewAuthorizer
    client: KubeClient


def credentials(rig: Rig, token: str) -> Credentials:
    """The rig's server and CA (from the admin kubeconfig) with a service account's token."""
    config = yaml.safe_load(rig.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca_path = cluster.get("certificate-authority")
    if ca_path and not Path(ca_path).is_absolute():
        ca_path = str(rig.kubeconfig.parent / ca_path)
    return Credentials(
        server=cluster["server"], ca_data=cluster.get("certificate-authority-data"), ca_path=ca_path, token=token
    )


def token_kubeconfig(rig: Rig, namespace: str, token: str, path: Path) -> Path:
    """A kubeconfig for the rig's server that authenticates with `token`, namespace `namespace`."""
    cluster = yaml.safe_load(rig.kubeconfig.read_text())["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rig", "cluster": cluster}],
        "users": [{"name": "tenant", "user": {"token": token}}],
        "contexts": [{"name": "tenant", "context": {"cluster": "rig", "user": "tenant", "namespace": namespace}}],
        "current-context": "tenant",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def token_for(rig: Rig, namespace: str, account: str) -> str:
    return rig.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()


@contextmanager
def history_server(creds: Credentials, lookups: LookupFactory) -> Iterator[Served]:
    """The operator's web app with a real authorizer, on a free 127.0.0.1 port, in its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="history-server", daemon=True)
    thread.start()

    async def start() -> tuple[Served, Any, Callable[[], Awaitable[None]]]:
        client = KubeClient(creds)
        authorizer = ReviewAuthorizer(client)
        lookup, close = await lookups()
        app = build_app(
            CollectorRegistry(),
            live=lambda: (True, "ok"),
            ready=lambda: (True, "ok"),
            history=lookup,
            authorize=authorizer,
        )
        runner = await serve(app, "127.0.0.1", 0)
        host, port = runner.addresses[0][:2]
        return Served(f"http://{host}:{port}", authorizer, client), runner, close

    served, runner, close = asyncio.run_coroutine_threadsafe(start(), loop).result(60)

    async def stop() -> None:
        await runner.cleanup()
        await served.client.close()
        await close()

    try:
        yield served
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def documents(docs: dict[tuple[str, str], dict[str, Any]]) -> LookupFactory:
    async def factory() -> tuple[HistoryLookup, Callable[[], Awaitable[None]]]:
        async def lookup(ns: str, name: str) -> dict[str, Any] | None:
            return docs.get((ns, name))

        async def close() -> None:
            return None

        return lookup, close

    return factory


def audit_store(dsn: str) -> LookupFactory:
    async def factory() -> tuple[HistoryLookup, Callable[[], Awaitable[None]]]:
        store = await AuditStore.open(dsn, min_size=1, max_size=2)

        async def lookup(ns: str, name: str) -> dict[str, Any] | None:
            return await history_document(store, ns, name)

        return lookup, store.close

    return factory


def operator_reviewer(rig: Rig, namespace: str, cluster_scoped: list[str]) -> Credentials:
    """Apply the chart's RBAC for the operator (namespaced mode: only the reviews are cluster-wide)
    and return credentials of its service account."""
    release = f"pj-{namespace}"
    rendered = subprocess.run(
        [
            "helm",
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            f"watchNamespaces={{{namespace}}}",
        ],
        capture_output=True,
        text=True,
        env=rig.env,
        timeout=120,
        check=True,
    ).stdout
    fullname = f"{release}-procjob"
    kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    objects = [
        o
        for o in yaml.safe_load_all(rendered)
        if o and o["kind"] in kinds and o["metadata"]["name"] in (fullname, f"{fullname}-reviews")
    ]
    assert sorted(o["kind"] for o in objects if o["kind"].startswith("Cluster")) == [
        "ClusterRole",
        "ClusterRoleBinding",
    ]
    cluster_scoped += [f"clusterrolebinding/{fullname}-reviews", f"clusterrole/{fullname}-reviews"]
    rig.apply(yaml.safe_dump_all(objects))
    return credentials(rig, token_for(rig, namespace, fullname))


def reader(rig: Rig, namespace: str, account: str, resource_names: list[str] | None = None) -> str:
    """A service account allowed to `get` processingjobs in `namespace` (optionally only some names)."""
    rule: dict[str, Any] = {"apiGroups": ["procjob.dev"], "resources": ["processingjobs"], "verbs": ["get"]}
    if resource_names:
        rule["resourceNames"] = resource_names
    rig.apply(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": account, "namespace": namespace},
                    "rules": [rule],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": account, "namespace": namespace},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
                    "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
                },
            ]
        )
    )
    return token_for(rig, namespace, account)


@pytest.fixture
def cluster_scoped(rig: Rig) -> Iterator[list[str]]:
    """Cluster-scoped objects a test creates (`kind/name`), deleted afterwards."""
    created: list[str] = []
    yield created
    for ref in created:
        rig.kubectl("delete", ref, "--ignore-not-found", check=False)


@pytest.fixture
def other_namespace(rig: Rig) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    rig.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        rig.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def test_only_a_reader_of_the_job_gets_its_history(
    rig: Rig, namespace: str, other_namespace: str, cluster_scoped: list[str]
) -> None:
    creds = operator_reviewer(rig, namespace, cluster_scoped)
    own = reader(rig, namespace, "reader")
    foreign = reader(rig, other_namespace, "reader")
    one_job = reader(rig, namespace, "one-job", ["job1"])
    rig.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    nobody = token_for(rig, namespace, "nobody")
    docs: dict[tuple[str, str], dict[str, Any]] = {
        (namespace, name): {"namespace": namespace, "name": name, "attempts": []} for name in ("job1", "job2")
    }

    with history_server(creds, documents(docs)) as served, httpx.Client(base_url=served.url, timeout=30) as http:

        def get(name: str, token: str | None, ns: str = namespace) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return http.get(HISTORY.format(ns=ns, name=name), headers=headers)

        resp = get("job1", None)
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = get("job1", "forged." + own[7:])
        assert resp.status_code == 401, resp.text
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

        resp = get("job1", own)
        assert resp.status_code == 200, resp.text
        assert resp.json() == docs[(namespace, "job1")]
        assert get("job2", own).status_code == 200
        assert get("unknown", own).status_code == 404

        resp = get("job1", foreign)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"].startswith(f"system:serviceaccount:{other_namespace}:reader may not get")
        assert get("job1", foreign, ns=other_namespace).status_code == 404  # its own namespace: allowed, no job

        assert get("job1", nobody).status_code == 403
        assert get("job1", one_job).status_code == 200
        assert get("job2", one_job).status_code == 403
        assert get("unknown", one_job).status_code == 403  # a 403, not a 404: existence is not revealed

        for path in ("/healthz", "/readyz", "/metrics"):
            assert http.get(path).status_code == 200, path

        posted = served.client.requests.get("POST", 0)
        for _ in range(5):
            assert get("job1", own).status_code == 200
        assert served.client.requests.get("POST", 0) == posted  # cached: no more reviews


def test_a_reviewer_without_the_charts_rbac_fails_closed(rig: Rig, namespace: str) -> None:
    """The reviews need the chart's ClusterRole: without it nobody is let in (503), not everybody."""
    rig.kubectl("create", "serviceaccount", "no-reviews", "-n", namespace)
    creds = credentials(rig, token_for(rig, namespace, "no-reviews"))
    own = reader(rig, namespace, "reader")
    docs: dict[tuple[str, str], dict[str, Any]] = {(namespace, "job1"): {"name": "job1"}}
    with history_server(creds, documents(docs)) as served, httpx.Client(base_url=served.url, timeout=30) as http:
        resp = http.get(HISTORY.format(ns=namespace, name="job1"), headers={"Authorization": f"Bearer {own}"})
        assert resp.status_code == 503, resp.text
