"""The systemd unit in deploy/systemd and its example environment file set real agent
settings: every variable names an ``AgentSettings`` field, and together they validate."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from support import REPO_ROOT

from edge_agent.settings import AgentSettings
from edgeloop.offline import OFFLINE_ENV

UNIT_DIR = REPO_ROOT / "deploy" / "systemd"


def _unit_environment(instance: str) -> dict[str, str]:
    """The unit's ``Environment=`` lines, ``%i`` replaced by the instance name."""
    text = (UNIT_DIR / "edgeloop-agent@.service").read_text()
    pairs = re.findall(r"^Environment=(\w+)=(.*)$", text, flags=re.MULTILINE)
    return {key: value.replace("%i", instance) for key, value in pairs}


def _env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a systemd EnvironmentFile (comments and blanks skipped)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_unit_and_its_example_set_valid_agent_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**_env_file(UNIT_DIR / "camera.env.example"), **_unit_environment("dock-1")}
    offline = {key: env.pop(key) for key in list(env) if key in OFFLINE_ENV}
    # onnxruntime reports home unless this is set before it loads (edgeloop/offline.py).
    assert offline == {"ORT_DISABLE_TELEMETRY": OFFLINE_ENV["ORT_DISABLE_TELEMETRY"]}
    fields = {AgentSettings.env_var(name) for name in AgentSettings.model_fields}
    assert set(env) <= fields, set(env) - fields
    token = tmp_path / "dock-1.token"
    token.write_text("secret\n")
    env["EDGELOOP_AGENT_TOKEN_FILE"] = str(token)  # the example's path is on the host
    for key in [k for k in os.environ if k.startswith("EDGELOOP_AGENT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = AgentSettings()
    assert settings.camera_id == "dock-1"
    assert settings.state_dir == Path("/var/lib/edgeloop/agent/dock-1")
    assert settings.source.startswith("rtsp://") and settings.stream_wait_at_start
