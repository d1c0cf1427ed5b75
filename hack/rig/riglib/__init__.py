"""The rig's parts, one module per concern; `hack/rig/rig.py` is the entry point.

- `config`: the .rig/ layout, network constants, environment knobs, the error type, progress lines.
- `pki`: the throw-away certificates and the kubeconfigs made from them.
- `processes`: starting, recording (state.json), stopping and waiting on the rig's processes.
- `probes`: the HTTP(S) requests that tell whether a component is ready.
- `nodes`: the fake kwok Nodes.
- `components`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, each one
  declarative entry (arguments, environment, port, readiness checks, dependencies).
- `startup`: what `up` does: build, preflight checks, certificates, then the components in waves.
- `cli`: the `up`, `down`, `status` and `env` commands.

Modules import each other relatively, so the package works both from rig.py (which puts hack/rig on
sys.path as the script's directory) and as `hack.rig.riglib` from the tests.
"""
