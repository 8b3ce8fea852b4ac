"""`edgeloop agent` / `python -m edge_agent`: options, summary table, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import typer
from support import REPO_ROOT, SAMPLES_DIR, require
from typer.testing import CliRunner

from edge_agent.cli import agent

if TYPE_CHECKING:
    from conftest import RecordingApi

pytestmark = pytest.mark.integration


def app() -> typer.Typer:
    cli = typer.Typer()
    cli.command("agent")(agent)  # as the lead registers it in edgeloop/cli.py
    cli.command("other")(lambda: None)
    return cli


def test_agent_command_runs_and_prints_the_summary(
    recording_api: RecordingApi, seed_onnx: Path, tmp_path: Path
) -> None:
    bus = require(SAMPLES_DIR / "bus.jpg")
    result = CliRunner().invoke(
        app(),
        [
            "agent",
            "--source", str(bus),
            "--camera-id", "cli-cam",
            "--api", recording_api.url,
            "--token", "tok",
            "--model", str(seed_onnx),
            "--state-dir", str(tmp_path),
            "--batch-frames", "4",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "edgeloop agent — camera cli-cam" in result.output
    assert "batches sent / spooled / replayed" in result.output
    [frame] = recording_api.frames
    assert (
        frame["camera_id"] == "cli-cam" and frame["jpeg"] is not None
    )  # bus.jpg: uncertain people


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app(),
        [
            "agent",
            "--source",
            str(tmp_path / "gone.mp4"),
            "--camera-id",
            "c",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert "gone.mp4" in result.output


def test_missing_camera_id_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGELOOP_AGENT_CAMERA_ID", raising=False)
    result = CliRunner().invoke(app(), ["agent", "--source", "x"])
    assert result.exit_code == 2
    assert "--camera-id" in result.output


def test_python_dash_m_edge_agent_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--camera-id" in result.stdout and "EDGELOOP_AGENT_SOURCE" in result.stdout
