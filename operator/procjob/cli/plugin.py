"""`kubectl pj`: day-2 commands for ProcessingJobs (the `kubectl-pj` executable).

    kubectl pj cancel JOB              spec.cancel: true; the job ends Cancelled
    kubectl pj suspend JOB             spec.suspend: true; the running attempt is stopped, not charged
    kubectl pj resume JOB              spec.suspend: false
    kubectl pj retry JOB               re-run a Failed job from its failed stage
    kubectl pj logs JOB [--stage S] [--attempt N] [-f]
    kubectl pj describe JOB            stages, attempts, retry decisions, conditions, events
    kubectl pj history JOB [-o json]   the audit timeline (also for deleted jobs), read with your own
                                       token from the operator (procjob.cli.pj_history says how)

Everything here is also possible with plain kubectl (each command's --help prints the equivalent):
the plugin adds state checks, waits for the operator's acknowledgement and readable output. It
uses the current kubeconfig (--kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context;
-n/--namespace, else the context's namespace) and makes only API calls that RBAC can grant:
get/patch processingjobs, get pods/log, list events, and for `history` without a URL
get services/proxy of the operator's Service.

Cancel, suspend and resume change the spec and then wait (up to --timeout, default 30 s; --no-wait
to skip) until the operator has observed the new generation. Retry sets the annotation
`procjob.dev/retry` to an RFC 3339 timestamp and waits until the operator copies it into
`status.lastRetryRequest`.

Exit codes: 0 done; 1 the job is unknown, in the wrong state, the API refused, or the operator did
not acknowledge in time (one line on stderr); 2 bad usage or configuration.

This module imports no kopf and no pydantic: the job is read as plain JSON, so a plugin older
or newer than the operator still reads the fields it knows.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from procjob.core.naming import pod_name
from procjob.core.timefmt import human_duration, parse_time

# Spelled here rather than imported from procjob.models (which loads pydantic and the whole API
# model) to keep `kubectl pj` quick to start; tests/integration/test_plugin.py keeps them equal.
GROUP = "procjob.dev"
VERSION = "v1alpha1"
PLURAL = "processingjobs"
LABEL_JOB_UID = f"{GROUP}/job-uid"
RETRY_ANNOTATION = f"{GROUP}/retry"
CONTAINER = "main"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
DEFAULT_TIMEOUT = 30.0
POLL_SECONDS = 0.5
IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class PluginError(Exception):
    """A failure to report as one line on stderr with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiError(PluginError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message or reason or f"HTTP {status}")
        self.status = status
        self.reason = reason


# ------------------------------------------------------------------------------- kubeconfig
@dataclass(frozen=True)
class Access:
    """Where the API server is and how to talk to it, resolved from a kubeconfig."""

    server: str
    namespace: str
    verify: ssl.SSLContext | bool
    headers: Mapping[str, str]


def _kubeconfig_paths(explicit: str | None, environ: Mapping[str, str]) -> list[Path]:
    if explicit:
        return [Path(explicit).expanduser()]
    if environ.get("KUBECONFIG"):
        return [Path(p).expanduser() for p in environ["KUBECONFIG"].split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def _merge_kubeconfigs(paths: Sequence[Path]) -> dict[str, Any]:
    """kubectl's merge rules: the first file that names an entry (or sets current-context) wins.

    Each cluster and user remembers the directory of its file, for relative certificate paths.
    """
    merged: dict[str, Any] = {"clusters": {}, "contexts": {}, "users": {}, "current-context": ""}
    for path in paths:
        if not path.is_file():
            continue
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PluginError(f"cannot read kubeconfig {path}: {exc}", EXIT_USAGE) from None
        for section, key in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
            for entry in config.get(section) or []:
                name = entry.get("name")
                if name and name not in merged[section]:
                    merged[section][name] = {**(entry.get(key) or {}), "_dir": path.parent}
        if not merged["current-context"] and config.get("current-context"):
            merged["current-context"] = config["current-context"]
    return merged


def _pem(data: str) -> bytes:
    return base64.b64decode(data)


def _resolve(base: Path, value: str) -> str:
    return value if os.path.isabs(value) else str(base / value)


def _exec_credential(user: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Run a client-go credential plugin (`users[].user.exec`) and return its ExecCredential status."""
    spec = user["exec"]
    command = str(spec.get("command") or "")
    if os.sep in command:
        command = _resolve(user["_dir"], command)
    env = dict(environ)
    env.update({str(e["name"]): str(e["value"]) for e in spec.get("env") or []})
    api_version = spec.get("apiVersion", "client.authentication.k8s.io/v1")
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    try:
        proc = subprocess.run(
            [command, *[str(a) for a in spec.get("args") or []]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PluginError(f"credential plugin {command!r} failed: {exc}", EXIT_USAGE) from None
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise PluginError(f"credential plugin {command!r} failed: {detail[0]}", EXIT_USAGE)
    try:
        status: dict[str, Any] = json.loads(proc.stdout)["status"]
    except (ValueError, KeyError, TypeError):
        raise PluginError(f"credential plugin {command!r} printed no ExecCredential status", EXIT_USAGE) from None
    return status


def _ssl_context(cluster: Mapping[str, Any], user: Mapping[str, Any], client_cert: tuple[str, str] | None) -> Any:
    ctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ctx.load_verify_locations(cadata=_pem(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=_resolve(cluster["_dir"], cluster["certificate-authority"]))
    cert_data = user.get("client-certificate-data")
    key_data = user.get("client-key-data")
    if client_cert is not None:
        cert_data, key_data = (base64.b64encode(part.encode()).decode() for part in client_cert)
    if cert_data and key_data:
        # ssl loads client certificates from files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="kubectl-pj-") as tmp:
            cert, key = Path(tmp, "client.crt"), Path(tmp, "client.key")
            cert.write_bytes(_pem(cert_data))
            with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as fh:
                fh.write(_pem(key_data))
            ctx.load_cert_chain(cert, key)
    elif user.get("client-certificate"):
        ctx.load_cert_chain(
            _resolve(user["_dir"], user["client-certificate"]), _resolve(user["_dir"], user["client-key"])
        )
    return ctx


def _in_cluster(namespace: str | None, environ: Mapping[str, str]) -> Access | None:
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token_file = IN_CLUSTER_DIR / "token"
    if not host or not port or not token_file.is_file():
        return None
    ctx = ssl.create_default_context(cafile=str(IN_CLUSTER_DIR / "ca.crt"))
    ns_file = IN_CLUSTER_DIR / "namespace"
    default_ns = ns_file.read_text().strip() if ns_file.is_file() else "default"
    host = f"[{host}]" if ":" in host else host
    return Access(
        server=f"https://{host}:{port}",
        namespace=namespace or default_ns,
        verify=ctx,
        headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
    )


def load_access(
    kubeconfig: str | None, context: str | None, namespace: str | None, environ: Mapping[str, str]
) -> Access:
    """Resolve server, credentials and namespace as kubectl does (a subset: no auth-provider)."""
    paths = _kubeconfig_paths(kubeconfig, environ)
    if kubeconfig and not paths[0].is_file():
        raise PluginError(f"kubeconfig {kubeconfig} not found", EXIT_USAGE)
    merged = _merge_kubeconfigs(paths)
    name = context or merged["current-context"]
    if not name:
        found = _in_cluster(namespace, environ)
        if found is not None:
            return found
        where = ", ".join(str(p) for p in paths)
        raise PluginError(f"no current context in the kubeconfig ({where}); use --context", EXIT_USAGE)
    ctx = merged["contexts"].get(name)
    if ctx is None:
        raise PluginError(f"context {name!r} not found in the kubeconfig", EXIT_USAGE)
    cluster = merged["clusters"].get(ctx.get("cluster"))
    if cluster is None or not cluster.get("server"):
        raise PluginError(f"cluster {ctx.get('cluster')!r} of context {name!r} not found in the kubeconfig", EXIT_USAGE)
    user = merged["users"].get(ctx.get("user"), {"_dir": Path.cwd()})
    headers: dict[str, str] = {}
    client_cert: tuple[str, str] | None = None
    if user.get("auth-provider"):
        provider = (user["auth-provider"] or {}).get("name", "?")
        raise PluginError(
            f"auth-provider {provider!r} is not supported by kubectl-pj; use an exec credential plugin", EXIT_USAGE
        )
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(_resolve(user["_dir"], user["tokenFile"])).read_text().strip()
    if not token and user.get("exec"):
        status = _exec_credential(user, environ)
        token = status.get("token")
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            client_cert = (status["clientCertificateData"], status["clientKeyData"])
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    server = str(cluster["server"]).rstrip("/")
    verify = _ssl_context(cluster, user, client_cert) if server.startswith("https") else False
    return Access(
        server=server, namespace=namespace or ctx.get("namespace") or "default", verify=verify, headers=headers
    )


# -------------------------------------------------------------------------------------- API
class Api:
    """The few calls the plugin makes, on a small httpx client."""

    def __init__(self, access: Access, *, transport: httpx.BaseTransport | None = None) -> None:
        self.access = access
        self.server = access.server
        self.http = httpx.Client(
            base_url=access.server,
            verify=access.verify,
            headers={"Accept": "application/json", "User-Agent": "kubectl-pj", **access.headers},
            timeout=httpx.Timeout(30.0, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            resp = self.http.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the API server at {self.server}: {exc}") from None
        if resp.status_code >= 300:
            raise _api_error(resp)
        return resp.json()

    @staticmethod
    def job_path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self.request("GET", self.job_path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                raise PluginError(f"processingjob {namespace}/{name} not found") from None
            raise
        return found

    def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self.request(
            "PATCH", self.job_path(namespace, name), body=patch, content_type="application/merge-patch+json"
        )
        return patched

    def events(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        found = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/events", params={"fieldSelector": f"involvedObject.uid={uid}"}
        )
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    def stream_log(self, namespace: str, pod: str, params: Mapping[str, str]) -> Iterator[bytes]:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        try:
            with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)) as resp:
                if resp.status_code >= 300:
                    resp.read()
                    raise _api_error(resp)
                yield from resp.iter_bytes()
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the API server at {self.server}: {exc}") from None


def _api_error(resp: httpx.Response) -> ApiError:
    try:
        problem = resp.json()
    except ValueError:
        problem = {"message": resp.text[:500].strip()}
    if not isinstance(problem, dict):
        problem = {"message": str(problem)[:500]}
    return ApiError(resp.status_code, str(problem.get("reason") or ""), str(problem.get("message") or ""))


# ------------------------------------------------------------------------------- job state
def _status(job: Mapping[str, Any]) -> dict[str, Any]:
    return dict(job.get("status") or {})


def condition(job: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in _status(job).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def is_finished(job: Mapping[str, Any]) -> bool:
    cond = condition(job, "Succeeded")
    return cond is not None and cond.get("status") in ("True", "False")


NOT_RETRYABLE = ("Cancelled", "InvalidSpec")


def is_retryable(job: Mapping[str, Any]) -> bool:
    """Failed, and a retry can help: Succeeded=False for any reason but Cancelled and InvalidSpec
    (the operator acknowledges, and ignores, a retry request for those)."""
    cond = condition(job, "Succeeded")
    return cond is not None and cond.get("status") == "False" and cond.get("reason") not in NOT_RETRYABLE


def is_suspended(job: Mapping[str, Any]) -> bool:
    cond = condition(job, "Suspended")
    return bool((job.get("spec") or {}).get("suspend")) or (cond is not None and cond.get("status") == "True")


def state_of(job: Mapping[str, Any]) -> str:
    """`Running: stage b (2/3) attempt 1 running`, `Failed (BackoffLimitExceeded): ...`, `Succeeded`."""
    cond = condition(job, "Succeeded")
    if cond is None:
        return "Pending: not yet seen by the operator"
    reason, message = cond.get("reason") or "Unknown", cond.get("message") or ""
    if cond.get("status") == "True":
        head = "Succeeded"
    elif cond.get("status") == "False":
        head = "Cancelled" if reason == "Cancelled" else f"Failed ({reason})"
    else:
        head = reason
    return f"{head}: {message}" if message and message.lower() != head.lower() else head


def _observed(job: Mapping[str, Any], generation: int) -> bool:
    return int(_status(job).get("observedGeneration") or 0) >= generation


def _same_time(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return parse_time(a) == parse_time(b)
    except ValueError:
        return a == b


def retry_token(now: datetime) -> str:
    """The retry request value: an RFC 3339 UTC timestamp to the second (as Argo CD's action writes)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------- commands
@dataclass
class Context:
    """What every command gets: the parsed arguments, an API client factory, output streams."""

    args: argparse.Namespace
    connect: Callable[[], tuple[Api, str]]
    out: Any = sys.stdout
    err: Any = sys.stderr
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _key(ns: str, name: str) -> str:
    return f"processingjob {ns}/{name}"


def _wait(
    ctx: Context, api: Api, ns: str, name: str, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + ctx.args.timeout
    while True:
        job = api.job(ns, name)
        if done(job):
            return job
        if time.monotonic() >= deadline:
            raise PluginError(
                f"{_key(ns, name)}: {what} was recorded, but the operator did not acknowledge it within "
                f"{ctx.args.timeout:g}s (is the operator running and watching namespace {ns}?)"
            )
        ctx.sleep(POLL_SECONDS)


def _change_spec(ctx: Context, field: str, value: bool, verb: str) -> int:
    api, ns = ctx.connect()
    name = ctx.args.job
    job = api.job(ns, name)
    if is_finished(job):
        raise PluginError(f"{_key(ns, name)} has already finished ({state_of(job)}): cannot {verb} it")
    spec = job.get("spec") or {}
    if verb == "resume" and not is_suspended(job):
        raise PluginError(f"{_key(ns, name)} is not suspended ({state_of(job)}): nothing to resume")
    if bool(spec.get(field)) == value:
        ctx.say(f"{_key(ns, name)}: spec.{field} is already {str(value).lower()}; {state_of(job)}")
        generation = int((job.get("metadata") or {}).get("generation") or 0)
    else:
        patched = api.patch_job(ns, name, {"spec": {field: value}})
        generation = int((patched.get("metadata") or {}).get("generation") or 0)
        ctx.say(f"{_key(ns, name)}: {verb} requested (spec.{field}={str(value).lower()})")
    if ctx.args.no_wait:
        return EXIT_OK
    job = _wait(ctx, api, ns, name, lambda j: _observed(j, generation), f"the {verb} request")
    ctx.say(f"{_key(ns, name)}: {state_of(job)}")
    return EXIT_OK


def cmd_cancel(ctx: Context) -> int:
    return _change_spec(ctx, "cancel", True, "cancel")


def cmd_suspend(ctx: Context) -> int:
    return _change_spec(ctx, "suspend", True, "suspend")


def cmd_resume(ctx: Context) -> int:
    return _change_spec(ctx, "suspend", False, "resume")


def cmd_retry(ctx: Context) -> int:
    api, ns = ctx.connect()
    name = ctx.args.job
    job = api.job(ns, name)
    if not is_retryable(job):
        if (condition(job, "Succeeded") or {}).get("reason") == "InvalidSpec":
            raise PluginError(
                f"{_key(ns, name)} is {state_of(job)}: its spec is invalid, a retry would fail the same way"
            )
        raise PluginError(f"{_key(ns, name)} is {state_of(job)}: only a Failed job can be retried")
    previous = ((job.get("metadata") or {}).get("annotations") or {}).get(RETRY_ANNOTATION)
    token = retry_token(ctx.clock())
    while token == previous:  # a second retry within the same second: make it a new request
        ctx.sleep(0.2)
        token = retry_token(ctx.clock())
    api.patch_job(ns, name, {"metadata": {"annotations": {RETRY_ANNOTATION: token}}})
    ctx.say(f"{_key(ns, name)}: retry requested ({RETRY_ANNOTATION}={token})")
    if ctx.args.no_wait:
        return EXIT_OK
    job = _wait(
        ctx,
        api,
        ns,
        name,
        lambda j: _same_time(_status(j).get("lastRetryRequest"), token),
        "the retry request",
    )
    ctx.say(f"{_key(ns, name)}: retry acknowledged; {state_of(job)}")
    return EXIT_OK


def pick_attempt(job: Mapping[str, Any], stage: str | None, attempt: int | None) -> tuple[str, int, str]:
    """(stage, attempt, pod name) for `logs`: by default the current stage's latest attempt, else
    the last stage that ran. Attempts no longer listed in status get their (deterministic) pod name."""
    meta = job.get("metadata") or {}
    key = _key(meta.get("namespace", "?"), meta.get("name", "?"))
    stages: list[dict[str, Any]] = _status(job).get("stages") or []
    names = [s.get("name") for s in (job.get("spec") or {}).get("stages") or []]
    if stage is None:
        stage = _status(job).get("currentStage")
        if stage is None:
            started = [s["name"] for s in stages if s.get("attemptCount") or s.get("attempts")]
            if not started:
                raise PluginError(f"{key} has not started any attempt yet")
            stage = started[-1]
    elif stage not in names:
        raise PluginError(f"{key} has no stage {stage!r} (stages: {', '.join(str(n) for n in names)})")
    status = next((s for s in stages if s.get("name") == stage), {})
    attempts: list[dict[str, Any]] = status.get("attempts") or []
    count = int(status.get("attemptCount") or len(attempts))
    if attempt is None:
        if not attempts:
            raise PluginError(f"{key}: stage {stage} has not started an attempt yet")
        attempt = int(attempts[-1]["attempt"])
    elif not 1 <= attempt <= count:
        raise PluginError(f"{key}: stage {stage} has no attempt {attempt} (attempts made: {count})")
    listed = next((a for a in attempts if a.get("attempt") == attempt), None)
    pod = listed["podName"] if listed and listed.get("podName") else pod_name(meta["name"], meta["uid"], stage, attempt)
    return stage, attempt, pod


def cmd_logs(ctx: Context) -> int:
    api, ns = ctx.connect()
    job = api.job(ns, ctx.args.job)
    stage, attempt, pod = pick_attempt(job, ctx.args.stage, ctx.args.attempt)
    ctx.err.write(f"==> pod {pod} (stage {stage}, attempt {attempt}) <==\n")
    ctx.err.flush()
    params = {"container": CONTAINER}
    if ctx.args.follow:
        params["follow"] = "true"
    if ctx.args.tail is not None:
        params["tailLines"] = str(ctx.args.tail)
    out = getattr(ctx.out, "buffer", None)
    try:
        for chunk in api.stream_log(ns, pod, params):
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                ctx.out.write(chunk.decode(errors="replace"))
    except ApiError as exc:
        hint = ""
        if exc.status == 404:
            hint = " (finished pods are deleted by the job's podGC policy; `kubectl pj history` keeps the record)"
        raise PluginError(f"logs are not available: {exc.message}{hint}") from None
    return EXIT_OK


def cmd_history(ctx: Context) -> int:
    """The history from the operator with the caller's token, or from PostgreSQL with a DSN."""
    from procjob.cli import audit, pj_history

    args = ctx.args
    source = pj_history.choose_source(args.history_url, args.database_url, args.operator_service, ctx.environ)
    if source.kind == "dsn":
        namespace = args.namespace
        if namespace is None:
            try:
                namespace = load_access(args.kubeconfig, args.context, None, ctx.environ).namespace
            except PluginError:
                namespace = "default"
        history_args = argparse.Namespace(
            name=args.job, namespace=namespace, output=args.output, uid=None, database_url=source.value
        )
        return audit._history(history_args)
    api, ns = ctx.connect()
    token = pj_history.bearer_token(api.access)
    if source.kind == "url":
        url = pj_history.check_url(str(source.value), args.allow_insecure_http)
        document = pj_history.fetch_direct(url, token, ns, args.job)
    else:
        document = pj_history.fetch_through_proxy(api, str(source.value), token, ns, args.job)
    ctx.out.write(pj_history.to_output(document, args.output))
    return EXIT_OK


# --------------------------------------------------------------------------------- describe
def _when(value: str | None, now: datetime) -> str:
    at = parse_time(value) if value else None
    if at is None:
        return "-"
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} (in {human_duration(at - now)})" if at > now else f"{stamp} ({human_duration(now - at)} ago)"


def _short(value: str | None) -> str:
    at = parse_time(value) if value else None
    return "-" if at is None else at.astimezone(UTC).strftime("%H:%M:%S")


def _span(start: str | None, end: str | None, now: datetime) -> str:
    begin = parse_time(start) if start else None
    if begin is None:
        return "-"
    finish = parse_time(end) if end else None
    return human_duration((finish or now) - begin) + ("" if finish else "+")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        indent + "   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def render_describe(job: Mapping[str, Any], events: Sequence[Mapping[str, Any]] | None, now: datetime) -> str:
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = _status(job)
    lines = [
        f"Name:         {meta.get('name')}",
        f"Namespace:    {meta.get('namespace')}",
        f"UID:          {meta.get('uid')}",
        f"Created:      {_when(meta.get('creationTimestamp'), now)}",
        f"State:        {state_of(job)}",
    ]
    if status.get("phase"):
        lines.append(f"Phase:        {status['phase']}")
    lines.append(f"Progress:     {status.get('progress') or '-'}  (attempts: {status.get('attempts', 0)})")
    lines.append(f"Started:      {_when(status.get('startTime'), now)}")
    lines.append(f"Finished:     {_when(status.get('completionTime'), now)}")
    if status.get("duration"):
        lines.append(f"Duration:     {status['duration']}")
    queue = status.get("queue") or {}
    if queue.get("position"):
        eta = queue.get("estimatedStartTime")
        lines.append(
            f"Queue:        position {queue['position']}" + (f", estimated start {_when(eta, now)}" if eta else "")
        )
    requests = [f"{k}=true" for k in ("suspend", "cancel") if spec.get(k)]
    retry = (meta.get("annotations") or {}).get(RETRY_ANNOTATION)
    if retry:
        acked = "acknowledged" if _same_time(status.get("lastRetryRequest"), retry) else "not yet acknowledged"
        requests.append(f"retry {retry} ({acked})")
    if requests:
        lines.append(f"Requests:     {', '.join(requests)}")
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if observed is not None and generation is not None and int(observed) < int(generation):
        lines.append(f"Observed:     generation {observed} of {generation} (the operator has not caught up yet)")

    stage_status = {s.get("name"): s for s in status.get("stages") or []}
    lines += ["", "Stages:"]
    rows = []
    for item in spec.get("stages") or []:
        name = item.get("name", "?")
        st = stage_status.get(name, {})
        what = f"uses: {item['uses']}" if item.get("uses") else str(item.get("image") or "-")
        rows.append(
            [
                name,
                st.get("state", "Pending"),
                str(st.get("attemptCount", 0)),
                str(st.get("chargedFailures", 0)),
                _span(st.get("startTime"), st.get("completionTime"), now) if st.get("startTime") else "-",
                _when(st.get("nextAttemptTime"), now) if st.get("nextAttemptTime") else "-",
                what,
            ]
        )
    lines += table(["STAGE", "STATE", "ATTEMPTS", "CHARGED", "DURATION", "NEXT ATTEMPT", "RUNS"], rows)

    attempt_rows = []
    for item in spec.get("stages") or []:
        st = stage_status.get(item.get("name"), {})
        for a in st.get("attempts") or []:
            reason = a.get("reason") or ""
            if a.get("charged") is False and a.get("state") == "Failed":
                reason += " (not charged)"
            attempt_rows.append(
                [
                    str(st.get("name")),
                    str(a.get("attempt")),
                    a.get("state", "-"),
                    a.get("podName", "-"),
                    _short(a.get("startTime") or a.get("createTime")),
                    _short(a.get("finishTime")),
                    _span(a.get("startTime") or a.get("createTime"), a.get("finishTime"), now),
                    "-" if a.get("exitCode") is None else str(a["exitCode"]),
                    reason or "-",
                ]
            )
    lines += ["", "Attempts:"]
    if attempt_rows:
        lines += table(["STAGE", "#", "STATE", "POD", "START", "END", "DURATION", "EXIT", "REASON"], attempt_rows)
    else:
        lines.append("  (none yet)")

    decisions = []
    for item in spec.get("stages") or []:
        st = stage_status.get(item.get("name"), {})
        d = st.get("lastRetryDecision")
        if d:
            code = f", exit {d['exitCode']}" if d.get("exitCode") is not None else ""
            delay = f", next attempt after {d['delaySeconds']:g}s" if d.get("delaySeconds") is not None else ""
            decisions.append(
                f"  {st.get('name')}: {d.get('failureReason')}{code} matched {d.get('rule')} -> {d.get('action')}"
                f"{delay}; {d.get('retriesLeft')} charged {'retry' if d.get('retriesLeft') == 1 else 'retries'} left"
            )
    if decisions:
        lines += ["", "Retry decisions (latest per stage):", *decisions]

    lines += ["", "Conditions:"]
    conds = status.get("conditions") or []
    if conds:
        lines += table(
            ["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"],
            [
                [
                    c.get("type", ""),
                    c.get("status", ""),
                    c.get("reason", ""),
                    _span(c.get("lastTransitionTime"), None, now).rstrip("+") + " ago",
                    c.get("message", ""),
                ]
                for c in conds
            ],
        )
    else:
        lines.append("  (none: the operator has not reconciled this job yet)")

    if events is not None:
        lines += ["", "Events:"]
        recent = sorted(events, key=lambda e: str(e.get("eventTime") or e.get("lastTimestamp") or ""))[-15:]
        if recent:
            lines += table(
                ["AGE", "TYPE", "REASON", "MESSAGE"],
                [
                    [
                        _span(e.get("lastTimestamp") or e.get("eventTime"), None, now).rstrip("+"),
                        e.get("type", ""),
                        e.get("reason", ""),
                        e.get("message", ""),
                    ]
                    for e in recent
                ],
            )
        else:
            lines.append("  (none)")
    return "\n".join(lines) + "\n"


def cmd_describe(ctx: Context) -> int:
    api, ns = ctx.connect()
    job = api.job(ns, ctx.args.job)
    events: list[dict[str, Any]] | None
    try:
        events = api.events(ns, (job.get("metadata") or {}).get("uid", ""))
    except ApiError:
        events = None  # e.g. no RBAC to list events: describe the job without them
    ctx.out.write(render_describe(job, events, ctx.clock()))
    return EXIT_OK


# ----------------------------------------------------------------------------------- parser
EQUIVALENTS = {
    "cancel": 'kubectl patch pj JOB --type=merge -p \'{"spec":{"cancel":true}}\'',
    "suspend": 'kubectl patch pj JOB --type=merge -p \'{"spec":{"suspend":true}}\'',
    "resume": 'kubectl patch pj JOB --type=merge -p \'{"spec":{"suspend":false}}\'',
    "retry": f"kubectl annotate pj JOB --overwrite {RETRY_ANNOTATION}=$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "logs": f"kubectl logs -l {LABEL_JOB_UID}=UID,{GROUP}/stage=STAGE,{GROUP}/attempt=N -c {CONTAINER}",
    "describe": "kubectl describe pj JOB; kubectl get pj JOB -o yaml",
    "history": 'curl -H "Authorization: Bearer $TOKEN" URL/api/v1/namespaces/NS/processingjobs/JOB/history',
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given after the subcommand does not reset one given before it.
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path to the kubeconfig file")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context to use")
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace of the job")

    parser = argparse.ArgumentParser(
        prog="kubectl pj",
        description=__doc__.split("\n\n")[0],
        epilog="Each command's --help shows the plain kubectl equivalent.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[Context], int], helptext: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=helptext,
            description=f"{helptext}\n\nkubectl equivalent:\n  {EQUIVALENTS[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        p.add_argument("job", metavar="JOB", help="ProcessingJob name")
        p.set_defaults(func=func)
        return p

    def waits(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            help=f"seconds to wait for the operator to acknowledge the {what} (default %(default)g)",
        )
        p.add_argument("--no-wait", action="store_true", help="return once the request is recorded")

    waits(add("cancel", cmd_cancel, "cancel a job: its pods are deleted and it ends Cancelled"), "cancel")
    waits(add("suspend", cmd_suspend, "suspend a job: the running attempt is stopped, not charged"), "suspend")
    waits(add("resume", cmd_resume, "resume a suspended job"), "resume")
    waits(add("retry", cmd_retry, "re-run a Failed job from its failed stage"), "retry")
    logs = add("logs", cmd_logs, "print the logs of a stage's attempt (default: the latest attempt)")
    logs.add_argument("--stage", help="stage name (default: the current stage, else the last one that ran)")
    logs.add_argument("--attempt", type=int, help="attempt number (default: the stage's latest)")
    logs.add_argument("-f", "--follow", action="store_true", help="stream the logs")
    logs.add_argument("--tail", type=int, help="only the last N lines")
    add("describe", cmd_describe, "show stages, attempts, retry decisions, conditions and events")
    history = add("history", cmd_history, "attempt timeline from the audit (also after deletion)")
    history.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    history.add_argument(
        "--history-url",
        metavar="URL",
        help="the operator's HTTP endpoint, e.g. https://procjob.example.com; default $PROCJOB_HISTORY_URL, else"
        " the API server's service proxy to --operator-service; your kubeconfig's bearer token is sent",
    )
    history.add_argument(
        "--operator-service",
        metavar="NAMESPACE/NAME",
        help="the operator's Service for the service proxy; default $PROCJOB_OPERATOR_SERVICE or"
        " procjob-system/procjob-metrics",
    )
    history.add_argument(
        "--allow-insecure-http", action="store_true", help="allow an http:// --history-url that is not the loopback"
    )
    history.add_argument(
        "--database-url",
        metavar="DSN",
        help="read PostgreSQL directly (platform admins); also $PROCJOB_DATABASE_URL or the file named by"
        " $PROCJOB_DATABASE_URL_FILE when no history URL is set",
    )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for option in ("kubeconfig", "context", "namespace"):
        if not hasattr(args, option):
            setattr(args, option, None)
    env = os.environ if environ is None else environ
    clients: list[Api] = []

    def connect() -> tuple[Api, str]:
        access = load_access(args.kubeconfig, args.context, args.namespace, env)
        api = Api(access)
        clients.append(api)
        return api, access.namespace

    try:
        code: int = args.func(Context(args=args, connect=connect, environ=env))
        return code
    except PluginError as exc:
        sys.stderr.write(f"kubectl-pj: error: {exc.message}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    finally:
        for api in clients:
            api.close()


if __name__ == "__main__":
    # `python -m procjob.cli.plugin`: run the importable module's main, not this __main__ copy, so
    # that the PluginError raised by modules importing procjob.cli.plugin (pj_history) is the
    # class main() catches.
    from procjob.cli.plugin import main as _main

    sys.exit(_main())
