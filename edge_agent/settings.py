"""The camera-host agent's settings: ``EDGELOOP_AGENT_*`` environment variables (and ``.env``).

One agent process serves one camera (``camera_id``) reading one ``source``. Paths are
relative to the working directory unless absolute.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgeloop.rules import UNCERTAINTY_HIGH, UNCERTAINTY_LOW
from edgeloop.wire import MAX_FRAMES_PER_BATCH

DEFAULT_STATE_ROOT = Path("data/agent")
"""Root of the agents' state: ``<root>/<camera_id>/`` holds the spool and the model cache."""


class AgentSettings(BaseSettings):
    """Everything one agent needs: where to read frames, where the API is, how to detect.

    An unknown keyword argument is an error (a typo must not silently fall back to a
    default). The ``.env`` file is shared with the loop host's other processes, so its
    keys without the ``EDGELOOP_AGENT_`` prefix, and unknown ones with it, are ignored.
    """

    model_config = SettingsConfigDict(
        env_prefix="EDGELOOP_AGENT_", env_file=".env", extra="ignore", validate_default=True
    )

    def __init__(self, **values: Any) -> None:
        unknown = sorted(
            k for k in values if not k.startswith("_") and k not in type(self).model_fields
        )
        if unknown:
            raise TypeError(f"unknown agent settings: {', '.join(unknown)}")
        super().__init__(**values)

    # Where frames come from and who this is.
    camera_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Camera identifier, unique in the fleet (letters, digits, _ . -).",
    )
    source: str = Field(
        min_length=1,
        description=(
            "Frame source: a video file, a directory of images, an rtsp:// or http(s):// "
            "stream URL, or a camera index such as 0."
        ),
    )
    agent_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=128,
        description="Identifies this agent process in ingest batches; default the host name.",
    )
    fps: float | None = Field(
        None,
        gt=0,
        description=(
            "Frames per second of source time to process; None processes every frame. "
            "For files the agent strides by source fps / fps; live streams drop the rest."
        ),
    )
    max_frames: int | None = Field(
        None, ge=1, description="Stop after this many processed frames; None runs to the end."
    )

    # The loop host.
    api_url: str = Field("http://127.0.0.1:8000", description="Base URL of the edgeloop API.")
    token: SecretStr | None = Field(
        None, description="Bearer token sent as `Authorization: Bearer <token>`."
    )
    request_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of each HTTP request to the API, seconds."
    )
    batch_frames: int = Field(
        32,
        ge=1,
        le=MAX_FRAMES_PER_BATCH,
        description="Frames per ingest batch; a batch is sent when full or flush_interval_s old.",
    )
    flush_interval_s: float = Field(
        1.0, gt=0, description="Send a partly filled batch once its first frame is this old, s."
    )

    # Detection.
    model_path: Path | None = Field(
        None,
        description=(
            "Local ONNX model used when the API has no production model and the cache is empty."
        ),
    )
    model_check_interval_s: float | None = Field(
        None,
        gt=0,
        description="Re-check the API's production model this often (s) and hot-swap; None: only at start.",
    )
    imgsz: int = Field(
        640,
        ge=32,
        description="Letterbox size (px) for models with a dynamic input shape; static shapes win.",
    )
    conf_threshold: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Drop detections at or below this confidence (ultralytics' predict default).",
    )
    iou_threshold: float = Field(
        0.45, ge=0, le=1, description="IoU above which NMS suppresses a same-class box."
    )
    max_detections: int = Field(
        300,
        ge=1,
        le=300,
        description="Keep at most this many detections per frame (ultralytics max_det).",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="onnxruntime intra-op threads; 0 lets onnxruntime use one per physical core.",
    )
    uncertainty_low: float = Field(
        UNCERTAINTY_LOW, ge=0, le=1, description="Lower bound (exclusive) of the uncertainty band."
    )
    uncertainty_high: float = Field(
        UNCERTAINTY_HIGH, ge=0, le=1, description="Upper bound (exclusive) of the uncertainty band."
    )
    jpeg_quality: int = Field(
        90, ge=1, le=100, description="JPEG quality (OpenCV scale) of frames sent for labeling."
    )

    # Local state.
    state_dir: Path | None = Field(
        None,
        description="Spool and model cache; default data/agent/<camera_id> under the working directory.",
    )
    log_interval_s: float = Field(10.0, gt=0, description="Seconds between progress log lines.")

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        if not self.uncertainty_low < self.uncertainty_high:
            raise ValueError(
                f"uncertainty band is empty: EDGELOOP_AGENT_UNCERTAINTY_LOW={self.uncertainty_low} "
                f"must be below EDGELOOP_AGENT_UNCERTAINTY_HIGH={self.uncertainty_high}"
            )
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must start with http:// or https://, got {self.api_url!r}")
        self.api_url = self.api_url.rstrip("/")
        if self.state_dir is None:
            self.state_dir = DEFAULT_STATE_ROOT / self.camera_id
        return self

    @property
    def state_path(self) -> Path:
        """The resolved state directory (``state_dir`` is always set after validation)."""
        assert self.state_dir is not None
        return self.state_dir

    @property
    def spool_dir(self) -> Path:
        """Batches waiting for the API: ``<state_dir>/spool``."""
        return self.state_path / "spool"

    @property
    def model_cache_dir(self) -> Path:
        """Downloaded production models and ``current.json``: ``<state_dir>/models``."""
        return self.state_path / "models"

    @property
    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None
