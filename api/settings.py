"""Settings of the API service, read from ``EDGELOOP_API_*`` environment variables.

The loop's shared settings (data dir, DuckDB file, MLflow URI, uncertainty band) come
from ``edgeloop.settings.LoopSettings`` (``EDGELOOP_*``) and ride along as ``loop``.
Nothing is read at import time: ``get_settings()`` reads once, on first call.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgeloop.settings import LoopSettings
from edgeloop.settings import get_settings as get_loop_settings
from edgeloop.tokens import TOKENS_FILE_NAME, Role
from edgeloop.uploads import UploadLimits

MIB = 1024 * 1024


class ApiSettings(BaseSettings):
    """How the API listens, authenticates, and reaches Dagster.

    Read from ``EDGELOOP_API_*`` environment variables (and ``.env``); see ``get_settings``.
    """

    model_config = SettingsConfigDict(env_prefix="EDGELOOP_API_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    claim_lease_s: float = Field(
        300.0,
        ge=5,
        le=86400,
        description=(
            "How long GET /api/labeling-queue/next holds an item for the caller, s; an "
            "expired claim returns the item to the queue (Label Studio's task lock: 300 s)."
        ),
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port uvicorn listens on.")
    dagster_url: str = Field(
        "http://127.0.0.1:3000",
        description="Dagster webserver (GraphQL) URL; `make up` starts it.",
    )
    dagster_location: str = Field(
        "pipelines", description="Dagster code location that holds `retrain_job`."
    )
    dagster_timeout_s: int = Field(
        30, gt=0, description="Timeout of one GraphQL request to Dagster, s."
    )
    push_retrain: bool = Field(
        True,
        description=(
            "Ask Dagster for the retrain run as soon as a label brings the labels since "
            "training to EDGELOOP_RETRAIN_LABEL_COUNT (api/retrain_push.py); off leaves it to "
            "the label-count sensor's next tick (EDGELOOP_PIPELINES_SENSOR_INTERVAL_S)."
        ),
    )
    tokens: dict[str, Role] | None = Field(
        None,
        description=(
            'Bearer tokens as a JSON object token -> role (EDGELOOP_API_TOKENS=\'{"t0k": "agent"}\'); '
            "when unset, the tokens file is used."
        ),
    )
    tokens_file: Path | None = Field(
        None,
        description=(
            "Tokens file (edgeloop.tokens: names, roles, cameras and each token's sha256, never "
            "a token); default <data_dir>/api-tokens.json, created empty if missing. Manage it "
            "with `edgeloop token create|list|revoke`."
        ),
    )
    max_body_bytes: int = Field(
        64 * MIB, gt=0, description="Largest request body accepted, bytes; larger gets 413."
    )
    store_linger_s: float = Field(
        0.5,
        ge=0,
        le=10,
        description=(
            "Keep DuckDB open this long after a request, s, so the next one skips the "
            "open/close checkpoint; 0 closes after every request (edgeloop.store.connection). "
            "A process waiting for the file gets it within ~0.1 s regardless."
        ),
    )
    store_max_hold_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description=(
            "Close the lingering connection at least this often (a checkpoint), s; a process "
            "that waits for the file gets it within ~0.1-0.5 s regardless."
        ),
    )
    metrics_window_s: float = Field(
        60.0, gt=0, description="Window over which /api/metrics computes frames/s, s."
    )
    warm_registry: bool = Field(
        True,
        description=(
            "Open the MLflow registry in the background at start-up (tests turn it off: "
            "a fresh sqlite store takes seconds to create)."
        ),
    )
    uploads: UploadLimits = Field(
        default_factory=UploadLimits,
        description="Limits of prediction-batch uploads (EDGELOOP_UPLOAD_*, edgeloop.uploads).",
    )
    loop: LoopSettings = Field(
        default_factory=get_loop_settings,
        description="The loop's shared settings (EDGELOOP_*): data dir, DuckDB file, MLflow.",
    )

    @field_validator("dagster_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"dagster_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @property
    def resolved_tokens_file(self) -> Path:
        """The tokens file in use: ``tokens_file`` or ``<data_dir>/api-tokens.json``."""
        return self.tokens_file or self.loop.data_dir / TOKENS_FILE_NAME


@lru_cache
def get_settings() -> ApiSettings:
    """The process's API settings, read once from the environment."""
    return ApiSettings()
