"""Secrets out of stored spec snapshots: headers, credential-like env values and `with` keys."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procjob.core.redact import MAX_DEPTH, REDACTED, TOO_DEEP, looks_like_credential, redact_spec


def fetch_stage(**params: Any) -> dict[str, Any]:
    return {"name": "fetch", "uses": "fetch", "with": {"url": "https://example.org/a.jpg", **params}}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("API_TOKEN", True),
        ("github_token", True),
        ("DB_PASSWORD", True),
        ("PASSWD", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("INPUT_KEY", True),  # broad on purpose: a false positive only hides a value
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("Authorization", True),
        ("SESSION_ID", True),
        ("cookieJar", True),
        ("PRIVATE_PEM", True),
        ("INPUT_URL", False),
        ("LOG_LEVEL", False),
        ("bucket", False),
        ("", False),
    ],
)
def test_a_name_looks_like_a_credential_when_it_contains_a_marker_in_any_case(name: str, expected: bool) -> None:
    assert looks_like_credential(name) is expected


def test_non_text_names_are_not_credentials() -> None:
    assert not looks_like_credential(None)
    assert not looks_like_credential(42)


def test_fetch_header_values_are_redacted_and_their_names_kept() -> None:
    spec = {"stages": [fetch_stage(headers={"Authorization": "Bearer abc", "Accept": "image/*"}, bucket="media")]}
    redacted = redact_spec(spec)
    assert redacted["stages"][0]["with"] == {
        "url": "https://example.org/a.jpg",
        "headers": {"Authorization": REDACTED, "Accept": REDACTED},
        "bucket": "media",
    }


def test_headers_given_as_a_list_or_a_scalar_are_redacted_too() -> None:
    listed = redact_spec({"stages": [fetch_stage(headers=[{"name": "X-Api", "value": "s3cr3t"}, "raw"])]})
    assert listed["stages"][0]["with"]["headers"] == [{"name": "X-Api", "value": REDACTED}, REDACTED]
    scalar = redact_spec({"stages": [fetch_stage(headers="Authorization: Bearer abc")]})
    assert scalar["stages"][0]["with"]["headers"] == REDACTED


def test_literal_env_values_with_credential_names_are_redacted_and_value_from_is_kept() -> None:
    env = [
        {"name": "API_TOKEN", "value": "abc"},
        {"name": "db_password", "value": "hunter2"},
        {"name": "INPUT_URL", "value": "https://example.org"},
        {"name": "S3_SECRET", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}},
    ]
    redacted = redact_spec({"stages": [{"name": "resize", "image": "r:1", "env": env}]})
    assert redacted["stages"][0]["env"] == [
        {"name": "API_TOKEN", "value": REDACTED},
        {"name": "db_password", "value": REDACTED},
        {"name": "INPUT_URL", "value": "https://example.org"},
        {"name": "S3_SECRET", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}},
    ]


def test_with_values_under_credential_keys_are_redacted_at_any_depth_whatever_their_type() -> None:
    params = {"auth": {"user": "u", "pass": "p"}, "options": {"retries": 3, "nested": [{"apiToken": "t"}]}}
    redacted = redact_spec({"stages": [fetch_stage(**params)]})
    assert redacted["stages"][0]["with"] == {
        "url": "https://example.org/a.jpg",
        "auth": REDACTED,
        "options": {"retries": 3, "nested": [{"apiToken": REDACTED}]},
    }


def test_with_nested_deeper_than_the_rule_can_inspect_is_redacted_not_kept() -> None:
    deep: Any = "secret"
    for _ in range(MAX_DEPTH + 10):
        deep = {"a": deep}
    redacted = redact_spec({"stages": [fetch_stage(deep=deep)]})
    node = redacted["stages"][0]["with"]["deep"]
    depth = 0
    while isinstance(node, dict):
        node, depth = node["a"], depth + 1
    assert node == TOO_DEEP
    assert depth < MAX_DEPTH


def test_the_input_is_not_changed_and_everything_else_is_copied_as_it_is() -> None:
    spec = {
        "priority": 5,
        "stages": [fetch_stage(headers={"Authorization": "Bearer abc"}), {"name": "b", "image": "i", "args": ["x"]}],
    }
    before = copy.deepcopy(spec)
    redacted = redact_spec(spec)
    assert spec == before
    assert redacted["priority"] == 5
    assert redacted["stages"][1] == {"name": "b", "image": "i", "args": ["x"]}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"stages": "not a list"},
        {"stages": [None, 3, {"env": "x", "with": "y"}, {"env": [None, {"value": "v"}], "with": None}]},
    ],
)
def test_any_shape_is_accepted_and_what_is_not_a_stage_is_kept(spec: dict[str, Any]) -> None:
    assert redact_spec(spec) == spec


def test_a_with_that_is_a_list_is_still_searched_for_credential_keys() -> None:
    redacted = redact_spec({"stages": [{"with": ["a", {"token": "t"}]}]})
    assert redacted["stages"][0]["with"] == ["a", {"token": REDACTED}]
