"""Imports run one way (README, Layout): read from the source, so a new arrow fails here.

``pipelines -> assets -> edgeloop <- api``, ``edge_agent -> edgeloop``; ``edgeloop/cli`` is
the composition root: it may import everything, and nothing imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO_ROOT

PACKAGES = ("edgeloop", "edge_agent", "api", "assets", "pipelines")


def _imports(path: Path) -> set[str]:
    """Top-level modules of ours that ``path`` imports, as dotted names (at any depth)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _modules(package: str) -> dict[Path, set[str]]:
    return {path: _imports(path) for path in sorted((REPO_ROOT / package).rglob("*.py"))}


def _offending(package: str, forbidden: tuple[str, ...], *, skip: str | None = None) -> list[str]:
    return [
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path, names in _modules(package).items()
        if skip is None or skip not in path.relative_to(REPO_ROOT).parts
        for name in sorted(names)
        if name.split(".")[0] in forbidden or name.startswith(forbidden)
    ]


@pytest.mark.parametrize(
    ("package", "forbidden", "skip"),
    [
        # The core imports nothing of the deployables; only its composition root does.
        ("edgeloop", ("api", "assets", "pipelines", "edge_agent"), "cli"),
        ("edge_agent", ("api", "assets", "pipelines", "edgeloop.cli"), None),
        ("api", ("assets", "pipelines", "edge_agent", "edgeloop.cli"), None),
        ("assets", ("api", "pipelines", "edge_agent", "edgeloop.cli"), None),
        ("pipelines", ("api", "edge_agent", "edgeloop.cli"), None),
    ],
)
def test_imports_run_one_way(package: str, forbidden: tuple[str, ...], skip: str | None) -> None:
    assert _offending(package, forbidden, skip=skip) == []


def test_the_agent_takes_only_light_core_modules() -> None:
    """A camera host installs edgeloop[edge]: no DuckDB, MLflow or Dagster behind an import."""
    light = {
        "edgeloop",
        "edgeloop.wire",
        "edgeloop.rules",
        "edgeloop.audit",
        "edgeloop.files",
        "edgeloop.offline",
        "edgeloop.detection",
        "edgeloop.detection.onnx",
        "edgeloop.detection.preprocess",
        "edgeloop.detection.providers",
        "edgeloop.detection.quality",
    }
    used = {name for names in _modules("edge_agent").values() for name in names}
    core = {name.rsplit(".", 1)[0] if name.count(".") > 1 else name for name in used}
    assert {name for name in core if name.startswith("edgeloop")} <= light


def test_pipelines_holds_only_the_code_location() -> None:
    files = {path.name for path in (REPO_ROOT / "pipelines").glob("*.py")}
    assert files == {
        "__init__.py",
        "definitions.py",
        "jobs.py",
        "sensors.py",
        "schedules.py",
        "checks.py",
        "settings.py",
        "executors.py",
    }
