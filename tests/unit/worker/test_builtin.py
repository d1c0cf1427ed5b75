"""The registry of built-in stages: what validation, the pod builder and `procjob worker` read."""

from __future__ import annotations

import importlib
import inspect

import pytest

from procjob.models import contract
from procjob.models.builtin.base import ParamProblem, Setting, param_problems
from procjob.models.builtin.checksum import ChecksumParams
from procjob.models.builtin.registry import BUILTIN_STAGES, known_stages
from procjob.worker.errors import InvalidParams
from procjob.worker.main import STAGES
from procjob.worker.params import parse_params


def test_each_descriptor_is_registered_under_its_name_and_the_worker_runs_it() -> None:
    assert known_stages() == "fetch, checksum"
    assert {name: stage.runner for name, stage in BUILTIN_STAGES.items()} == STAGES
    for name, stage in BUILTIN_STAGES.items():
        assert stage.name == name
        module, function = stage.runner.split(":")
        assert module.startswith("procjob.worker.")
        run = getattr(importlib.import_module(module), function)
        assert list(inspect.signature(run).parameters) == ["raw_params", "env"]
        assert stage.outputs
        assert stage.summary


def test_only_stages_that_open_urls_get_the_ssrf_exceptions() -> None:
    assert {name for name, s in BUILTIN_STAGES.items() if Setting.FETCH_ALLOWED_NETWORKS in s.settings} == {"fetch"}
    assert all(Setting.S3 in stage.settings for stage in BUILTIN_STAGES.values())


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param((), "", id="the whole object"),
        pytest.param(("url",), "url", id="a parameter"),
        pytest.param(("headers", "X-Token"), "headers.X-Token", id="a key inside a parameter"),
        pytest.param(("contentTypes", 0), "contentTypes[0]", id="an item of a list"),
    ],
)
def test_a_problem_names_its_field(path: tuple[str | int, ...], field: str) -> None:
    assert ParamProblem(path, "value_error", "bad").field == field


def test_checksum_parameters() -> None:
    params = parse_params(ChecksumParams, {"bucket": "media", "key": "raw/a.jpg", "expectSha256": " AB" + "c" * 62})
    assert params.expect_sha256 == "ab" + "c" * 62
    assert parse_params(ChecksumParams, {"bucket": "media", "key": "k"}).expect_sha256 is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param({"key": "k"}, "bucket: Field required", id="a missing bucket"),
        pytest.param({"bucket": "Bad_Bucket", "key": "k"}, "bucket: not a valid S3 bucket name", id="a bad bucket"),
        pytest.param({"bucket": "media", "key": ""}, "key: String should have at least 1 character", id="no key"),
        pytest.param({"bucket": "media", "key": "k" * 1025}, "key: an S3 key is at most 1024 bytes", id="long key"),
        pytest.param({"bucket": "media", "key": "k", "expectSha256": "x" * 64}, "expectSha256: a sha256", id="hex"),
        pytest.param({"bucket": "media", "key": "k", "sha256": "x"}, "sha256: Extra inputs", id="a misspelt key"),
    ],
)
def test_invalid_checksum_parameters_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParams, match=rf"^invalid parameters: {field}"):
        parse_params(ChecksumParams, raw)
    assert param_problems(ChecksumParams, raw)


def test_every_variable_of_the_contract_is_under_a_reserved_prefix() -> None:
    names = {value for name, value in vars(contract).items() if name.startswith("ENV_") and name != "ENV_PREFIX"}
    assert names
    assert all(name.startswith(contract.BUILTIN_ENV_PREFIXES) for name in names)
