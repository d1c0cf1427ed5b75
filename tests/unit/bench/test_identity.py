"""The bench's operator identity: the chart's namespaced RBAC (helm, a local render) and a kubeconfig
with a token, pointed at the rig's server with the rig's CA. The rig bench run itself (the smoke test
in make test) proves the operator works with it."""

from __future__ import annotations

from pathlib import Path

import yaml
from bench import identity


def test_the_chart_renders_a_service_account_and_namespaced_rbac_for_the_bench_namespace() -> None:
    objects = identity.rbac("bench-procjob-x")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Role", "RoleBinding", "ServiceAccount"]
    assert all(o["metadata"]["namespace"] == "bench-procjob-x" for o in objects)
    (role,) = (o for o in objects if o["kind"] == "Role")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("processingjobs/status", "update") in granted
    assert ("pods", "create") in granted
    (binding,) = (o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": identity.ACCOUNT, "namespace": "bench-procjob-x"}]


def test_the_kubeconfig_carries_the_token_and_the_rigs_cluster(tmp_path: Path) -> None:
    admin = tmp_path / "admin"
    cluster = {"server": "https://127.0.0.1:16443", "certificate-authority": "ca.crt"}
    admin.write_text(yaml.safe_dump({"clusters": [{"name": "rig", "cluster": cluster}]}))
    out = identity.kubeconfig_for("tok-123", tmp_path / "kc", "ns-a", admin=admin)
    config = yaml.safe_load(out.read_text())
    assert config["users"] == [{"name": identity.ACCOUNT, "user": {"token": "tok-123"}}]
    assert config["clusters"][0]["cluster"] == cluster
    assert config["contexts"][0]["context"]["namespace"] == "ns-a"
    assert out.stat().st_mode & 0o077 == 0, "a token is a secret: owner only"
