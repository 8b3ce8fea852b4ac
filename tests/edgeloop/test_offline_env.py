"""Every entry point sets the offline variables before onnxruntime, ultralytics, mlflow or
dvc can load, whoever starts it and with what environment (``edgeloop.offline``).

Each entry module is imported in a fresh interpreter whose environment has none of the
variables; an import hook records the environment at the moment any of those libraries
starts to load. ``tests/e2e/test_no_lookups.py`` checks the effect: no DNS lookup at all.
"""

from __future__ import annotations

import json
import os

import pytest
from support import run_python

from edgeloop.offline import OFFLINE_ENV

ENTRY_MODULES = [
    "edgeloop.cli",  # the `edgeloop` console script and `python -m edgeloop.cli`
    "edge_agent.__main__",  # `python -m edge_agent`
    "edge_agent.cli",  # `edgeloop agent`, imported by the systemd unit's command
    "api.main",  # `uvicorn api.main:create_app --factory`
    "pipelines.definitions",  # Dagster's code server and run workers (workspace.yaml)
]

PROBE = """
import importlib, json, os, sys
WATCHED = ("onnxruntime", "ultralytics", "mlflow", "dvc", "torch", "dagster")
KEYS = {keys!r}
seen = {{}}

class Watch:
    def find_spec(self, name, path=None, target=None):
        root = name.split(".")[0]
        if root in WATCHED and root not in seen:
            seen[root] = {{key: os.environ.get(key) for key in KEYS}}
        return None

sys.meta_path.insert(0, Watch())
importlib.import_module({module!r})
import onnxruntime  # what the agent and the evaluation load later, lazily
print(json.dumps({{"after": {{key: os.environ.get(key) for key in KEYS}}, "seen": seen}}))
"""


def _probe(module: str, env: dict[str, str]) -> dict[str, dict[str, object]]:
    stdout = run_python(PROBE.format(module=module, keys=sorted(OFFLINE_ENV)), env=env)
    return dict(json.loads(stdout.splitlines()[-1]))


def _bare_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in OFFLINE_ENV}


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_the_entry_point_sets_every_offline_variable_before_any_heavy_import(module: str) -> None:
    answer = _probe(module, _bare_environment())
    assert answer["after"] == OFFLINE_ENV
    assert "onnxruntime" in answer["seen"]
    for library, env in answer["seen"].items():
        assert env == OFFLINE_ENV, (
            f"{library} started to load before the offline variables were set"
        )


def test_a_users_own_value_wins() -> None:
    env = _bare_environment() | {"ORT_DISABLE_TELEMETRY": "0", "HF_HUB_OFFLINE": "0"}
    after = _probe("api.main", env)["after"]
    assert (after["ORT_DISABLE_TELEMETRY"], after["HF_HUB_OFFLINE"]) == ("0", "0")
    assert after["DVC_NO_ANALYTICS"] == "1"
