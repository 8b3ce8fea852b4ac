"""Agent settings: env prefix, defaults, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.settings import AgentSettings


def test_env_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_AGENT_CAMERA_ID", "gate-1")
    monkeypatch.setenv("EDGELOOP_AGENT_SOURCE", "rtsp://cam/stream")
    monkeypatch.setenv("EDGELOOP_AGENT_TOKEN", "s3cret")
    monkeypatch.setenv("EDGELOOP_AGENT_API_URL", "http://loop:8000/")
    s = AgentSettings()
    assert s.camera_id == "gate-1" and s.token_value == "s3cret"
    assert "s3cret" not in repr(s)
    assert str(s.api_url) == "http://loop:8000/"
    assert s.state_path == Path("data/agent/gate-1")
    assert s.spool_dir == Path("data/agent/gate-1/spool")
    assert s.uncertainty_override is None  # the band follows the loop host
    assert (s.conf_threshold, s.iou_threshold, s.batch_frames, s.jpeg_quality) == (
        0.25,
        0.45,
        32,
        90,
    )
    assert s.fps is None and s.agent_id


def test_unknown_setting_and_empty_band_are_errors() -> None:
    with pytest.raises(TypeError, match="unknown agent settings: batch_size"):
        AgentSettings(camera_id="c", source="x", batch_size=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="uncertainty band is empty"):
        AgentSettings(camera_id="c", source="x", uncertainty_low=0.7, uncertainty_high=0.4)
    with pytest.raises(
        ValidationError,
        match=r"needs both EDGELOOP_AGENT_UNCERTAINTY_LOW and EDGELOOP_AGENT_UNCERTAINTY_HIGH",
    ):
        AgentSettings(camera_id="c", source="x", uncertainty_low=0.5)
    with pytest.raises(ValidationError, match="URL scheme should be 'http' or 'https'"):
        AgentSettings(camera_id="c", source="x", api_url="loop:8000")
    with pytest.raises(ValidationError, match="camera_id"):
        AgentSettings(camera_id="bad id", source="x")


def test_a_shared_env_file_with_other_processes_keys_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "EDGELOOP_DATA_DIR=/srv/loop\nEDGELOOP_API_TOKEN=x\nEDGELOOP_AGENT_FPS=2.5\n"
    )
    monkeypatch.chdir(tmp_path)
    assert AgentSettings(camera_id="c", source="x").fps == 2.5


def test_a_local_band_override_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_AGENT_UNCERTAINTY_LOW", "0.55")
    monkeypatch.setenv("EDGELOOP_AGENT_UNCERTAINTY_HIGH", "0.9")
    assert AgentSettings(camera_id="c", source="x").uncertainty_override == (0.55, 0.9)
    assert AgentSettings.env_var("uncertainty_low") == "EDGELOOP_AGENT_UNCERTAINTY_LOW"


def test_the_token_comes_from_a_file_stripped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "agent.token"
    token.write_text("  s3cret-from-file\n")
    s = AgentSettings(camera_id="c", source="x", token_file=token)
    assert s.token_value == "s3cret-from-file" and "s3cret" not in repr(s)
    monkeypatch.setenv("EDGELOOP_AGENT_TOKEN_FILE", str(token))
    assert AgentSettings(camera_id="c", source="x").token_value == "s3cret-from-file"


def test_an_unreadable_or_empty_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"cannot read the token file .*missing\.token"):
        AgentSettings(camera_id="c", source="x", token_file=tmp_path / "missing.token")
    with pytest.raises(ValidationError, match="cannot read the token file"):
        AgentSettings(camera_id="c", source="x", token_file=tmp_path)  # a directory
    (tmp_path / "blank.token").write_text(" \n\n")
    with pytest.raises(ValidationError, match=r"token file .*blank\.token is empty"):
        AgentSettings(camera_id="c", source="x", token_file=tmp_path / "blank.token")


def test_a_token_given_two_ways_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t").write_text("a")
    monkeypatch.setenv("EDGELOOP_AGENT_TOKEN", "b")
    with pytest.raises(ValidationError, match="give the token one way only"):
        AgentSettings(camera_id="c", source="x", token_file=tmp_path / "t")


def test_new_settings_have_defaults_and_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = AgentSettings(camera_id="c", source="x")
    assert s.spool_max_bytes == 1 << 30 and s.heartbeat_interval_s == 10.0
    assert (s.reconnect_initial_s, s.reconnect_max_s, s.stream_timeout_s) == (1.0, 30.0, 10.0)
    monkeypatch.setenv("EDGELOOP_AGENT_SPOOL_MAX_BYTES", "5000000")
    monkeypatch.setenv("EDGELOOP_AGENT_HEARTBEAT_INTERVAL_S", "2.5")
    s = AgentSettings(camera_id="c", source="x")
    assert s.spool_max_bytes == 5_000_000 and s.heartbeat_interval_s == 2.5
