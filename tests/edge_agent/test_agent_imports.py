"""The agent stays light: a camera host never loads torch, dagster, mlflow, pandas or duckdb."""

from __future__ import annotations

import subprocess
import sys

from support import REPO_ROOT as REPO

FORBIDDEN = [
    "torch",
    "torchvision",
    "dagster",
    "mlflow",
    "pandas",
    "duckdb",
    "ultralytics",
    "api",
    "assets",
    "pipelines",
    "edgeloop.store",
    "edgeloop.registry",
]


def test_agent_imports_nothing_heavy() -> None:
    code = f"""
import sys
import edge_agent.runner, edge_agent.cli, edge_agent.capture, edge_agent.detectors
import edge_agent.model_sync, edge_agent.shipper, edge_agent.spool, edgeloop.detection.quality
import edge_agent.report, edge_agent.uncertainty
import edge_agent.frame_source, edge_agent.live, edge_agent.jpeg, edge_agent.heartbeat
import edge_agent.__main__
loaded = [m for m in {FORBIDDEN!r} if m in sys.modules or any(k.startswith(m + ".") for k in sys.modules)]
assert not loaded, f"the edge agent imported {{loaded}}"
import cv2, onnxruntime  # the agent's own heavy-ish deps load fine
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_module_is_light_at_import() -> None:
    code = "import sys, edge_agent.cli; bad = [m for m in ('cv2', 'onnxruntime', 'numpy') if m in sys.modules]; assert not bad, bad"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
