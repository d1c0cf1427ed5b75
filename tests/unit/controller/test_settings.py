"""Operator settings: flags over PROCJOB_* variables, and one clear line for a bad value."""

from __future__ import annotations

import pytest

from procjob.controller.settings import SettingsError, from_sources


def test_flags_win_over_the_environment_and_defaults_apply() -> None:
    settings = from_sources({"workers": "4"}, {"PROCJOB_WORKERS": "16", "PROCJOB_EVENTS": "important"})
    assert settings.workers == 4
    assert settings.events == "important"
    assert settings.core().routine_events is False
    default = from_sources({}, {})
    assert (default.workers, default.events, default.max_running_jobs) == (8, "all", None)
    assert default.core().routine_events is True


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        ({"events": "some"}, {}, "--events (PROCJOB_EVENTS)"),
        ({}, {"PROCJOB_WORKERS": "0"}, "--workers (PROCJOB_WORKERS)"),
        ({}, {"PROCJOB_MAX_RUNNING_JOBS": "ten"}, "--max-running-jobs (PROCJOB_MAX_RUNNING_JOBS)"),
        ({"log_format": "xml"}, {}, "--log-format (PROCJOB_LOG_FORMAT)"),
        ({}, {"PROCJOB_FETCH_ALLOWED_NETWORKS": "10.0.0.0/8,nope"}, "--fetch-allowed-networks"),
    ],
)
def test_a_bad_value_names_the_flag_and_its_variable(
    flags: dict[str, str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        from_sources(flags, environ)
