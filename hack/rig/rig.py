#!/usr/bin/env python3
"""The rig: a real, throw-away Kubernetes control plane on 127.0.0.1, without Docker.

Why this exists: procjob's integration tests, demo and benchmarks need a genuine apiserver, scheduler,
garbage collector and Job controller, but no container runtime. kwok plays the kubelet: it makes fake
Nodes Ready and drives pods through their phases following the Stages in hack/rig/stages/, which read
per-pod annotations (exit code, run time, failures per attempt, ...; see hack/rig/README.md).

Subcommands:
  up      build (no-op when cached), generate certificates, start etcd, kube-apiserver,
          kube-controller-manager, kube-scheduler and kwok, create the fake Nodes, wait until ready.
          A no-op when the rig is already up; a stale, half-up rig is stopped and started afresh.
  down    stop the processes `up` recorded (SIGTERM, then SIGKILL after a grace) and remove the state.
  status  what runs (component, pid, alive, port, RSS); exit status 1 when the rig is not up.
  env     print `export KUBECONFIG=... PATH=.../.rig/bin:$PATH` for eval in a shell.

Everything lives under .rig/ in the repository: bin/ (links made by build.sh), logs/<component>.log,
run/ (certificates, kubeconfigs, etcd data, state.json with pids) and kubeconfig (admin). Every
listener binds 127.0.0.1. Knobs (environment): see KNOBS below and the README.

Only the standard library, `cryptography` and `pyyaml` are used, so it runs from the repo's .venv.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
RIG = ROOT / ".rig"
BIN = RIG / "bin"
LOGS = RIG / "logs"
RUN = RIG / "run"
STATE = RUN / "state.json"
LOCK = RIG / "rig.lock"
KUBECONFIG = RIG / "kubeconfig"
STAGES = Path(__file__).resolve().parent / "stages"
BUILD = Path(__file__).resolve().parent / "build.sh"

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first IP of SERVICE_CIDR: the `kubernetes` Service; in the serving cert
POD_CIDR = "10.244.0.0/16"  # kwok's fake pod IPs; its default /24 runs out after 254 pods
NODE_IP_PREFIX = "10.200"  # fake node InternalIPs 10.200.0.1, ... (never dialled)
NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NODE_LABEL = ("type", "kwok")
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]  # start order

# Environment knobs: name -> (default, meaning). Read once per `up`; the effective values are recorded
# in run/state.json so that `status` and `down` never depend on the caller's environment.
KNOBS: dict[str, tuple[str, str]] = {
    "RIG_ETCD_PORT": ("23790", "etcd client port"),
    "RIG_ETCD_PEER_PORT": ("23800", "etcd peer port"),
    "RIG_APISERVER_PORT": ("16443", "kube-apiserver secure port"),
    "RIG_KCM_PORT": ("16257", "kube-controller-manager secure (health) port"),
    "RIG_SCHEDULER_PORT": ("16259", "kube-scheduler secure (health) port"),
    "RIG_APISERVER_MAX_INFLIGHT": ("200", "kube-apiserver --max-requests-inflight"),
    "RIG_APISERVER_MAX_MUTATING_INFLIGHT": ("100", "kube-apiserver --max-mutating-requests-inflight"),
    "RIG_KCM_QPS": ("100", "kube-controller-manager --kube-api-qps (per controller client)"),
    "RIG_KCM_BURST": ("200", "kube-controller-manager --kube-api-burst"),
    "RIG_SCHEDULER_QPS": ("100", "kube-scheduler --kube-api-qps"),
    "RIG_SCHEDULER_BURST": ("200", "kube-scheduler --kube-api-burst"),
    "RIG_NODES": ("2", "number of fake kwok Nodes"),
    "RIG_NODE_CPU": ("32", "allocatable CPU per fake Node"),
    "RIG_NODE_MEMORY": ("256Gi", "allocatable memory per fake Node"),
    "RIG_NODE_PODS": ("1000", "allocatable pods per fake Node"),
    "RIG_UP_TIMEOUT": ("180", "seconds `up` waits for the whole rig to become ready"),
    "RIG_SKIP_BUILD": ("0", "1: do not run build.sh, use whatever .rig/bin holds"),
}

GRACE_SECONDS = 10.0
T = TypeVar("T")


class RigError(Exception):
    """A failure with one line that names its cause; `main` prints it and exits non-zero."""


def knob(name: str) -> str:
    """The value of an environment knob, or its default from KNOBS."""
    return os.environ.get(name, KNOBS[name][0])


def int_knob(name: str, minimum: int = 0) -> int:
    """An integer knob, validated so that a typo fails `up` with a clear line instead of a flag error."""
    raw = knob(name)
    try:
        value = int(raw)
    except ValueError:
        raise RigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise RigError(f"{name}={value} must be >= {minimum}")
    return value


def say(msg: str) -> None:
    """A progress line; flushed at once so that callers piping our output see it live."""
    print(f"rig: {msg}", flush=True)


def rel(path: Path) -> str:
    """A path as shown to humans: relative to the repo when inside it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


# --- certificates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Paths of the throw-away PKI; all generated by `make_pki`, none ever reused across `up`s."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


# Client identities: file stem -> (CN, O). The controller-manager and scheduler use the identities that
# Kubernetes' bootstrap RBAC policy grants their permissions to, as kubeadm does; kwok and the admin
# are cluster admins.
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("rig-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    "kwok": ("rig-kwok", "system:masters"),
    # The apiserver's identity towards aggregated APIs. Configuring the request-header (front-proxy)
    # authentication also stops the controller-manager and scheduler from logging, forever, that the
    # extension-apiserver-authentication ConfigMap lacks a requestheader CA.
    "front-proxy-client": ("front-proxy-client", None),
}


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_pki(pki: Pki) -> None:
    """Generate a CA, the apiserver's serving cert, the service-account key pair and client certs.

    P-256 keys: generated in milliseconds, accepted by every component (ES256 for service-account
    tokens). Certificates are valid from an hour ago (clock skew) for a year.
    """
    pki.dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("procjob-rig-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki.ca_key, ca_key)
    pki.ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(stem: str, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(pki.key(stem), key)
        pki.crt(stem).write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in (LOOPBACK, SERVICE_IP)]
    leaf("apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    for stem, (cn, org) in CLIENTS.items():
        leaf(stem, _name(cn, org), ExtendedKeyUsageOID.CLIENT_AUTH, [])

    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def kubeconfig_text(pki: Pki, stem: str, server: str) -> str:
    """A self-contained kubeconfig (certificates inlined) for one client identity."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "procjob-rig", "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_crt)}}
        ],
        "users": [
            {
                "name": stem,
                "user": {
                    "client-certificate-data": b64(pki.crt(stem)),
                    "client-key-data": b64(pki.key(stem)),
                },
            }
        ],
        "contexts": [{"name": "procjob-rig", "context": {"cluster": "procjob-rig", "user": stem}}],
        "current-context": "procjob-rig",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_private(path: Path, text: str) -> None:
    """Write a file holding keys readable by its owner only."""
    path.write_text(text)
    path.chmod(0o600)


# --- processes --------------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of `pid`, None when it is not in the table.

    The start time is recorded next to each pid so that `down` never signals an unrelated process
    that reused the pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def proc_starttime(pid: int) -> int | None:
    """The start time of a running `pid`; None when it is gone or a zombie."""
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return stat[1]


def proc_rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 when unknown)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Proc:
    """One rig process as recorded in state.json."""

    name: str
    pid: int
    starttime: int
    port: int | None

    def alive(self) -> bool:
        """True while the very process we started runs (not a zombie, not a reused pid)."""
        return proc_starttime(self.pid) == self.starttime

    def in_process_table(self) -> bool:
        """True while the process we started is running or a zombie not yet collected."""
        stat = proc_stat(self.pid)
        return stat is not None and stat[1] == self.starttime


@dataclass
class State:
    """What `up` started; persisted in run/state.json after each start so that `down` finds it all."""

    ports: dict[str, int]
    procs: list[Proc] = field(default_factory=list)
    started_at: str = ""

    def save(self) -> None:
        STATE.parent.mkdir(parents=True, exist_ok=True)
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "started_at": self.started_at,
                    "ports": self.ports,
                    "procs": [p.__dict__ for p in self.procs],
                },
                indent=2,
            )
        )
        tmp.replace(STATE)

    @staticmethod
    def load() -> State | None:
        try:
            raw = json.loads(STATE.read_text())
        except (OSError, ValueError):
            return None
        return State(
            ports={k: int(v) for k, v in raw.get("ports", {}).items()},
            procs=[Proc(**p) for p in raw.get("procs", [])],
            started_at=raw.get("started_at", ""),
        )


def spawn(state: State, name: str, argv: list[str], port: int | None, env: dict[str, str] | None = None) -> Proc:
    """Start a component in its own session (so it outlives this process and the calling shell).

    Its output goes to .rig/logs/<name>.log; its pid is recorded in state.json immediately.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("wb")
    with log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=RUN,
            env=env,
            start_new_session=True,
        )
    starttime = proc_starttime(popen.pid)
    if starttime is None:  # exited (or became a zombie) at once
        code = popen.wait()
        raise RigError(f"{name} exited at once with code {code}; {last_log_line(name)}")
    proc = Proc(name=name, pid=popen.pid, starttime=starttime, port=port)
    state.procs.append(proc)
    state.save()
    return proc


def last_log_line(name: str) -> str:
    """The last non-empty line of a component's log, to name the cause of a failed start."""
    path = LOGS / f"{name}.log"
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"last log line: {lines[-1][:300]} (see {rel(path)})"
    return f"see {rel(path)}"


def reap(pid: int) -> None:
    """Collect a child's exit status if it is ours (when `up` cleans up after itself)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(procs: list[Proc]) -> None:
    """SIGTERM the given processes (only those still the ones we started), SIGKILL after a grace.

    Clients go first and etcd last, so that the apiserver does not spend its grace period failing to
    reach its storage.
    """
    order = [p for p in reversed(procs) if p.name != "etcd"] + [p for p in procs if p.name == "etcd"]
    groups = [[p for p in order if p.name != "etcd"], [p for p in order if p.name == "etcd"]]
    for group in groups:
        live = [p for p in group if p.alive()]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while live and time.monotonic() < deadline:
            for p in live:
                reap(p.pid)
            live = [p for p in live if p.alive()]
            if live:
                time.sleep(0.05)
        for p in live:
            say(f"{p.name} (pid {p.pid}) ignored SIGTERM for {GRACE_SECONDS:.0f}s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        for p in live:
            reap(p.pid)
    # Processes that outlived `up` are no longer our children: their parent is now PID 1, which may
    # collect exit statuses lazily. Wait briefly for that, so `down` returning means they are gone
    # from the process table (best effort; a zombie holds no port or memory).
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(p.in_process_table() for p in procs):
        for p in procs:
            reap(p.pid)
        time.sleep(0.1)


def remove_state() -> None:
    """Delete run/ (certs, kubeconfigs, etcd data, pids) and the admin kubeconfig; keep bin/ and logs/."""
    shutil.rmtree(RUN, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        KUBECONFIG.unlink()


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise up/down between concurrent callers (e.g. two test sessions starting at once)."""
    RIG.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- HTTP probes ---------------------------------------------------------------------------------------


def admin_ssl() -> ssl.SSLContext:
    """TLS context that verifies the apiserver against the rig CA and presents the admin cert."""
    pki = Pki(RUN / "pki")
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    ctx.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
    return ctx


def insecure_ssl() -> ssl.SSLContext:
    """For the health ports of the controller-manager and scheduler: their serving certs are
    self-signed in memory; we only ever talk to 127.0.0.1."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http(
    url: str,
    ctx: ssl.SSLContext | None = None,
    method: str = "GET",
    body: Any = None,
    content_type: str = "application/json",
    timeout: float = 3.0,
) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body), status 0 when the connection failed."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, ssl.SSLError):
        return 0, b""


def api_url(state: State, path: str) -> str:
    return f"https://{LOOPBACK}:{state.ports['apiserver']}{path}"


def apiserver_ready(state: State) -> bool:
    """GET /readyz with the admin cert."""
    if not (RUN / "pki" / "admin.crt").exists():
        return False
    try:
        ctx = admin_ssl()
    except (OSError, ssl.SSLError):
        return False
    status, body = http(api_url(state, "/readyz"), ctx)
    return status == 200 and body.strip() == b"ok"


def wait_for(what: str, check: Callable[[], T | None], deadline: float, procs: list[Proc], interval: float = 0.1) -> T:
    """Poll `check` until it returns a value, failing fast if a watched process died meanwhile.

    Polls start at 0.1 s and back off to 0.5 s; the overall `up` deadline bounds them.
    """
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        for p in procs:
            if not p.alive():
                reap(p.pid)
                raise RigError(f"{p.name} exited during start-up; {last_log_line(p.name)}")
        if time.monotonic() >= deadline:
            raise RigError(f"timed out waiting for {what} (RIG_UP_TIMEOUT={knob('RIG_UP_TIMEOUT')}s); see {rel(LOGS)}/")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


# --- up -----------------------------------------------------------------------------------------------


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def binaries() -> dict[str, Path]:
    """The rig's executables in .rig/bin; a missing one is a clear error naming it."""
    names = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"]
    found: dict[str, Path] = {}
    for n in names:
        path = BIN / n
        if not (path.exists() and os.access(path, os.X_OK)):
            raise RigError(f"missing tool {rel(path)}; run hack/rig/build.sh (needs Go >= 1.26)")
        found[n] = path
    return found


def run_build() -> None:
    """Run build.sh for the modules the rig needs; a no-op (instant) when its cache is warm."""
    if knob("RIG_SKIP_BUILD") == "1":
        return
    if shutil.which("bash") is None:
        raise RigError("missing tool 'bash' (needed by hack/rig/build.sh)")
    if shutil.which("go") is None:
        try:
            binaries()
        except RigError:
            raise RigError("missing tool 'go' (Go >= 1.26 builds the rig's binaries: make setup)") from None
        say("'go' is not on PATH; using the binaries already linked in .rig/bin without a build check")
        return
    code = subprocess.call(["bash", str(BUILD), "etcd", "k8s", "kwok"], cwd=ROOT)
    if code != 0:
        raise RigError(f"hack/rig/build.sh failed with exit code {code} (its message is above)")


def node_manifest(i: int) -> dict[str, Any]:
    """A fake Node: managed by kwok (annotation), without taints, with generous allocatable."""
    name = f"rig-node-{i}"
    resources = {
        "cpu": knob("RIG_NODE_CPU"),
        "memory": knob("RIG_NODE_MEMORY"),
        "pods": str(int_knob("RIG_NODE_PODS", 1)),
        "ephemeral-storage": "1Ti",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION[0]: NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                NODE_LABEL[0]: NODE_LABEL[1],
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            # Fake, never dialled; gives pods a hostIP as a kubelet's node would.
            "addresses": [
                {"type": "InternalIP", "address": f"{NODE_IP_PREFIX}.{i // 250}.{i % 250 + 1}"},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def nodes_ready(state: State, ctx: ssl.SSLContext, count: int) -> bool:
    """All fake Nodes Ready and untainted (the not-ready taint is gone), so pods schedule at once."""
    sel = f"{NODE_LABEL[0]}%3D{NODE_LABEL[1]}"
    status, body = http(api_url(state, f"/api/v1/nodes?labelSelector={sel}"), ctx)
    if status != 200:
        return False
    items = json.loads(body).get("items", [])
    ready = 0
    for node in items:
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True" and not node.get("spec", {}).get("taints"):
            ready += 1
    return ready >= count


def read_ports() -> dict[str, int]:
    ports = {
        "etcd": int_knob("RIG_ETCD_PORT", 1),
        "etcd-peer": int_knob("RIG_ETCD_PEER_PORT", 1),
        "apiserver": int_knob("RIG_APISERVER_PORT", 1),
        "kube-controller-manager": int_knob("RIG_KCM_PORT", 1),
        "kube-scheduler": int_knob("RIG_SCHEDULER_PORT", 1),
    }
    if len(set(ports.values())) != len(ports):
        raise RigError(f"the rig's ports must differ: {ports}")
    return ports


def is_up(state: State | None) -> bool:
    """Every recorded process alive and the apiserver ready."""
    if state is None or not state.procs:
        return False
    names = {p.name for p in state.procs}
    if names != set(COMPONENTS):
        return False
    return all(p.alive() for p in state.procs) and apiserver_ready(state)


def up() -> int:
    t0 = time.monotonic()
    with locked():
        old = State.load()
        if old is not None and is_up(old):
            say(f"already up (apiserver https://{LOOPBACK}:{old.ports['apiserver']}, {rel(KUBECONFIG)})")
            return 0
        if old is not None or RUN.exists():
            say("found a stale, half-up rig; stopping what is left of it")
            if old is not None:
                stop(old.procs)
            remove_state()

        # Validate every knob before anything is built or started.
        for name in KNOBS:
            if name not in ("RIG_NODE_CPU", "RIG_NODE_MEMORY"):
                int_knob(name)
        node_count = int_knob("RIG_NODES", 1)
        timeout = int_knob("RIG_UP_TIMEOUT", 1)
        ports = read_ports()
        run_build()
        bins = binaries()
        for comp, port in ports.items():
            if not port_free(port):
                env_name = {
                    "etcd": "RIG_ETCD_PORT",
                    "etcd-peer": "RIG_ETCD_PEER_PORT",
                    "apiserver": "RIG_APISERVER_PORT",
                    "kube-controller-manager": "RIG_KCM_PORT",
                    "kube-scheduler": "RIG_SCHEDULER_PORT",
                }[comp]
                raise RigError(f"port {LOOPBACK}:{port} ({comp}) is already in use; free it or set {env_name}")

        state = State(ports=ports, started_at=datetime.datetime.now(datetime.UTC).isoformat())
        try:
            start_all(state, bins, node_count, time.monotonic() + timeout)
        except BaseException as err:
            # Leave nothing half-up behind: stop what started, drop the state, keep the logs.
            stop(state.procs)
            remove_state()
            if isinstance(err, KeyboardInterrupt):
                raise RigError("interrupted; stopped what had started") from None
            raise
    say(f"up in {time.monotonic() - t0:.1f}s; kubeconfig {rel(KUBECONFIG)}")
    say('shell setup: eval "$(.venv/bin/python hack/rig/rig.py env)"')
    return 0


def start_all(state: State, bins: dict[str, Path], node_count: int, deadline: float) -> None:
    """Start the components in dependency order, waiting for each one's readiness signal."""
    RUN.mkdir(parents=True, exist_ok=True)
    state.save()  # an interrupted `up` is then recognised as stale
    pki = Pki(RUN / "pki")
    t = time.monotonic()
    make_pki(pki)
    p = state.ports
    server = f"https://{LOOPBACK}:{p['apiserver']}"
    kubeconfigs: dict[str, Path] = {}
    for stem in ("admin", "kube-controller-manager", "kube-scheduler", "kwok"):
        path = RUN / f"{stem}.kubeconfig"
        write_private(path, kubeconfig_text(pki, stem, server))
        kubeconfigs[stem] = path
    say(f"certificates and kubeconfigs generated ({time.monotonic() - t:.2f}s)")

    # etcd: throw-away data, no fsync (nothing here must survive a crash).
    t = time.monotonic()
    etcd_url = f"http://{LOOPBACK}:{p['etcd']}"
    peer_url = f"http://{LOOPBACK}:{p['etcd-peer']}"
    etcd = spawn(
        state,
        "etcd",
        [
            str(bins["etcd"]),
            "--name=rig",
            f"--data-dir={RUN / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=rig={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        p["etcd"],
    )

    def etcd_ok() -> bool:
        status, body = http(f"{etcd_url}/health")
        return status == 200 and b'"true"' in body

    wait_for("etcd /health", etcd_ok, deadline, [etcd])
    say(f"etcd ready on {LOOPBACK}:{p['etcd']} ({time.monotonic() - t:.1f}s)")

    t = time.monotonic()
    apiserver = spawn(
        state,
        "kube-apiserver",
        [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={p['apiserver']}",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={RUN / 'apiserver'}",
            f"--tls-cert-file={pki.crt('apiserver')}",
            f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.ca_crt}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={server}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={pki.ca_crt}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.crt('front-proxy-client')}",
            f"--proxy-client-key-file={pki.key('front-proxy-client')}",
            "--profiling=false",
            f"--max-requests-inflight={int_knob('RIG_APISERVER_MAX_INFLIGHT')}",
            f"--max-mutating-requests-inflight={int_knob('RIG_APISERVER_MAX_MUTATING_INFLIGHT')}",
        ],
        p["apiserver"],
    )
    wait_for("kube-apiserver /readyz", lambda: apiserver_ready(state), deadline, [etcd, apiserver])
    say(f"kube-apiserver ready on {LOOPBACK}:{p['apiserver']} ({time.monotonic() - t:.1f}s)")
    write_private(KUBECONFIG, kubeconfig_text(pki, "admin", server))

    t = time.monotonic()
    kcm_cfg = kubeconfigs["kube-controller-manager"]
    kcm = spawn(
        state,
        "kube-controller-manager",
        [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kcm_cfg}",
            f"--authentication-kubeconfig={kcm_cfg}",
            f"--authorization-kubeconfig={kcm_cfg}",
            "--leader-elect=false",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={p['kube-controller-manager']}",
            f"--cert-dir={RUN / 'kube-controller-manager'}",
            f"--root-ca-file={pki.ca_crt}",
            f"--service-account-private-key-file={pki.sa_key}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--cluster-name=procjob-rig",
            "--profiling=false",
            f"--kube-api-qps={int_knob('RIG_KCM_QPS', 1)}",
            f"--kube-api-burst={int_knob('RIG_KCM_BURST', 1)}",
        ],
        p["kube-controller-manager"],
    )
    sched_cfg = kubeconfigs["kube-scheduler"]
    sched = spawn(
        state,
        "kube-scheduler",
        [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={sched_cfg}",
            f"--authentication-kubeconfig={sched_cfg}",
            f"--authorization-kubeconfig={sched_cfg}",
            "--leader-elect=false",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={p['kube-scheduler']}",
            f"--cert-dir={RUN / 'kube-scheduler'}",
            "--profiling=false",
            f"--kube-api-qps={int_knob('RIG_SCHEDULER_QPS', 1)}",
            f"--kube-api-burst={int_knob('RIG_SCHEDULER_BURST', 1)}",
        ],
        p["kube-scheduler"],
    )
    # kwok reads ~/.kwok/kwok.yaml when it exists; a private HOME keeps a user's config out of the rig.
    kwok_home = RUN / "kwok-home"
    kwok_home.mkdir(parents=True, exist_ok=True)
    stage_files = sorted(STAGES.glob("*.yaml"))
    if not stage_files:
        raise RigError(f"no kwok stages in {rel(STAGES)}")
    kwok = spawn(
        state,
        "kwok",
        [
            str(bins["kwok"]),
            f"--kubeconfig={kubeconfigs['kwok']}",
            *[f"--config={f}" for f in stage_files],
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION[0]}={NODE_ANNOTATION[1]}",
            "--manage-nodes-with-label-selector=",
            "--manage-single-node=",
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
        ],
        None,
        env={**os.environ, "HOME": str(kwok_home)},
    )
    all_procs = [etcd, apiserver, kcm, sched, kwok]

    ctx = admin_ssl()
    for i in range(node_count):
        manifest = node_manifest(i)
        status, body = http(api_url(state, "/api/v1/nodes"), ctx, "POST", manifest)
        if status not in (200, 201, 409):
            raise RigError(f"creating Node {manifest['metadata']['name']} failed: HTTP {status} {body[:200]!r}")
        # Nodes keep status on create, but make the allocatable certain (kwok keeps what it finds).
        http(
            api_url(state, f"/api/v1/nodes/{manifest['metadata']['name']}/status"),
            ctx,
            "PATCH",
            {"status": manifest["status"]},
            content_type="application/merge-patch+json",
        )

    def health(port: int) -> Callable[[], bool]:
        return lambda: http(f"https://{LOOPBACK}:{port}/healthz", insecure_ssl())[0] == 200

    wait_for("kube-controller-manager /healthz", health(p["kube-controller-manager"]), deadline, all_procs)
    wait_for("kube-scheduler /healthz", health(p["kube-scheduler"]), deadline, all_procs)
    say(f"kube-controller-manager and kube-scheduler healthy ({time.monotonic() - t:.1f}s)")
    wait_for(
        f"{node_count} fake Node(s) Ready and untainted",
        lambda: nodes_ready(state, ctx, node_count),
        deadline,
        all_procs,
    )
    sa = api_url(state, "/api/v1/namespaces/default/serviceaccounts/default")
    wait_for("the default ServiceAccount", lambda: http(sa, ctx)[0] == 200, deadline, all_procs)
    say(f"kwok: {node_count} fake Node(s) Ready; pods can be created ({time.monotonic() - t:.1f}s)")


# --- down / status / env --------------------------------------------------------------------------------


def down() -> int:
    with locked():
        state = State.load()
        if state is None:
            if RUN.exists() or KUBECONFIG.exists():
                remove_state()
                say("not running; removed leftover state")
            else:
                say("not running")
            return 0
        live = [p for p in state.procs if p.alive()]
        stop(state.procs)
        remove_state()
        say(f"stopped {len(live)} process(es) ({', '.join(p.name for p in live) or 'none alive'}); state removed")
    return 0


def status() -> int:
    state = State.load()
    if state is None:
        say("not up (no state)")
        return 1
    print(f"{'component':<26}{'pid':>8}  {'alive':<6}{'listen':<22}{'rss':>10}")
    total = 0
    for p in state.procs:
        alive = p.alive()
        rss = proc_rss_kib(p.pid) if alive else 0
        total += rss
        listen = f"{LOOPBACK}:{p.port}" if p.port else "-"
        print(f"{p.name:<26}{p.pid:>8}  {'yes' if alive else 'NO':<6}{listen:<22}{rss / 1024:>8.0f}Mi")
    print(f"{'total':<58}{total / 1024:>8.0f}Mi")
    ready = apiserver_ready(state)
    print(f"apiserver /readyz: {'ok' if ready else 'NOT ready'}; kubeconfig: {rel(KUBECONFIG)}")
    return 0 if is_up(state) else 1


def env() -> int:
    print(f'export KUBECONFIG={shlex.quote(str(KUBECONFIG))} PATH={shlex.quote(str(BIN))}:"$PATH"')
    return 0


def main(argv: list[str] | None = None) -> int:
    knobs = "\n".join(f"  {k:<38}{v[1]} (default {v[0]})" for k, v in KNOBS.items())
    parser = argparse.ArgumentParser(
        prog="rig.py",
        description="A local Kubernetes rig (etcd, apiserver, controller-manager, scheduler, kwok) on 127.0.0.1.",
        epilog=f"environment knobs:\n{knobs}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[], int]] = {"up": up, "down": down, "status": status, "env": env}

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that an `up` being killed still stops what it started

    signal.signal(signal.SIGTERM, terminate)
    try:
        return commands[args.command]()
    except RigError as err:
        print(f"rig: {args.command} failed: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("rig: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
