"""--baseline-namespaces (PROCJOB_BASELINE_NAMESPACES): the namespaces whose jobs may loosen their pods
to the Pod Security Standards' baseline profile; none by default."""

from __future__ import annotations

import pytest

from procjob.controller.settings import SettingsError, from_sources


def test_no_namespace_is_listed_by_default() -> None:
    settings = from_sources({}, {})
    assert settings.baseline_namespaces == ()
    assert settings.core().baseline_namespaces == frozenset()


def test_the_list_reaches_the_core_from_the_environment_or_the_flag() -> None:
    settings = from_sources({}, {"PROCJOB_BASELINE_NAMESPACES": "legacy, gpu-jobs"})
    assert settings.baseline_namespaces == ("legacy", "gpu-jobs")
    assert settings.core().baseline_namespaces == frozenset({"legacy", "gpu-jobs"})
    flagged = from_sources({"baseline_namespaces": "other"}, {"PROCJOB_BASELINE_NAMESPACES": "legacy"})
    assert flagged.core().baseline_namespaces == frozenset({"other"})


@pytest.mark.parametrize("value", ["Legacy", "a/b", "-x", "x" * 64])
def test_a_name_that_is_no_namespace_names_the_flag_and_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"--baseline-namespaces \(PROCJOB_BASELINE_NAMESPACES\)"):
        from_sources({}, {"PROCJOB_BASELINE_NAMESPACES": value})
