"""The real node's configuration, without starting anything: each setting here was a failure on these
machines before it was set, and the network must keep pod traffic on the rig's own bridge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hack.rig.riglib import nodenet, noderuntime
from hack.rig.riglib.components import COMPONENTS, Context
from hack.rig.riglib.config import LOOPBACK, SERVICE_CIDR, RigError
from hack.rig.riglib.nodeconf import REAL_TAINT, NodeNet, NodePaths
from hack.rig.riglib.nodes import node_manifest
from hack.rig.riglib.pki import Pki

NET = NodeNet(bridge="pjrig0", subnet="10.213.0.0/24", kubelet_port=10250, healthz_port=10248, api_port=6443,
              dns_port=53)  # fmt: skip


def test_the_gateway_is_the_first_address_of_the_subnet() -> None:
    assert (NET.gateway, NET.prefix) == ("10.213.0.1", 24)


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("RIG_NODE_SUBNET", "nonsense", "is not a network"),
        ("RIG_NODE_SUBNET", "8.8.8.0/24", "must be a private IPv4 network"),
        ("RIG_NODE_SUBNET", "10.96.0.0/24", "overlaps the rig's service range"),
        ("RIG_NODE_BRIDGE", "a-name-far-too-long", "is not an interface name"),
        ("RIG_KUBELET_PORT", "70000", "is not a port"),
    ],
)
def test_a_bad_knob_fails_in_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, knob: str, value: str, message: str
) -> None:
    monkeypatch.setenv(knob, value)
    with pytest.raises(RigError, match=f"{knob}.*{message}"):
        NodeNet.from_knobs()


def test_pods_get_no_default_route_no_masquerade_and_the_service_range_through_the_gateway(tmp_path: Path) -> None:
    doc = json.loads(noderuntime.cni_conflist(NodePaths(tmp_path), NET))
    bridge = doc["plugins"][0]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"], bridge["ipMasq"]) == (
        "bridge",
        "pjrig0",
        False,
        False,
    )
    assert bridge["ipam"]["routes"] == [{"dst": SERVICE_CIDR, "gw": "10.213.0.1"}]
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))
    assert [p["type"] for p in doc["plugins"]] == ["bridge"]  # no portmap: nothing else touches iptables


def test_containerd_keeps_every_path_under_the_nodes_directory_and_never_asks_for_oom_privileges(
    tmp_path: Path,
) -> None:
    text = noderuntime.containerd_config(NodePaths(tmp_path))
    paths = [ln.split("=", 1)[1].strip().strip('"') for ln in text.splitlines() if ln.strip().startswith(
        ("root", "state", "address", "path", "Root", "conf_dir"))]  # fmt: skip
    assert paths
    assert all(p.startswith(str(tmp_path)) for p in paths)
    for setting in ("restrict_oom_score_adj = true", "SystemdCgroup = false", "netns_mounts_under_state_dir = true",
                    'sandbox_image = "localhost/pause:rig"', "disable_apparmor = true"):  # fmt: skip
        assert setting in text


def test_the_kubelet_authenticates_callers_serves_no_read_only_port_and_runs_on_cgroup_v1(tmp_path: Path) -> None:
    cfg = yaml.safe_load(noderuntime.kubelet_config(NodePaths(tmp_path), NET, Pki(tmp_path / "pki")))
    assert cfg["authentication"]["anonymous"] == {"enabled": False}
    assert cfg["authorization"] == {"mode": "Webhook"}
    assert (cfg["readOnlyPort"], cfg["address"], cfg["healthzBindAddress"]) == (0, "10.213.0.1", LOOPBACK)
    assert (cfg["failCgroupV1"], cfg["cgroupDriver"], cfg["oomScoreAdj"], cfg["makeIPTablesUtilChains"]) == (
        False, "cgroupfs", 0, False)  # fmt: skip
    assert cfg["registerWithTaints"] == [REAL_TAINT]
    assert cfg["clusterDNS"] == ["10.213.0.1"]
    for key in ("podLogsDir", "volumePluginDir", "containerRuntimeEndpoint"):
        assert str(tmp_path) in cfg[key]


def test_the_kubelet_joins_as_its_own_node_identity_not_an_admin(tmp_path: Path) -> None:
    args = noderuntime.kubelet_args(NodePaths(tmp_path), NET, Path("/bin/kubelet"))
    assert f"--kubeconfig={tmp_path / 'kubelet.kubeconfig'}" in args
    assert "--node-ip=10.213.0.1" in args
    assert "--node-labels=rig.procjob.dev/node=real" in args


def test_coredns_answers_only_for_the_cluster_and_forwards_nothing(tmp_path: Path) -> None:
    text = noderuntime.corefile(NET, tmp_path / "k")
    assert "bind 10.213.0.1" in text
    assert "kubernetes cluster.local" in text
    assert "forward" not in text


def test_the_apiserver_reaches_kubelets_by_internal_ip_with_a_client_certificate(tmp_path: Path) -> None:
    ports = {"etcd": 1, "etcd-peer": 2, "apiserver": 3, "kube-controller-manager": 4, "kube-scheduler": 5}
    ctx = Context(ports=ports, bins={"kube-apiserver": Path("/a")}, run=tmp_path, pki=Pki(tmp_path), node_count=1)
    args = next(c for c in COMPONENTS if c.name == "kube-apiserver").argv(ctx)
    assert "--authorization-mode=Node,RBAC" in args
    assert "--enable-admission-plugins=NodeRestriction" in args
    assert "--kubelet-preferred-address-types=InternalIP,Hostname" in args
    assert f"--kubelet-client-certificate={tmp_path / 'kubelet-client.crt'}" in args


def test_fake_nodes_have_a_loopback_address_so_nothing_off_the_machine_is_ever_dialled() -> None:
    addresses = node_manifest(7)["status"]["addresses"]
    assert {"type": "InternalIP", "address": LOOPBACK} in addresses


def test_the_journal_survives_a_restart_and_keeps_the_first_sysctl_originals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysctls = tmp_path / "proc"
    for name, value in (("vm/overcommit_memory", "0"), ("kernel/panic", "0")):
        (sysctls / name).parent.mkdir(parents=True, exist_ok=True)
        (sysctls / name).write_text(f"{value}\n")
    monkeypatch.setattr(nodenet, "KUBELET_SYSCTLS", ("vm/overcommit_memory", "kernel/panic"))
    monkeypatch.setattr(nodenet, "sysctl_path", lambda name: sysctls / name)
    journal = nodenet.Journal(tmp_path / "undo.json")
    nodenet.save_sysctls(journal)
    (sysctls / "vm/overcommit_memory").write_text("1\n")  # what the kubelet does at start
    again = nodenet.Journal(tmp_path / "undo.json")
    nodenet.save_sysctls(again)  # a second node-up must not record the kubelet's values as originals
    assert nodenet.restore_sysctls(again) == ["vm.overcommit_memory"]
    assert (sysctls / "vm/overcommit_memory").read_text() == "0"
