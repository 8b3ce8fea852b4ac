"""The real edge agent as the demo runs it: once over a video, or left running as a live
camera that follows production (``edgeloop demo``'s steps 1, 4 and 5).

The agent runs in its own process, as on a camera host (it never imports torch); its
token goes in the environment (``EDGELOOP_AGENT_TOKEN``), not on the command line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from rich.console import Console

from edgeloop.cli.services import service_env, spawn
from edgeloop.settings import LoopSettings
from edgeloop.store import frames


def agent_command(
    settings: LoopSettings, api_url: str, *, video: Path, camera_id: str, options: list[str]
) -> list[str]:
    """The real edge agent in its own process (it never imports torch); the token goes in
    the environment, not on the command line."""
    return [
        sys.executable,
        "-m",
        "edge_agent",
        "--source",
        str(video),
        "--camera-id",
        camera_id,
        "--api",
        api_url,
        "--state-dir",
        str((settings.data_dir / "agent" / camera_id).resolve()),
        *options,
    ]


def agent_env(settings: LoopSettings, token: str) -> dict[str, str]:
    """The agent process's environment: the loop host's (``service_env``) with the token in
    ``EDGELOOP_AGENT_TOKEN`` (never on the command line, where ``ps`` shows it); an
    ``EDGELOOP_AGENT_TOKEN_FILE`` inherited from the caller is removed, since the agent
    refuses a token given two ways."""
    env = service_env(settings) | {"EDGELOOP_AGENT_TOKEN": token}
    env.pop("EDGELOOP_AGENT_TOKEN_FILE", None)
    return env


def run_agent(
    settings: LoopSettings,
    api_url: str,
    token: str,
    *,
    video: Path,
    camera_id: str,
    max_frames: int,
    console: Console,
) -> None:
    """The agent on ``max_frames`` frames of ``video``, as fast as it goes; waits for it."""
    cmd = agent_command(
        settings,
        api_url,
        video=video,
        camera_id=camera_id,
        options=["--max-frames", str(max_frames), "--model-check-interval", "0"],
    )
    env = agent_env(settings, token)
    env["COLUMNS"] = str(console.width)
    # The agent's own log lines and summary table go straight to the terminal.
    proc = subprocess.run(
        cmd,
        env=env,
        stdout=console.file if console.file is not sys.stdout else None,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"edge agent exited with code {proc.returncode} (its log is above)")


@contextmanager
def live_agent(
    settings: LoopSettings,
    api_url: str,
    token: str,
    *,
    video: Path,
    camera_id: str,
    start_frame: int,
    fps: float,
    check_interval_s: float,
) -> Iterator[Path]:
    """The agent left running on ``video`` from ``start_frame``, replayed as a live camera
    (``--replay loop``, ``fps`` frames/s) and following production every
    ``check_interval_s``; stopped with SIGTERM on exit. Yields its log file."""
    log_path = settings.data_dir / "logs" / f"agent-{camera_id}-live.log"
    cmd = agent_command(
        settings,
        api_url,
        video=video,
        camera_id=camera_id,
        options=[
            "--replay",
            "loop",
            "--start-frame",
            str(start_frame),
            "--fps",
            f"{fps:g}",
            "--model-check-interval",
            f"{check_interval_s:g}",
        ],
    )
    agent = spawn("agent", cmd, agent_env(settings, token), log_path, url=api_url)
    try:
        yield log_path
    finally:  # SIGTERM to its process group, SIGKILL after 30 s
        agent.stop(timeout_s=30)


def first_frame_of(
    settings: LoopSettings, camera_id: str, version: str, timeout_s: float
) -> datetime | None:
    """Capture time of the camera's first frame stamped with ``version``, waiting up to
    ``timeout_s`` for it; None when none came."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with settings.store().connect() as con:
            runs = frames.model_history(con=con, camera_id=camera_id)
        for run in runs:
            if run["model_version"] == version:
                first: datetime = run["first_frame_at"]
                return first
        time.sleep(1.0)
    return None
