"""Fixtures that start real servers for the tests: the rig, PostgreSQL, S3, HTTP."""
