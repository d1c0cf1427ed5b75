"""Shared fixtures. Each real server lives in its own plugin module under tests/support/."""

pytest_plugins = [
    "tests.support.rig",
    "tests.support.postgres",
    "tests.support.s3",
    "tests.support.http",
    "tests.support.operator",
]
