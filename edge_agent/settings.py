"""The camera-host agent's settings: ``EDGELOOP_AGENT_*`` environment variables (and ``.env``).

One agent process serves one camera (``camera_id``) reading one ``source``. Paths are
relative to the working directory unless absolute.

The uncertainty band is the loop host's setting (``EDGELOOP_UNCERTAINTY_LOW/HIGH``), sent
with the production model; ``uncertainty_low/high`` here are only a local override.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgeloop.audit import AUDIT_SHARE
from edgeloop.rules import check_uncertainty_band
from edgeloop.wire import MAX_FRAMES_PER_BATCH

DEFAULT_SPOOL_MAX_BYTES = 1 << 30
"""Default ``spool_max_bytes``: 1 GiB."""

DEFAULT_STATE_ROOT = Path("data/agent")
"""Root of the agents' state: ``<root>/<camera_id>/`` holds the spool and the model cache."""

UnitInterval = Annotated[float, Field(ge=0, le=1)]
"""A float in [0, 1]: a confidence, an IoU, a bound of the uncertainty band."""


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

    @classmethod
    def env_var(cls, field: str) -> str:
        """The environment variable that sets ``field``: ``EDGELOOP_AGENT_<FIELD>``."""
        return f"{cls.model_config['env_prefix']}{field.upper()}"

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
            "Frames per second of source time to process; unset, every frame. "
            "For files the agent strides by source fps / fps; live streams drop the rest."
        ),
    )
    max_frames: int | None = Field(
        None, ge=1, description="Stop after this many processed frames; unset, run to the end."
    )
    replay: Literal["fast", "realtime", "loop"] = Field(
        "fast",
        description=(
            "How a video file plays: fast (as fast as the agent can process it), realtime "
            "(at the file's own frame rate, as a camera delivers it), loop (realtime, from "
            "the start again at the end; frame indices keep counting). Streams ignore it."
        ),
    )
    start_frame: int = Field(
        0, ge=0, description="Index of the first frame of a video file to play (seek)."
    )
    reconnect_initial_s: float = Field(
        1.0,
        gt=0,
        description=(
            "A live stream that breaks is reopened after this wait, s, doubling (with "
            "jitter) up to reconnect_max_s per attempt, for as long as the agent runs."
        ),
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, description="Largest wait between reopen attempts of a live stream, s."
    )
    stream_wait_at_start: bool = Field(
        True,
        description=(
            "A stream or camera that cannot be opened when the agent starts is logged as "
            "an error and retried with the reconnect back-off until it opens (the "
            "heartbeat reports the source disconnected meanwhile): a camera that boots "
            "after its host. False: the agent ends at once with the error (exit 1)."
        ),
    )
    stream_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "A stream URL that delivers nothing for this long counts as broken and is "
            "reopened, s (FFmpeg's open and read timeouts)."
        ),
    )

    # The loop host.
    api_url: HttpUrl = Field(
        HttpUrl("http://127.0.0.1:8000"),
        description="Base URL of the edgeloop API (http or https).",
    )
    token: SecretStr | None = Field(
        None,
        description=(
            "Bearer token sent as `Authorization: Bearer <token>`; environment only (a "
            "secret on the command line is visible in `ps`). Or use token_file."
        ),
    )
    token_file: Path | None = Field(
        None,
        description=(
            "A file holding the bearer token (surrounding whitespace stripped), instead of "
            "EDGELOOP_AGENT_TOKEN; e.g. a mounted secret."
        ),
    )
    heartbeat_interval_s: float = Field(
        10.0,
        ge=0,
        description=(
            "POST a heartbeat (health, rates, spool) to the API's /api/agents/heartbeat this "
            "often, s, from a background thread; 0 sends none."
        ),
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
    model_check_interval_s: float = Field(
        30.0,
        ge=0,
        description=(
            "Ask the API for its production model this often (s) and hot-swap between frames "
            "when it moved (promotion or rollback); 0 checks only at start. A conditional "
            "request (ETag): an unchanged model costs one empty 304."
        ),
    )
    imgsz: int = Field(
        640,
        ge=32,
        description="Letterbox size (px) for models with a dynamic input shape; static shapes win.",
    )
    conf_threshold: UnitInterval = Field(
        0.25,
        description="Drop detections at or below this confidence (ultralytics' predict default).",
    )
    iou_threshold: UnitInterval = Field(
        0.45, description="IoU above which NMS suppresses a same-class box."
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
    execution_providers: str = Field(
        "auto",
        min_length=1,
        description=(
            "ONNX Runtime execution providers: auto (TensorRT, CUDA, OpenVINO or CoreML when "
            "the installed onnxruntime build offers them, then the CPU) or a comma-separated "
            "list, best first (edgeloop.detection.providers)."
        ),
    )
    uncertainty_low: UnitInterval | None = Field(
        None,
        description=(
            "Local override of the uncertainty band's lower bound (exclusive); unset, the "
            "agent follows the loop host's band, sent with the production model. Set both "
            "bounds or neither."
        ),
    )
    uncertainty_high: UnitInterval | None = Field(
        None,
        description="Local override of the uncertainty band's upper bound (exclusive); see uncertainty_low.",
    )
    jpeg_quality: int = Field(
        90, ge=1, le=100, description="JPEG quality (OpenCV scale) of frames sent for labeling."
    )
    audit_share: UnitInterval = Field(
        AUDIT_SHARE,
        description=(
            "Share of frames sent with their JPEG although no detection is uncertain, chosen by "
            "a hash of the frame key (edgeloop.audit): the loop host's audit sample "
            "(EDGELOOP_AUDIT_SHARE) reviews them for confident mistakes and missed objects. "
            "Keep it at least the loop host's; 0 sends JPEGs of uncertain frames only."
        ),
    )

    # Local state.
    state_dir: Path | None = Field(
        None,
        description="Spool and model cache; default data/agent/<camera_id> under the working directory.",
    )
    spool_max_bytes: int = Field(
        DEFAULT_SPOOL_MAX_BYTES,
        ge=1,
        description=(
            "Disk cap of the batches waiting for the API, bytes; when full, the oldest "
            "batches are dropped first (logged and counted)."
        ),
    )
    log_interval_s: float = Field(10.0, gt=0, description="Seconds between progress log lines.")

    @field_validator("token_file")
    @classmethod
    def _token_file_holds_a_token(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_token_file(path)
        return path

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        if self.token_file is not None:
            if self.token is not None:
                raise ValueError(
                    f"both {self.env_var('token')} and a token file ({self.token_file}) are "
                    "set: give the token one way only"
                )
            self.token = SecretStr(read_token_file(self.token_file))
        names = (self.env_var("uncertainty_low"), self.env_var("uncertainty_high"))
        if (self.uncertainty_low is None) != (self.uncertainty_high is None):
            raise ValueError(
                f"a local uncertainty band override needs both {names[0]} and {names[1]} "
                f"(got {self.uncertainty_low} and {self.uncertainty_high}): set both, or "
                "neither to follow the loop host's band"
            )
        if self.uncertainty_override is not None:
            check_uncertainty_band(*self.uncertainty_override, names=names)
        if self.state_dir is None:
            self.state_dir = DEFAULT_STATE_ROOT / self.camera_id
        return self

    @property
    def uncertainty_override(self) -> tuple[float, float] | None:
        """The local uncertainty band override ``(low, high)``, or None to follow the loop host."""
        if self.uncertainty_low is None or self.uncertainty_high is None:
            return None
        return self.uncertainty_low, self.uncertainty_high

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
        """The bearer token (from EDGELOOP_AGENT_TOKEN or the token file), or None."""
        return self.token.get_secret_value() if self.token is not None else None


def read_token_file(path: Path) -> str:
    """The token in ``path``, surrounding whitespace (a trailing newline) stripped.

    Raises:
        ValueError: the file cannot be read, is not UTF-8 text, or holds only whitespace;
            the message names the file and what to do.
    """
    try:
        token = path.expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"cannot read the token file {path}: {exc}; point EDGELOOP_AGENT_TOKEN_FILE "
            "(--token-file) at a readable file holding the API token"
        ) from exc
    if not token:
        raise ValueError(
            f"the token file {path} is empty; write the agent's API token into it "
            "(on the loop host: `edgeloop token create`) or unset EDGELOOP_AGENT_TOKEN_FILE"
        )
    return token
