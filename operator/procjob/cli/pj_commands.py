"""The `kubectl pj` commands: each checks the job's state, makes its request, and waits for the
operator's acknowledgement.

Cancel, suspend and resume change the spec and then wait (up to --timeout; --no-wait to skip)
until the operator has observed the new generation. Retry sets the annotation `procjob.dev/retry`
to an RFC 3339 timestamp and waits until the operator copies it into `status.lastRetryRequest`.
`retry --all-failed` does that for every retryable failed job in scope (-n, -A, -l) and waits for
all the acknowledgements; `list [--failed]` is the table of jobs, or the dead-letter view.
Each command gets a `Context` (arguments, an API client factory, streams, clock and sleep), so
that tests drive it without a server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from procjob.cli.pj_api import RETRY_ANNOTATION, Api
from procjob.cli.pj_connect import load_access
from procjob.cli.pj_describe import render_describe
from procjob.cli.pj_errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ApiError, PluginError
from procjob.cli.pj_list import is_failed, render, rows
from procjob.cli.pj_state import (
    condition,
    is_finished,
    is_retryable,
    is_suspended,
    job_key,
    observed,
    retry_token,
    same_time,
    state_of,
    status_of,
)
from procjob.models.lifecycle import SUCCEEDED

POLL_SECONDS = 0.5
FAILED_SELECTOR = "status.phase=Failed"  # the CRD's selectable field (procjob.models.crd.SELECTABLE_FIELDS)
# Why a job that is not retryable is refused, by the Succeeded condition's reason.
NOT_RETRYABLE_BECAUSE = {
    "InvalidSpec": "its spec is invalid, a retry would fail the same way",
    "ReconcileError": "the operator could not process it, a retry would be ignored",
}


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


Command = Callable[[Context], int]


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
                f"{job_key(ns, name)}: {what} was recorded, but the operator did not acknowledge it within "
                f"{ctx.args.timeout:g}s (is the operator running and watching namespace {ns}?)"
            )
        ctx.sleep(POLL_SECONDS)


def _change_spec(ctx: Context, spec_field: str, value: bool, verb: str) -> int:
    api, ns = ctx.connect()
    name = ctx.args.job
    key = job_key(ns, name)
    job = api.job(ns, name)
    if is_finished(job):
        raise PluginError(f"{key} has already finished ({state_of(job)}): cannot {verb} it")
    if verb == "resume" and not is_suspended(job):
        raise PluginError(f"{key} is not suspended ({state_of(job)}): nothing to resume")
    if bool((job.get("spec") or {}).get(spec_field)) == value:
        ctx.say(f"{key}: spec.{spec_field} is already {str(value).lower()}; {state_of(job)}")
        generation = int((job.get("metadata") or {}).get("generation") or 0)
    else:
        patched = api.patch_job(ns, name, {"spec": {spec_field: value}})
        generation = int((patched.get("metadata") or {}).get("generation") or 0)
        ctx.say(f"{key}: {verb} requested (spec.{spec_field}={str(value).lower()})")
    if ctx.args.no_wait:
        return EXIT_OK
    job = _wait(ctx, api, ns, name, lambda j: observed(j, generation), f"the {verb} request")
    ctx.say(f"{key}: {state_of(job)}")
    return EXIT_OK


def cmd_cancel(ctx: Context) -> int:
    return _change_spec(ctx, "cancel", True, "cancel")


def cmd_suspend(ctx: Context) -> int:
    return _change_spec(ctx, "suspend", True, "suspend")


def cmd_resume(ctx: Context) -> int:
    return _change_spec(ctx, "suspend", False, "resume")


def cmd_retry(ctx: Context) -> int:
    args = ctx.args
    if getattr(args, "all_failed", False):
        if args.job is not None:
            raise PluginError("retry: give a JOB or --all-failed, not both", EXIT_USAGE)
        return _retry_all_failed(ctx)
    if args.job is None:
        raise PluginError("retry: JOB is required (or --all-failed to retry every failed job)", EXIT_USAGE)
    if getattr(args, "all_namespaces", False) or getattr(args, "selector", None):
        raise PluginError("retry: -A and -l select jobs for --all-failed; with a JOB, use -n", EXIT_USAGE)
    api, ns = ctx.connect()
    name = args.job
    key = job_key(ns, name)
    job = api.job(ns, name)
    if not is_retryable(job):
        raise PluginError(f"{key} is {state_of(job)}: {_not_retryable_because(job)}")
    previous = ((job.get("metadata") or {}).get("annotations") or {}).get(RETRY_ANNOTATION)
    token = retry_token(ctx.clock())
    while token == previous:  # a second retry within the same second: make it a new request
        ctx.sleep(0.2)
        token = retry_token(ctx.clock())
    api.patch_job(ns, name, {"metadata": {"annotations": {RETRY_ANNOTATION: token}}})
    ctx.say(f"{key}: retry requested ({RETRY_ANNOTATION}={token})")
    if ctx.args.no_wait:
        return EXIT_OK
    job = _wait(
        ctx, api, ns, name, lambda j: same_time(status_of(j).get("lastRetryRequest"), token), "the retry request"
    )
    ctx.say(f"{key}: retry acknowledged; {state_of(job)}")
    return EXIT_OK


def _not_retryable_because(job: Mapping[str, Any]) -> str:
    reason = (condition(job, SUCCEEDED) or {}).get("reason")
    return NOT_RETRYABLE_BECAUSE.get(str(reason), "only a Failed job can be retried")


def _scope(ctx: Context) -> tuple[Api, str | None]:
    """The API client and the namespace to list (None: -A, every namespace)."""
    args = ctx.args
    if args.all_namespaces and args.namespace is not None:
        raise PluginError("-A (all namespaces) and -n NAMESPACE cannot be used together", EXIT_USAGE)
    api, ns = ctx.connect()
    return api, None if args.all_namespaces else ns


def _where(ns: str | None, selector: str | None) -> str:
    place = "in any namespace" if ns is None else f"in namespace {ns}"
    return place + (f" matching {selector}" if selector else "")


def list_jobs(api: Api, ns: str | None, selector: str | None, *, failed_only: bool) -> list[dict[str, Any]]:
    """The jobs in scope; with `failed_only`, those that ended Failed. The API server selects them
    by `status.phase=Failed` (the CRD's selectable field); one too old for field selectors on custom
    resources refuses it, and then the plugin lists everything and picks the failed jobs itself."""
    if not failed_only:
        return api.jobs(ns, label_selector=selector)
    try:
        found = api.jobs(ns, label_selector=selector, field_selector=FAILED_SELECTOR)
    except ApiError as exc:
        if exc.status != 400 or "field label" not in exc.message:
            raise
        found = api.jobs(ns, label_selector=selector)
    return [job for job in found if is_failed(job)]


def cmd_list(ctx: Context) -> int:
    args = ctx.args
    api, ns = _scope(ctx)
    found = rows(list_jobs(api, ns, args.selector, failed_only=args.failed), ctx.clock(), failed_only=args.failed)
    if not found and args.output == "table":
        what = "failed processingjobs" if args.failed else "processingjobs"
        ctx.err.write(f"No {what} {_where(ns, args.selector)}.\n")
        return EXIT_OK
    ctx.out.write(render(found, failed_only=args.failed, all_namespaces=ns is None, output=args.output))
    return EXIT_OK


def _retry_all_failed(ctx: Context) -> int:
    """Request a retry of every retryable failed job in scope; each queues like a new job, so the
    operator's --max-running-jobs limits hold however many are retried at once."""
    args = ctx.args
    api, ns = _scope(ctx)
    failed = sorted(
        list_jobs(api, ns, args.selector, failed_only=True),
        key=lambda j: (j["metadata"].get("namespace", ""), j["metadata"].get("name", "")),
    )
    if not failed:
        ctx.say(f"no failed processingjobs {_where(ns, args.selector)}: nothing to retry")
        return EXIT_OK
    token = retry_token(ctx.clock())
    while any(_annotation(j) == token for j in failed):  # a retry within the same second: a new value
        ctx.sleep(0.2)
        token = retry_token(ctx.clock())
    requested: dict[str, str] = {}  # uid -> job key
    skipped = errors = 0
    for job in failed:
        meta = job["metadata"]
        key = job_key(meta.get("namespace", "?"), meta.get("name", "?"))
        if not is_retryable(job):
            skipped += 1
            ctx.say(f"{key}: skipped, {state_of(job)}: {_not_retryable_because(job)}")
            continue
        try:
            api.patch_job(meta["namespace"], meta["name"], {"metadata": {"annotations": {RETRY_ANNOTATION: token}}})
        except ApiError as exc:
            errors += 1
            ctx.err.write(f"kubectl-pj: error: {key}: {exc.message}\n")
            continue
        requested[str(meta.get("uid"))] = key
        ctx.say(f"{key}: retry requested ({RETRY_ANNOTATION}={token})")
    ctx.say(
        f"{len(requested)} of {len(failed)} failed jobs retried, {skipped} not retryable"
        + (f", {errors} refused by the API server" if errors else "")
        + "; they queue for a slot like new jobs (the operator's --max-running-jobs holds)"
    )
    if requested and not args.no_wait:
        _wait_all(ctx, api, ns, requested, token)
        ctx.say(f"all {len(requested)} retry requests acknowledged by the operator")
    return EXIT_FAILURE if errors else EXIT_OK


def _annotation(job: Mapping[str, Any]) -> str | None:
    value = ((job.get("metadata") or {}).get("annotations") or {}).get(RETRY_ANNOTATION)
    return None if value is None else str(value)


def _wait_all(ctx: Context, api: Api, ns: str | None, requested: Mapping[str, str], token: str) -> None:
    """Until the operator has copied `token` into status.lastRetryRequest of every job (one list per
    poll; a job deleted meanwhile needs no acknowledgement)."""
    deadline = time.monotonic() + ctx.args.timeout
    while True:
        jobs = {str(j["metadata"].get("uid")): j for j in api.jobs(ns, label_selector=ctx.args.selector)}
        waiting = [
            key
            for uid, key in requested.items()
            if uid in jobs and not same_time(status_of(jobs[uid]).get("lastRetryRequest"), token)
        ]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            shown = ", ".join(waiting[:5]) + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")
            raise PluginError(
                f"the retry requests were recorded, but the operator did not acknowledge {len(waiting)} of them within"
                f" {ctx.args.timeout:g}s ({shown}; is the operator running and watching their namespaces?)"
            )
        ctx.sleep(POLL_SECONDS)


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


def cmd_history(ctx: Context) -> int:
    """The history from the operator with the caller's token, or from PostgreSQL with a DSN.

    Imported here: pj_history loads the `procjob history` renderer, which the other commands
    do not need."""
    from procjob.cli import pj_history

    args = ctx.args
    source = pj_history.choose_source(args.history_url, args.database_url, args.operator_service, ctx.environ)
    if source.kind == "dsn":
        return _history_from_database(ctx, source.value)
    api, ns = ctx.connect()
    token = pj_history.bearer_token(api.access)
    if source.kind == "url":
        url = pj_history.check_url(str(source.value), args.allow_insecure_http)
        document = pj_history.fetch_direct(url, token, ns, args.job)
    else:
        document = pj_history.fetch_through_proxy(api, str(source.value), token, ns, args.job)
    ctx.out.write(pj_history.to_output(document, args.output))
    return EXIT_OK


def _history_from_database(ctx: Context, dsn: str | None) -> int:
    """`procjob history` for the job, in the kubeconfig's namespace unless -n is given."""
    from procjob.cli import audit

    args = ctx.args
    namespace = args.namespace
    if namespace is None:
        try:
            namespace = load_access(args.kubeconfig, args.context, None, ctx.environ).namespace
        except PluginError:
            namespace = "default"
    history_args = argparse.Namespace(
        name=args.job, namespace=namespace, output=args.output, uid=None, database_url=dsn
    )
    return audit.run_history(history_args)
