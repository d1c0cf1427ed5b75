"""Archived pod logs (`job_logs`): what the operator's log archive writes and `kubectl pj logs`
reads back once the pod is gone.

A row holds the last bytes of one container's log of one attempt, as bytes (bytea: NUL-safe, no
decoding). Its text columns come from the operator's own pods and the API server's error messages,
and are cleaned like every audit row (`procjob.core.sanitize`). An attempt is keyed by job UID,
stage, item (a fanned-out stage's item, None otherwise: each item has its own attempts) and attempt
number. The first archive of an attempt wins, so a repeat after a crash is absorbed. Reading picks
the latest job of a name, as the history does, or the job with a given UID.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import AwareDatetime, Field

from procjob.core.sanitize import clean_text
from procjob.models.base import ApiModel

NAME_CHARS = 253
ERROR_CHARS = 1024


_INSERT = """
INSERT INTO job_logs (job_uid, namespace, name, stage, item, attempt, container, pod_name, pod_uid, content,
                      received_bytes, truncated, complete, error, finished_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT ON CONSTRAINT job_logs_attempt_key DO NOTHING
"""

# `item IS NULL` (a stage without items) or `item = %s`: both use the unique index, where
# `item IS NOT DISTINCT FROM %s` would not.
_NO_ITEM = "item IS NULL"
_AN_ITEM = "item = %s"

_ARCHIVED = "SELECT count(*) FROM job_logs WHERE job_uid = %s AND stage = %s AND {item} AND attempt = %s"

# The latest job of a name among those the audit knows (as history.LATEST_UID picks it), logs included.
_LATEST_UID = """
SELECT uid FROM (
    SELECT uid, created_at AS born FROM jobs WHERE namespace = %(namespace)s AND name = %(name)s
    UNION ALL
    SELECT job_uid, min(occurred_at) FROM audit_events
     WHERE namespace = %(namespace)s AND name = %(name)s GROUP BY job_uid
    UNION ALL
    SELECT job_uid, min(coalesce(finished_at, archived_at)) FROM job_logs
     WHERE namespace = %(namespace)s AND name = %(name)s GROUP BY job_uid
) AS candidates
GROUP BY uid ORDER BY min(born) DESC, uid DESC LIMIT 1
"""

_INDEX = """
SELECT job_uid, namespace, name, stage, item, attempt, container, pod_name, pod_uid, size, received_bytes,
       truncated, complete, error, finished_at, archived_at
  FROM job_logs WHERE job_uid = %s
 ORDER BY coalesce(finished_at, archived_at), stage, item NULLS FIRST, attempt, container
"""

_CONTENT = """
SELECT job_uid, namespace, name, stage, item, attempt, container, pod_name, pod_uid, size, received_bytes,
       truncated, complete, error, finished_at, archived_at, content
  FROM job_logs
 WHERE job_uid = %s AND namespace = %s AND name = %s AND stage = %s AND {item} AND attempt = %s AND container = %s
"""


def _with_item(query: str, item: int | None) -> tuple[str, list[Any]]:
    """The query for a stage without items (None) or for one item, and the item's parameter."""
    return (query.format(item=_NO_ITEM), []) if item is None else (query.format(item=_AN_ITEM), [item])


class ArchivedLog(ApiModel):
    """One container's log of one attempt (of one item, in a fanned-out stage): the last `size` bytes
    of the `received_bytes` read.

    `truncated`: earlier lines exist that `content` does not hold. `complete`: the read reached the
    end of the log (False when its time or transfer bound cut it). `error`: why no log could be read
    (then `content` is empty). `size` and `archived_at` are the database's on the way back. The JSON
    form (the index) never holds the content."""

    job_uid: str
    namespace: str
    name: str
    stage: str
    item: int | None = Field(default=None, ge=0)
    attempt: int
    container: str
    pod_name: str
    pod_uid: str
    content: bytes = Field(default=b"", exclude=True, repr=False)
    received_bytes: int = 0
    truncated: bool = False
    complete: bool = True
    error: str | None = None
    finished_at: AwareDatetime | None = None
    size: int = 0
    archived_at: AwareDatetime | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class LogIndex:
    """The archived logs of one job (no content), oldest attempt first; each says its item, if any."""

    uid: str
    namespace: str
    name: str
    logs: tuple[ArchivedLog, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "namespace": self.namespace,
            "name": self.name,
            "logs": [log.to_json_dict() for log in self.logs],
        }


def _name(value: str) -> str:
    return clean_text(value, NAME_CHARS)


def log_row(log: ArchivedLog) -> tuple[Any, ...]:
    """The INSERT's parameters: names cleaned and bounded, the error message too, bytes as they are."""
    error = None if log.error is None else clean_text(" ".join(log.error.split()), ERROR_CHARS)
    return (
        _name(log.job_uid),
        _name(log.namespace),
        _name(log.name),
        _name(log.stage),
        log.item,
        max(1, log.attempt),
        _name(log.container),
        _name(log.pod_name),
        _name(log.pod_uid),
        bytes(log.content),
        max(log.received_bytes, len(log.content)),
        log.truncated,
        log.complete,
        error,
        log.finished_at,
    )


async def insert_logs(conn: psycopg.AsyncConnection[Any], logs: list[ArchivedLog]) -> int:
    """Insert the logs in one transaction; return how many rows were new."""
    inserted = 0
    async with conn.transaction(), conn.cursor() as cursor:
        for log in logs:
            await cursor.execute(_INSERT, log_row(log))
            inserted += max(0, cursor.rowcount)
    return inserted


async def attempt_archived(
    conn: psycopg.AsyncConnection[Any], job_uid: str, stage: str, attempt: int, item: int | None = None
) -> bool:
    """Whether any container log of the attempt (of `item`, in a fanned-out stage) is archived."""
    query, item_param = _with_item(_ARCHIVED, item)
    cursor = await conn.execute(query.encode(), [job_uid, stage, *item_param, attempt])
    row = await cursor.fetchone()
    return row is not None and int(row[0]) > 0


async def latest_uid(conn: psycopg.AsyncConnection[Any], namespace: str, name: str) -> str | None:
    cursor = await conn.execute(_LATEST_UID, {"namespace": namespace, "name": name})
    row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def read_index(conn: psycopg.AsyncConnection[Any], uid: str) -> tuple[ArchivedLog, ...]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_INDEX, [uid])
        return tuple(_from_row(row) for row in await cursor.fetchall())


async def read_content(
    conn: psycopg.AsyncConnection[Any],
    uid: str,
    namespace: str,
    name: str,
    stage: str,
    attempt: int,
    container: str,
    item: int | None = None,
) -> ArchivedLog | None:
    query, item_param = _with_item(_CONTENT, item)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query.encode(), [uid, namespace, name, stage, *item_param, attempt, container])
        row = await cursor.fetchone()
    return None if row is None else _from_row(row)


def _from_row(row: dict[str, Any]) -> ArchivedLog:
    times = {k: row[k].astimezone(UTC) if row[k] is not None else None for k in ("finished_at", "archived_at")}
    return ArchivedLog(
        job_uid=row["job_uid"],
        namespace=row["namespace"],
        name=row["name"],
        stage=row["stage"],
        item=None if row["item"] is None else int(row["item"]),
        attempt=int(row["attempt"]),
        container=row["container"],
        pod_name=row["pod_name"],
        pod_uid=row["pod_uid"],
        content=bytes(row.get("content") or b""),
        received_bytes=int(row["received_bytes"]),
        truncated=bool(row["truncated"]),
        complete=bool(row["complete"]),
        error=row["error"],
        size=int(row["size"]),
        **times,
    )
