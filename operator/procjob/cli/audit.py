"""`procjob db migrate` and `procjob history`: the audit database from the command line.

Both read only PostgreSQL, never the Kubernetes API, so `history` works for jobs whose custom
resource was deleted. The DSN comes from --database-url, else PROCJOB_DATABASE_URL or the file
named by PROCJOB_DATABASE_URL_FILE. Failures are one line on stderr, with the password removed:
exit 2 for configuration (no DSN, bad DSN, authentication), 1 for everything else (unknown job,
database unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from procjob.core.timefmt import human_duration

if TYPE_CHECKING:
    from procjob.adapters.audit import AttemptRow, JobHistory

# Spelled here too (they are procjob.adapters.audit.ENV_DSN / ENV_DSN_FILE) so that building the
# parser does not import psycopg for every `procjob` command; a unit test keeps them equal.
ENV_DSN = "PROCJOB_DATABASE_URL"
ENV_DSN_FILE = "PROCJOB_DATABASE_URL_FILE"
EXIT_FAILURE = 1
EXIT_CONFIG = 2
HEADERS = ("STAGE", "ATTEMPT", "POD", "START", "END", "DURATION", "EXIT", "REASON")


def add_parsers(subparsers: Any) -> None:
    """Add `db migrate` and `history` to the `procjob` command's subparsers."""
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url",
        metavar="DSN",
        help=f"PostgreSQL DSN; overrides ${ENV_DSN} and ${ENV_DSN_FILE} (prefer those: a password given"
        " here is visible in the process list)",
    )

    db = subparsers.add_parser("db", help="manage the audit database")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_migrate = db_sub.add_parser(
        "migrate", parents=[database], help="create or upgrade the audit schema (idempotent)"
    )
    db_migrate.set_defaults(func=_migrate)

    history = subparsers.add_parser(
        "history",
        parents=[database],
        help="attempt timeline of a job from the audit database (also after deletion)",
    )
    history.add_argument("name", nargs="?", metavar="NAME", help="ProcessingJob name (latest job of that name)")
    history.add_argument("-n", "--namespace", default="default", help="namespace (default: %(default)s)")
    history.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    history.add_argument("--uid", help="select the job by UID (e.g. an older job of a reused name)")
    history.set_defaults(func=run_history)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"procjob: error: {message}\n")
    return code


def _run(action: Callable[[str], int], args: argparse.Namespace) -> int:
    """Resolve the DSN, run the action, turn audit errors into one line and an exit code."""
    from procjob.adapters.audit import AuditConfigError, AuditError, resolve_dsn

    try:
        dsn = args.database_url or resolve_dsn(os.environ)
        if not dsn:
            return _fail(f"no database configured: set {ENV_DSN} (or {ENV_DSN_FILE}, or --database-url)", EXIT_CONFIG)
        return action(dsn)
    except AuditConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except AuditError as exc:
        return _fail(str(exc), EXIT_FAILURE)


def _migrate(args: argparse.Namespace) -> int:
    from procjob.adapters.audit import migrate

    def action(dsn: str) -> int:
        applied = migrate(dsn)
        print(f"applied {', '.join(applied)}" if applied else "audit schema is up to date")
        return 0

    return _run(action, args)


def run_history(args: argparse.Namespace) -> int:
    if not args.name and not args.uid:
        return _fail("history needs a NAME or --uid", EXIT_CONFIG)

    def action(dsn: str) -> int:
        found = asyncio.run(_fetch(dsn, args.namespace, args.name, args.uid))
        if found is None:
            what = f"uid {args.uid}" if args.uid and not args.name else f"{args.namespace}/{args.name}"
            return _fail(f"no history for processingjob {what}", EXIT_FAILURE)
        if args.output == "json":
            print(json.dumps(found.to_json_dict(), indent=2))
        else:
            sys.stdout.write(render_history(found))
        return 0

    return _run(action, args)


async def _fetch(dsn: str, namespace: str, name: str | None, uid: str | None) -> JobHistory | None:
    from procjob.adapters.audit import AuditStore

    async with await AuditStore.open(dsn, min_size=1, max_size=1) as store:
        if uid is None:
            assert name is not None
            return await store.history(namespace, name)
        found = await store.history_by_uid(uid)
    if found is not None and name and (found.namespace, found.name) != (namespace, name):
        return None  # the UID exists but belongs to another job: do not show it under this name
    return found


def render_history(history: JobHistory) -> str:
    """A summary line and the attempt timeline as an aligned table."""
    job = history.job
    if job is None:
        state = "no summary recorded yet"
    else:
        state = f"{job.state} ({job.reason})" if job.reason else job.state
        if job.deleted_at is not None:
            state += f", deleted {_time(job.deleted_at)}"
    lines = [f"processingjob {history.namespace}/{history.name} uid {history.uid}: {state}", ""]
    lines.append(render_table(history.attempts) if history.attempts else "no attempts recorded")
    logs = [
        ArchivedLogRow(log.stage, log.attempt, log.container, log.size, log.truncated, log.error, log.item)
        for log in history.logs
    ]
    return "\n".join(lines) + "\n" + render_logs(logs)


@dataclass(frozen=True)
class ArchivedLogRow:
    """One archived container log as the history shows it (`item`: of a fanned-out stage)."""

    stage: str
    attempt: int
    container: str
    size: int
    truncated: bool
    error: str | None
    item: int | None = None


def render_logs(rows: Sequence[ArchivedLogRow]) -> str:
    """The attempts whose logs the operator archived (`kubectl pj logs JOB --stage S --attempt N`, with
    `--item K` for an item of a fanned-out stage)."""
    if not rows:
        return ""
    items = any(row.item is not None for row in rows)
    usage = "--stage S [--item K] --attempt N" if items else "--stage S --attempt N"
    lines = ["", f"archived logs (kubectl pj logs JOB {usage}):"]
    for row in rows:
        if row.error is not None:
            what = f"not archived: {row.error}"
        else:
            what = f"{row.size} bytes" + (", the end of a longer log" if row.truncated else "")
        of_item = "" if row.item is None else f" item {row.item}"
        lines.append(f"  {row.stage}{of_item} attempt {row.attempt} {row.container}: {what}")
    return "\n".join(lines) + "\n"


def grouped(rows: Sequence[AttemptRow]) -> list[AttemptRow]:
    """The rows grouped by stage (in the order the stages first started), then by item, then attempt."""
    first = {stage: i for i, stage in reversed(list(enumerate(r.stage for r in rows)))}
    return sorted(rows, key=lambda r: (first[r.stage], -1 if r.item is None else r.item, r.attempt))


def render_table(rows: Sequence[AttemptRow]) -> str:
    """The aligned STAGE ... REASON table, `-` for what is not known; grouped by stage and item, with an
    ITEM column when a fanned-out stage made attempts."""
    items = any(row.item is not None for row in rows)
    headers = (HEADERS[0], "ITEM", *HEADERS[1:]) if items else HEADERS
    cells = [headers] + [
        (
            row.stage,
            *(("-" if row.item is None else str(row.item),) if items else ()),
            str(row.attempt),
            row.pod_name or "-",
            _time(row.start_time),
            _time(row.end_time),
            _duration(row.duration_seconds),
            "-" if row.exit_code is None else str(row.exit_code),
            row.reason or row.result,
        )
        for row in grouped(rows)
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else human_duration(timedelta(seconds=seconds))
