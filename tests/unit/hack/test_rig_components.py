"""The rig's components table and preflight checks, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hack.rig.riglib.components import COMPONENT_NAMES, COMPONENTS, Component, Context, start_waves
from hack.rig.riglib.config import CRDS, PORT_KNOBS, STAGES, RigError
from hack.rig.riglib.nodes import node_manifest
from hack.rig.riglib.pki import Pki
from hack.rig.riglib.startup import check_ports_free, read_ports, validate_knobs

PORTS = {
    "etcd": 23790,
    "etcd-peer": 23800,
    "apiserver": 16443,
    "kube-controller-manager": 16257,
    "kube-scheduler": 16259,
    "kwok": 16250,
}


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    bins = {name: tmp_path / "bin" / name for name in COMPONENT_NAMES}
    return Context(ports=PORTS, bins=bins, run=tmp_path / "run", pki=Pki(tmp_path / "run" / "pki"), node_count=2)


def argv(ctx: Context, name: str) -> list[str]:
    return next(c for c in COMPONENTS if c.name == name).argv(ctx)


def test_components_start_in_three_waves_after_what_they_need() -> None:
    waves = [[c.name for c in wave] for wave in start_waves()]
    assert waves == [["etcd"], ["kube-apiserver"], ["kube-controller-manager", "kube-scheduler", "kwok"]]
    assert COMPONENT_NAMES == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


def test_a_need_listed_later_or_unknown_is_an_error() -> None:
    late = Component(name="a", binary="a", args=lambda ctx: [], needs=("b",))
    with pytest.raises(RigError, match="component a needs"):
        start_waves((late, Component(name="b", binary="b", args=lambda ctx: [])))


def test_etcd_listens_on_loopback_without_fsync(ctx: Context) -> None:
    args = argv(ctx, "etcd")
    assert args[0] == str(ctx.bins["etcd"])
    assert "--listen-client-urls=http://127.0.0.1:23790" in args
    assert "--initial-cluster=rig=http://127.0.0.1:23800" in args
    assert f"--data-dir={ctx.run / 'etcd'}" in args
    assert "--unsafe-no-fsync=true" in args


def test_apiserver_uses_the_pki_etcd_and_the_inflight_knobs(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_APISERVER_MAX_INFLIGHT", "321")
    args = argv(ctx, "kube-apiserver")
    assert "--etcd-servers=http://127.0.0.1:23790" in args
    assert "--secure-port=16443" in args
    assert f"--tls-cert-file={ctx.pki.crt('apiserver')}" in args
    assert f"--client-ca-file={ctx.pki.ca_crt}" in args
    assert "--service-account-issuer=https://127.0.0.1:16443" in args
    assert f"--proxy-client-cert-file={ctx.pki.crt('front-proxy-client')}" in args
    assert f"--requestheader-client-ca-file={ctx.pki.front_proxy_ca_crt}" in args, "not the clients' CA"
    assert "--max-requests-inflight=321" in args
    assert "--max-mutating-requests-inflight=100" in args
    assert "--profiling=false" in args, "no /debug/pprof unless asked for"


def test_apiserver_profiling_is_a_knob(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_APISERVER_PROFILING", "1")
    assert "--profiling=true" in argv(ctx, "kube-apiserver")


@pytest.mark.parametrize(("name", "port"), [("kube-controller-manager", 16257), ("kube-scheduler", 16259)])
def test_controller_manager_and_scheduler_use_their_own_identity(ctx: Context, name: str, port: int) -> None:
    args = argv(ctx, name)
    kubeconfig = ctx.run / f"{name}.kubeconfig"
    for flag in ("--kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig"):
        assert f"{flag}={kubeconfig}" in args
    assert f"--secure-port={port}" in args
    assert "--leader-elect=false" in args
    assert "--kube-api-qps=100" in args


def test_controller_manager_signs_service_account_tokens(ctx: Context) -> None:
    args = argv(ctx, "kube-controller-manager")
    assert f"--service-account-private-key-file={ctx.pki.sa_key}" in args
    assert "--use-service-account-credentials=true" in args


def test_kwok_manages_only_fake_nodes_and_reads_every_stage(ctx: Context) -> None:
    args = argv(ctx, "kwok")
    assert f"--kubeconfig={ctx.run / 'kwok.kubeconfig'}" in args
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in args
    assert "--cidr=10.244.0.0/16" in args
    # Its kubelet API on loopback (the fake Nodes' InternalIP and kubelet port), Logs objects watched.
    assert "--server-address=127.0.0.1:16250" in args
    assert "--node-port=16250" in args
    assert "--enable-crds=Logs" in args
    configs = [a.removeprefix("--config=") for a in args if a.startswith("--config=")]
    assert configs == [str(p) for p in sorted(STAGES.glob("*.yaml"))]
    assert configs


def test_kwok_gets_a_private_home_and_no_one_else_an_env(ctx: Context) -> None:
    kwok = next(c for c in COMPONENTS if c.name == "kwok")
    assert kwok.env is not None
    assert kwok.env(ctx)["HOME"] == str(ctx.run / "kwok-home")
    assert [c.name for c in COMPONENTS if c.env is not None] == ["kwok"]


def test_ports_come_from_their_knobs_and_must_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    for knob in PORT_KNOBS.values():  # the defaults, whatever the caller's shell exports
        monkeypatch.delenv(knob, raising=False)
    assert read_ports() == PORTS
    monkeypatch.setenv("RIG_KCM_PORT", "16443")
    with pytest.raises(RigError, match="ports must differ"):
        read_ports()


def test_kwoks_port_follows_the_apiservers_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for knob in PORT_KNOBS.values():
        monkeypatch.delenv(knob, raising=False)
    monkeypatch.setenv("RIG_APISERVER_PORT", "28443")  # a second rig on other ports: no collision
    assert read_ports()["kwok"] == 28250
    monkeypatch.setenv("RIG_KWOK_PORT", "30250")
    assert read_ports()["kwok"] == 30250


def test_a_busy_port_names_the_knob_that_moves_it() -> None:
    with pytest.raises(RigError, match=r"port 127.0.0.1:16257 \(kube-controller-manager\) .* set RIG_KCM_PORT"):
        check_ports_free(PORTS, lambda port: port != 16257)


def test_a_non_integer_knob_fails_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_NODES", "two")
    with pytest.raises(RigError, match="RIG_NODES='two' is not an integer"):
        validate_knobs()


def test_each_component_waits_for_its_own_readiness_signal(ctx: Context) -> None:
    waits = {c.name: [check.what(ctx) for check in c.checks] for c in COMPONENTS}
    assert waits == {
        "etcd": ["etcd /health"],
        "kube-apiserver": ["kube-apiserver /readyz"],
        "kube-controller-manager": ["kube-controller-manager /healthz"],
        "kube-scheduler": ["kube-scheduler /healthz"],
        "kwok": [
            "kwok's kubelet API on 127.0.0.1:16250",
            "2 fake Node(s) Ready and untainted",
            "the default ServiceAccount",
        ],
    }
    ports = {c.name: c.port for c in COMPONENTS}
    assert ports == {
        "etcd": "etcd",
        "kube-apiserver": "apiserver",
        "kube-controller-manager": "kube-controller-manager",
        "kube-scheduler": "kube-scheduler",
        "kwok": "kwok",
    }


def test_fake_nodes_name_kwoks_kubelet_api_on_loopback_and_the_logs_crd_is_kwoks() -> None:
    status = node_manifest(0, 16250)["status"]
    assert status["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 16250}}
    assert "daemonEndpoints" not in node_manifest(0)["status"]
    (crd,) = [d for path in CRDS.glob("*.yaml") for d in yaml.safe_load_all(path.read_text()) if d]
    assert crd["metadata"]["name"] == "logs.kwok.x-k8s.io"
    assert crd["spec"]["scope"] == "Namespaced"
