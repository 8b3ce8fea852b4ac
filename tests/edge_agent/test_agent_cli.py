"""`edgeloop agent` / `python -m edge_agent`: options over environment, summary table, clear errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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


def words(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_agent_command_runs_and_prints_the_summary(
    recording_api: RecordingApi, seed_onnx: Path, tmp_path: Path
) -> None:
    bus = require(SAMPLES_DIR / "bus.jpg")
    token_file = tmp_path / "agent.token"
    token_file.write_text("tok\n")
    result = CliRunner().invoke(
        app(),
        [
            "agent",
            "--source", str(bus),
            "--camera-id", "cli-cam",
            "--api", recording_api.url,
            "--token-file", str(token_file),
            "--model", str(seed_onnx),
            "--state-dir", str(tmp_path),
            "--batch-frames", "4",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "edgeloop agent — camera cli-cam" in result.output
    assert "batches sent / spooled / replayed" in result.output
    # A local model file and an API without a production model: nobody sent a band.
    assert "uncertainty band" in result.output
    assert "0.4–0.7, default (no model info)" in words(result.output)
    [frame] = recording_api.frames
    assert (
        frame["camera_id"] == "cli-cam" and frame["jpeg"] is not None
    )  # bus.jpg: uncertain people
    # The token came from the file, stripped of its newline.
    assert {h["authorization"] for h in recording_api.headers} == {"Bearer tok"}


def test_environment_fills_in_and_options_win(
    recording_api: RecordingApi,
    seed_onnx: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AgentSettings reads EDGELOOP_AGENT_*; an option given on the command line wins."""
    bus = require(SAMPLES_DIR / "bus.jpg")
    for name, value in {
        "SOURCE": bus,
        "CAMERA_ID": "env-cam",
        "API_URL": recording_api.url,
        "MODEL_PATH": seed_onnx,
        "STATE_DIR": tmp_path,
        "UNCERTAINTY_LOW": 0.2,  # no option: only the environment sets the band override
        "UNCERTAINTY_HIGH": 0.9,
    }.items():
        monkeypatch.setenv(f"EDGELOOP_AGENT_{name}", str(value))
    result = CliRunner().invoke(app(), ["agent", "--camera-id", "cli-cam"])
    assert result.exit_code == 0, result.output
    assert "camera cli-cam" in result.output
    assert "0.2–0.9, local override" in words(result.output)
    [frame] = recording_api.frames
    assert frame["camera_id"] == "cli-cam" and frame["frame_index"] == 0


def test_invalid_settings_name_the_option_and_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGELOOP_AGENT_BATCH_FRAMES", "0")
    monkeypatch.setenv("EDGELOOP_AGENT_JPEG_QUALITY", "0")
    result = CliRunner().invoke(
        app(), ["agent", "--source", "x", "--camera-id", "c", "--api", "loop:8000"]
    )
    assert result.exit_code == 2
    output = words(result.output)
    assert "batch_frames (--batch-frames or EDGELOOP_AGENT_BATCH_FRAMES)" in output
    assert "api_url (--api or EDGELOOP_AGENT_API_URL): URL scheme should be" in output
    assert "jpeg_quality (EDGELOOP_AGENT_JPEG_QUALITY)" in output  # no option for it


def test_summary_table_shows_the_band_and_its_source() -> None:
    from rich.console import Console

    from edge_agent.cli import summary_table
    from edge_agent.report import AgentReport

    console = Console(record=True, width=120)
    report = AgentReport(uncertainty_low=0.35, uncertainty_high=0.6, uncertainty_source="loop host")
    console.print(summary_table(report, "gate"))
    text = console.export_text()
    assert "uncertainty band" in text and "0.35–0.6, loop host" in text


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


def test_token_is_not_a_command_line_option(tmp_path: Path) -> None:
    """A secret on the command line is visible to every user in `ps`: no --token flag."""
    result = CliRunner().invoke(
        app(), ["agent", "--source", "x", "--camera-id", "c", "--token", "s3cret"]
    )
    assert result.exit_code == 2
    assert "No such option" in result.output and "--token" in result.output


def test_an_empty_token_file_names_the_option_and_the_variable(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("\n")
    result = CliRunner().invoke(
        app(),
        ["agent", "--source", "x", "--camera-id", "c", "--token-file", str(tmp_path / "t")],
    )
    assert result.exit_code == 2
    output = words(result.output)
    assert "token_file (--token-file or EDGELOOP_AGENT_TOKEN_FILE)" in output
    assert "is empty" in output


def test_the_demo_launches_agents_with_the_token_in_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeloop.cli.agents import agent_command, agent_env
    from edgeloop.settings import LoopSettings

    monkeypatch.setenv("EDGELOOP_AGENT_TOKEN_FILE", "/somewhere/else")
    settings = LoopSettings(data_dir=tmp_path)
    argv = agent_command(
        settings, "http://127.0.0.1:8000", video=tmp_path / "v.avi", camera_id="c", options=[]
    )
    env = agent_env(settings, "s3cret-demo")
    assert not any("s3cret" in arg for arg in argv) and "--token" not in argv
    assert env["EDGELOOP_AGENT_TOKEN"] == "s3cret-demo"
    assert "EDGELOOP_AGENT_TOKEN_FILE" not in env  # the agent would refuse two tokens


def test_sigterm_flushes_the_partial_batch_before_the_agent_ends(
    recording_api: RecordingApi, seed_onnx: Path, tmp_path: Path
) -> None:
    """systemd, Docker and Kubernetes stop a service with SIGTERM: the agent ends as on
    Ctrl-C, shipping the frames of its partial batch first (Python's default would end it
    at once, losing them). A real agent process on a looping video; no batch is full
    before the signal, so every frame shipped was flushed by the stop."""
    video = require(SAMPLES_DIR / "vtest.avi")
    token_file = tmp_path / "agent.token"
    token_file.write_text("tok\n")
    agent_process = subprocess.Popen(
        [
            sys.executable, "-m", "edge_agent",
            "--source", str(video),
            "--replay", "loop",
            "--camera-id", "term-cam",
            "--api", recording_api.url,
            "--token-file", str(token_file),
            "--model", str(seed_onnx),
            "--state-dir", str(tmp_path / "state"),
            "--batch-frames", "1000",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "EDGELOOP_AGENT_FLUSH_INTERVAL_S": "3600", "COLUMNS": "200"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        assert agent_process.stdout is not None
        for line in agent_process.stdout:  # the model is loaded: frames flow from here
            if "running model version" in line or time.monotonic() > deadline:
                break
        time.sleep(3.0)
        assert not recording_api.batches, "a batch was shipped before the signal"
        agent_process.send_signal(signal.SIGTERM)
        output, _ = agent_process.communicate(timeout=60)
    finally:
        if agent_process.poll() is None:
            agent_process.kill()
    assert agent_process.returncode == 0, output[-3000:]
    assert "stopped by" in output and "interrupted" in output
    frames = int(re.search(r"│ frames\s+│\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    assert frames > 0 and len(recording_api.frames) == frames
