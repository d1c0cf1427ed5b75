"""The rig's five components, each one declarative entry: how it is started and how it is known ready.

Why a table: starting a component is the same steps every time (spawn, record, wait for readiness,
fail fast with its last log line); what differs is data. Adding a component (or a flag) is an edit
here; `startup.start_components` reads the table and starts the components in waves derived from
`needs`, in the order they are listed.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import (
    CRDS,
    KUBECONFIG,
    LOOPBACK,
    NODE_ANNOTATION,
    POD_CIDR,
    SERVICE_CIDR,
    STAGES,
    RigError,
    int_knob,
    rel,
)
from .nodes import create_nodes, nodes_ready
from .pki import Pki, kubeconfig_text, write_private
from .probes import admin_ssl, api_url, apiserver_ready, etcd_healthy, healthz_ok, http
from .processes import wait_for

CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True)
class Context:
    """What the components' arguments and checks are built from during one `up`."""

    ports: dict[str, int]
    bins: dict[str, Path]
    run: Path
    pki: Pki
    node_count: int

    @property
    def server(self) -> str:
        """The apiserver's URL, as every kubeconfig and the service-account issuer name it."""
        return f"https://{LOOPBACK}:{self.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['etcd']}"

    @property
    def etcd_peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['etcd-peer']}"

    def kubeconfig(self, stem: str) -> Path:
        """The kubeconfig of one client identity (written by `startup.write_kubeconfigs`)."""
        return self.run / f"{stem}.kubeconfig"

    @functools.cached_property
    def admin_tls(self) -> ssl.SSLContext:
        """The admin's TLS context, made once the PKI exists and reused by every poll."""
        return admin_ssl()


@dataclass(frozen=True)
class Check:
    """One readiness condition: what it is (for the timeout message) and whether it holds now."""

    what: Callable[[Context], str]
    ok: Callable[[Context], bool]


@dataclass(frozen=True)
class Component:
    """How one component is started and known to be ready.

    `needs` are the components that must be ready before this one starts. `port` names the entry of
    the ports (state.json) it listens on. `prepare` runs before the start, `started` right after it,
    `on_ready` once every check holds and `ready_line` (timed) has been printed.
    """

    name: str
    binary: str
    args: Callable[[Context], list[str]]
    needs: tuple[str, ...] = ()
    port: str | None = None
    env: Callable[[Context], dict[str, str]] | None = None
    checks: tuple[Check, ...] = ()
    ready_line: Callable[[Context], str] | None = None
    prepare: Callable[[Context], None] | None = None
    started: Callable[[Context], None] | None = None
    on_ready: Callable[[Context], None] | None = None

    def argv(self, ctx: Context) -> list[str]:
        return [str(ctx.bins[self.binary]), *self.args(ctx)]


def etcd_args(ctx: Context) -> list[str]:
    """Throw-away data, no fsync (nothing here must survive a crash)."""
    return [
        "--name=rig",
        f"--data-dir={ctx.run / 'etcd'}",
        f"--listen-client-urls={ctx.etcd_url}",
        f"--advertise-client-urls={ctx.etcd_url}",
        f"--listen-peer-urls={ctx.etcd_peer_url}",
        f"--initial-advertise-peer-urls={ctx.etcd_peer_url}",
        f"--initial-cluster=rig={ctx.etcd_peer_url}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(ctx: Context) -> list[str]:
    """RBAC, client-cert and request-header (front-proxy) authentication, service accounts."""
    pki = ctx.pki
    return [
        f"--etcd-servers={ctx.etcd_url}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ctx.ports['apiserver']}",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={ctx.run / 'apiserver'}",
        f"--tls-cert-file={pki.crt('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_crt}",
        # Node: kubelets of the real node (riglib.node*) get exactly their own objects, as in a cluster.
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # MutatingAdmissionPolicy (GA and on by default from 1.36; beta, off by default, in 1.34-1.35):
        # the chart's finalizer policy (charts/procjob/templates/finalizerpolicy.yaml) is tested here.
        # Drop both flags when the rig moves to 1.36+: the gate is then locked on and later removed,
        # and an unknown gate stops kube-apiserver from starting.
        "--feature-gates=MutatingAdmissionPolicy=true",
        "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
        # The apiserver -> kubelet path (logs, exec) of the real node: its gateway address, a client cert.
        # The fake Nodes' InternalIP is loopback, where no kubelet listens: nothing else is ever dialled.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--kubelet-client-certificate={pki.crt('kubelet-client')}",
        f"--kubelet-client-key={pki.key('kubelet-client')}",
        f"--service-account-issuer={ctx.server}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        f"--requestheader-client-ca-file={pki.front_proxy_ca_crt}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.crt('front-proxy-client')}",
        f"--proxy-client-key-file={pki.key('front-proxy-client')}",
        f"--profiling={'true' if int_knob('RIG_APISERVER_PROFILING') else 'false'}",
        f"--max-requests-inflight={int_knob('RIG_APISERVER_MAX_INFLIGHT')}",
        f"--max-mutating-requests-inflight={int_knob('RIG_APISERVER_MAX_MUTATING_INFLIGHT')}",
    ]


def client_args(ctx: Context, name: str) -> list[str]:
    """What the controller-manager and the scheduler share: their identity, no election, health port."""
    kubeconfig = ctx.kubeconfig(name)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ctx.ports[name]}",
        f"--cert-dir={ctx.run / name}",
    ]


def controller_manager_args(ctx: Context) -> list[str]:
    """Per-controller service-account credentials, as in a real cluster (RBAC applies to each)."""
    return [
        *client_args(ctx, "kube-controller-manager"),
        f"--root-ca-file={ctx.pki.ca_crt}",
        f"--service-account-private-key-file={ctx.pki.sa_key}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--cluster-name=procjob-rig",
        f"--flex-volume-plugin-dir={ctx.run / 'flexvolume'}",  # not /usr/libexec/kubernetes
        "--profiling=false",
        f"--kube-api-qps={int_knob('RIG_KCM_QPS', 1)}",
        f"--kube-api-burst={int_knob('RIG_KCM_BURST', 1)}",
    ]


def scheduler_args(ctx: Context) -> list[str]:
    return [
        *client_args(ctx, "kube-scheduler"),
        "--profiling=false",
        f"--kube-api-qps={int_knob('RIG_SCHEDULER_QPS', 1)}",
        f"--kube-api-burst={int_knob('RIG_SCHEDULER_BURST', 1)}",
    ]


def kwok_stage_files() -> list[Path]:
    """The kwok Stages that drive pods by their rig.procjob.dev/* annotations (hack/rig/stages/)."""
    stage_files = sorted(STAGES.glob("*.yaml"))
    if not stage_files:
        raise RigError(f"no kwok stages in {rel(STAGES)}")
    return stage_files


def kwok_args(ctx: Context) -> list[str]:
    """Out of cluster, managing only the Nodes annotated as fake, with a pod CIDR that does not run out.

    Its kubelet API listens on 127.0.0.1 (the fake Nodes' InternalIP, their kubelet port), so that the
    apiserver's pods/log reaches it; a `Logs` object (kwok's CRD) names the file it serves for a pod.
    Pods without one answer 400 ("no logs found"), as a kubelet does for a container that never ran."""
    port = ctx.ports["kwok"]
    return [
        f"--kubeconfig={ctx.kubeconfig('kwok')}",
        f"--server-address={LOOPBACK}:{port}",
        f"--node-port={port}",
        "--enable-crds=Logs",
        *[f"--config={f}" for f in kwok_stage_files()],
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION[0]}={NODE_ANNOTATION[1]}",
        "--manage-nodes-with-label-selector=",
        "--manage-single-node=",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
    ]


def kwok_home(ctx: Context) -> Path:
    """kwok reads ~/.kwok/kwok.yaml when it exists; a private HOME keeps a user's config out of the rig."""
    return ctx.run / "kwok-home"


def prepare_kwok(ctx: Context) -> None:
    kwok_home(ctx).mkdir(parents=True, exist_ok=True)
    kwok_stage_files()
    install_crds(ctx)


def install_crds(ctx: Context) -> None:
    """kwok's CRDs (hack/rig/crds/), created and Established before kwok starts to watch them."""
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in (d for d in yaml.safe_load_all(path.read_text()) if d):
            status, body = http(api_url(ctx.ports, CRD_API), ctx.admin_tls, "POST", crd)
            if status not in (201, 409):
                raise RigError(f"creating CRD {crd['metadata']['name']} failed: HTTP {status} {body[:200]!r}")
            name = crd["metadata"]["name"]
            established = functools.partial(crd_established, ctx, name)
            wait_for(f"CRD {name} Established", established, time.monotonic() + 30, [])


def crd_established(ctx: Context, name: str) -> bool:
    status, body = http(api_url(ctx.ports, f"{CRD_API}/{name}"), ctx.admin_tls)
    if status != 200:
        return False
    conditions = json.loads(body).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def kwok_serves(ctx: Context) -> bool:
    """kwok's kubelet API answers on its port (plain HTTP shares it with TLS)."""
    return http(f"http://{LOOPBACK}:{ctx.ports['kwok']}/healthz")[0] == 200


def kwok_env(ctx: Context) -> dict[str, str]:
    return {**os.environ, "HOME": str(kwok_home(ctx))}


def write_admin_kubeconfig(ctx: Context) -> None:
    """.rig/kubeconfig appears once the apiserver answers, so that its presence means a usable rig."""
    write_private(KUBECONFIG, kubeconfig_text(ctx.pki, "admin", ctx.server))


def default_service_account_exists(ctx: Context) -> bool:
    """The service-account controller has made `default` in `default`: pods can be created."""
    url = api_url(ctx.ports, "/api/v1/namespaces/default/serviceaccounts/default")
    return http(url, ctx.admin_tls)[0] == 200


def controller_process(
    name: str, args: Callable[[Context], list[str]], ready_line: Callable[[Context], str] | None = None
) -> Component:
    """The controller-manager or the scheduler: an apiserver client with a /healthz on its own port."""
    return Component(
        name=name,
        binary=name,
        args=args,
        needs=("kube-apiserver",),
        port=name,
        checks=(Check(lambda ctx: f"{name} /healthz", lambda ctx: healthz_ok(ctx.ports[name])),),
        ready_line=ready_line,
    )


COMPONENTS: tuple[Component, ...] = (
    Component(
        name="etcd",
        binary="etcd",
        args=etcd_args,
        port="etcd",
        checks=(Check(lambda ctx: "etcd /health", lambda ctx: etcd_healthy(ctx.ports["etcd"])),),
        ready_line=lambda ctx: f"etcd ready on {LOOPBACK}:{ctx.ports['etcd']}",
    ),
    Component(
        name="kube-apiserver",
        binary="kube-apiserver",
        args=apiserver_args,
        needs=("etcd",),
        port="apiserver",
        checks=(Check(lambda ctx: "kube-apiserver /readyz", lambda ctx: apiserver_ready(ctx.ports)),),
        ready_line=lambda ctx: f"kube-apiserver ready on {LOOPBACK}:{ctx.ports['apiserver']}",
        on_ready=write_admin_kubeconfig,
    ),
    controller_process("kube-controller-manager", controller_manager_args),
    controller_process(
        "kube-scheduler", scheduler_args, ready_line=lambda ctx: "kube-controller-manager and kube-scheduler healthy"
    ),
    Component(
        name="kwok",
        binary="kwok",
        args=kwok_args,
        needs=("kube-apiserver",),
        port="kwok",
        env=kwok_env,
        prepare=prepare_kwok,
        started=lambda ctx: create_nodes(ctx.ports, ctx.admin_tls, ctx.node_count),
        checks=(
            Check(lambda ctx: f"kwok's kubelet API on {LOOPBACK}:{ctx.ports['kwok']}", kwok_serves),
            Check(
                lambda ctx: f"{ctx.node_count} fake Node(s) Ready and untainted",
                lambda ctx: nodes_ready(ctx.ports, ctx.admin_tls, ctx.node_count),
            ),
            Check(lambda ctx: "the default ServiceAccount", default_service_account_exists),
        ),
        ready_line=lambda ctx: f"kwok: {ctx.node_count} fake Node(s) Ready; pods can be created",
    ),
)
COMPONENT_NAMES = [c.name for c in COMPONENTS]  # start order; `status` and `is_up` expect all of them


def start_waves(components: tuple[Component, ...] = COMPONENTS) -> list[list[Component]]:
    """Group the components into waves: each starts in the first wave after everything it needs.

    Components are listed in dependency order; a need that is unknown or listed later is an error.
    """
    level: dict[str, int] = {}
    for comp in components:
        missing = [n for n in comp.needs if n not in level]
        if missing:
            raise RigError(f"component {comp.name} needs {missing}, not listed before it")
        level[comp.name] = 1 + max((level[n] for n in comp.needs), default=-1)
    waves: list[list[Component]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for comp in components:
        waves[level[comp.name]].append(comp)
    return waves
