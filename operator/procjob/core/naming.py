"""The one place pod names are made.

A pod name is deterministic — job name, stage, the item of a fanned-out stage, attempt and the
first 8 characters of the job's UID — so that a crash between recording an attempt and creating its
pod re-creates the same name (409 means: adopt it if its owner UID is ours), and a job re-created
with the same name never adopts its predecessor's pods.
"""

from __future__ import annotations


def pod_name(job_name: str, job_uid: str, stage: str, attempt: int, item: int | None = None) -> str:
    """`<job>-<stage>-a<attempt>-<uid8>`, for an item `<job>-<stage>-i<item>-a<attempt>-<uid8>`; at most
    63 + 1 + 40 + 6 + 5 + 9 characters (< 253)."""
    where = stage if item is None else f"{stage}-i{item}"
    return f"{job_name}-{where}-a{attempt}-{job_uid.replace('-', '')[:8]}"
