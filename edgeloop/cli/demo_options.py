"""The demo's knobs (standard library only: ``edgeloop --help`` reads their defaults on a
camera host too)."""

from __future__ import annotations

from dataclasses import dataclass

CAMERA_ID = "cam-campus"


@dataclass(frozen=True)
class DemoOptions:
    """Knobs of the demo; the defaults are what ``make demo`` runs."""

    frames: int = 400
    drift_frames: int = 160
    labels: int = 110
    drift_labels: int = 0
    epochs: int | None = None
    imgsz: int | None = None
    live_fps: float = 2.0
    model_check_interval_s: float = 5.0
    camera_id: str = CAMERA_ID
    video: str = "vtest.avi"
    drift_video: str = "bikes.mp4"
    api_url: str | None = None
    """An API already running (a networked site's replicas behind their balancer) for the
    agent and the reviewer, instead of one the demo starts; it must read the tokens file
    the demo writes (``EDGELOOP_API_TOKENS_FILE``)."""
