"""The operator imports kopf without the Kubernetes client libraries (procjob.cli.kopfimport): kopf
would import all of `kubernetes.client` only to recognise its objects; the operator never uses it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from procjob.cli.kopfimport import client_libraries_hidden

# `procjob run` in a fresh interpreter, up to the point where kopf would start operating (asyncio.run
# is replaced: the operator's coroutine is made and closed, never run).
RUN = """
import asyncio, json, sys
asyncio.run = lambda coro: coro.close()
from procjob.cli import run
from procjob.cli.main import build_parser
code = run.main(build_parser().parse_args(["run"]))
hidden = "kubernetes" not in sys.modules and "kubernetes.client" not in sys.modules
from kopf._core.intents.causes import Activity
from kopf._core.intents.registries import get_default_registry
registry = get_default_registry()
logins = [h.id for h in registry._activities.get_handlers(activity=Activity.AUTHENTICATION)]
import kubernetes  # importable again once kopf is in
print(json.dumps({"code": code, "hidden": hidden, "logins": logins}))
"""


def run_operator_imports() -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, check=True, timeout=120)
    found: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def test_procjob_run_registers_its_handlers_without_the_kubernetes_client_and_logs_in_its_own_way() -> None:
    found = run_operator_imports()
    assert found["code"] == 0
    assert found["hidden"] is True
    assert found["logins"] == ["login"]  # procjob.handlers.login; kopf's login through the client is not offered


def test_a_hidden_library_fails_to_import_as_if_absent_and_imports_again_after() -> None:
    with client_libraries_hidden(["json_probe_hidden"]), pytest.raises(ModuleNotFoundError, match="hidden from kopf"):
        importlib.import_module("json_probe_hidden")
    with pytest.raises(ModuleNotFoundError) as absent:
        importlib.import_module("json_probe_hidden")  # really absent: the ordinary error, not ours
    assert "hidden from kopf" not in str(absent.value)
    with client_libraries_hidden(["textwrap"]):
        pass
    assert importlib.import_module("textwrap")


def test_a_module_already_imported_is_not_hidden() -> None:
    with client_libraries_hidden(["json"]):
        assert importlib.import_module("json") is json


def test_only_the_named_top_level_packages_and_their_modules_are_hidden() -> None:
    with client_libraries_hidden(["kubernetes_probe_x"]):
        assert importlib.import_module("colorsys")
        with pytest.raises(ModuleNotFoundError, match="hidden from kopf"):
            importlib.import_module("kubernetes_probe_x.client")
