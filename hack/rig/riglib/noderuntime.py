"""The real node's files: its credentials, containerd's and the kubelet's configuration, the CNI network.

Each setting below was a failure on these machines before it was set (see the README's "Real node"):
root has no CAP_SYS_RESOURCE here, so runc cannot lower oom_score_adj (containerd's
`restrict_oom_score_adj`, the kubelet's `oomScoreAdj: 0`); the kernel has cgroup v1 only
(`failCgroupV1: false`, cgroupfs); there is no AppArmor; every path the node writes is under
.rig/node/ (containerd's root and state, runc's root, the network namespaces, the kubelet's root and
pod logs, the CNI IPAM data), so node-down can remove it all.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from .config import SERVICE_CIDR
from .nodeconf import NODE_NAME, PAUSE_IMAGE, REAL_LABEL, REAL_TAINT, NodeNet, NodePaths
from .pki import Issuer, Pki, _name, kubeconfig_text, make_leaf, write_private

CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins


def load_issuer(pki: Pki) -> Issuer:
    """The rig's CA (made by `rig up`), to sign the node's certificates."""
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(cert.not_valid_after_utc, now + datetime.timedelta(days=365))
    return Issuer(key, cert.subject, now - datetime.timedelta(hours=1), not_after)  # type: ignore[arg-type]


def write_credentials(rig_pki: Pki, paths: NodePaths, net: NodeNet, server: str) -> Pki:
    """The kubelet's client identity (system:node:<name> in system:nodes, as the Node authorizer wants)
    and its serving certificate (the gateway address, the node name); its kubeconfig."""
    node_pki = Pki(paths.pki)
    node_pki.dir.mkdir(parents=True, exist_ok=True)
    issuer = load_issuer(rig_pki)
    subject = _name(f"system:node:{NODE_NAME}", "system:nodes")
    make_leaf(node_pki, issuer, "kubelet-client", subject, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    sans: list[x509.GeneralName] = [
        x509.DNSName(NODE_NAME),
        x509.IPAddress(ipaddress.ip_address(net.gateway)),
    ]
    make_leaf(node_pki, issuer, "kubelet-serving", _name(NODE_NAME), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    (node_pki.dir / "ca.crt").write_bytes(rig_pki.ca_crt.read_bytes())
    write_private(paths.kubeconfig, kubeconfig_text(node_pki, "kubelet-client", server))
    return node_pki


def containerd_config(paths: NodePaths) -> str:
    """containerd 1.6's config (version 2) with every path under .rig/node/containerd."""
    base = paths.containerd
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
oom_score = 0

[grpc]
  address = "{paths.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{base / "runc"}"

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{paths.cni_conf}"
  max_conf_num = 1
"""


def cni_conflist(paths: NodePaths, net: NodeNet) -> str:
    """A bridge without masquerade and without a default route: pods reach their subnet (the gateway's
    servers, each other) and the Service range through the gateway, nothing else."""
    hosts = list(ipaddress.ip_network(net.subnet).hosts())
    doc = {
        "cniVersion": "0.4.0",
        "name": "procjob-rig",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam),
                    "ranges": [[{"subnet": net.subnet, "rangeStart": str(hosts[min(9, len(hosts) - 1)]),
                                 "gateway": net.gateway}]],
                    "routes": [{"dst": SERVICE_CIDR, "gw": net.gateway}],
                },
            }
        ],
    }  # fmt: skip
    return json.dumps(doc, indent=2)


def kubelet_config(paths: NodePaths, net: NodeNet, node_pki: Pki) -> str:
    """The KubeletConfiguration: x509 + webhook authentication, webhook authorization, no read-only port."""
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.gateway,
        "port": net.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": net.healthz_port,
        "tlsCertFile": str(node_pki.crt("kubelet-serving")),
        "tlsPrivateKeyFile": str(node_pki.key("kubelet-serving")),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(node_pki.dir / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "makeIPTablesUtilChains": False,
        "clusterDomain": "cluster.local",
        "clusterDNS": [net.gateway],
        "resolvConf": "",
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.kubelet / "volume-plugins"),
        "registerWithTaints": [REAL_TAINT],
        "maxPods": 40,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "containerLogMaxSize": "10Mi",
        "shutdownGracePeriod": "0s",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kubelet_args(paths: NodePaths, net: NodeNet, kubelet: Path) -> list[str]:
    return [
        str(kubelet),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={paths.kubeconfig}",
        f"--root-dir={paths.kubelet}",
        f"--cert-dir={paths.pki}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={net.gateway}",
        f"--node-labels={REAL_LABEL[0]}={REAL_LABEL[1]}",
        "--v=1",
    ]


def corefile(net: NodeNet, kubeconfig: Path) -> str:
    """CoreDNS for the node's pods: cluster.local from the API server, nothing forwarded anywhere."""
    return f""".:{net.dns_port} {{
    bind {net.gateway}
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""


def write_files(paths: NodePaths, net: NodeNet, node_pki: Pki) -> None:
    for d in (paths.containerd, paths.kubelet, paths.pod_logs, paths.cni_conf, paths.cni_ipam):
        d.mkdir(parents=True, exist_ok=True)
    (paths.containerd / "config.toml").write_text(containerd_config(paths))
    (paths.cni_conf / "10-procjob-rig.conflist").write_text(cni_conflist(paths, net))
    paths.kubelet_config.write_text(kubelet_config(paths, net, node_pki))
