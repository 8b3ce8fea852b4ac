"""The API stays light: no torch, ultralytics, assets or pipelines in its process."""

from __future__ import annotations

import subprocess
import sys

from support import REPO_ROOT

CHECK = """
import sys
from api.main import create_app
from api.settings import ApiSettings
from edgeloop.settings import LoopSettings
import tempfile, pathlib
create_app(ApiSettings(loop=LoopSettings(data_dir=pathlib.Path(tempfile.mkdtemp())),
                       tokens={"t": "agent"}))
heavy = sorted(m for m in ("torch", "ultralytics", "assets", "pipelines", "edge_agent", "dagster")
               if m in sys.modules)
print(",".join(heavy))
"""


def test_creating_the_app_imports_nothing_heavy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_core_tokens_module_imports_nothing_of_the_api() -> None:
    """``edgeloop init`` and the demo read tokens through ``edgeloop.tokens``: no FastAPI."""
    check = (
        "import sys, edgeloop.tokens; "
        "print(','.join(sorted(m for m in ('api', 'fastapi', 'starlette') if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
