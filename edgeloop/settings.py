"""Settings shared by the loop host's processes (API, pipelines, CLI).

Every deployable has its own settings class with its own env prefix: this one is
``EDGELOOP_``; the API adds ``EDGELOOP_API_`` (``api/settings.py``), the agent
``EDGELOOP_AGENT_`` (``edge_agent/settings.py``), the pipelines
``EDGELOOP_PIPELINES_`` (``pipelines/settings.py``). What more than one process must
agree on (the uncertainty band, the retrain threshold, where the stores live) is here. Paths are relative to the working
directory unless absolute; ``make`` runs everything from the repository root.
"""

from __future__ import annotations

import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from edgeloop.objects import ObjectNotFoundError, ObjectStore, open_object_store
from edgeloop.rules import (
    DRIFT_RETRAIN_COOLDOWN_H,
    DRIFT_RETRAIN_MIN_LABELS,
    RETRAIN_LABEL_COUNT,
    UNCERTAINTY_HIGH,
    UNCERTAINTY_LOW,
    RetrainDecision,
    check_uncertainty_band,
    retrain_decision,
)
from edgeloop.settings_operator import OperatorSettings

if TYPE_CHECKING:
    from edgeloop.store import AnyStore
    from edgeloop.store.postgres import PostgresStore

REPORTS_PREFIX = "reports/"
"""Object keys of the loop's HTML reports (``reports/drift/<camera>/<stamp>.html``), served by
the API at ``/<key>``."""

MODEL_NAME = "edgeloop-detector"
"""Name of the registered model in MLflow that every alias (production, staging) belongs to."""


class LoopSettings(OperatorSettings):
    """Where the loop host keeps its state, and the loop's rules.

    Read from ``EDGELOOP_*`` environment variables (and ``.env``); see ``get_settings``.
    """

    model_config = SettingsConfigDict(env_prefix="EDGELOOP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root of all runtime state (git-ignored).")
    db_path: Path | None = Field(
        None, description="DuckDB file; default <data_dir>/edgeloop.duckdb."
    )
    qdrant_url: str | None = Field(
        None,
        description="Qdrant server URL; unset means embedded local mode under <data_dir>/qdrant.",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description=(
            "MLflow tracking/registry URI; default MLFLOW_TRACKING_URI, "
            "else sqlite:///<data_dir>/mlflow/mlflow.db. A networked site points every "
            "process at one store: postgresql+psycopg://user:password@host/mlflow, or an "
            "MLflow server's http:// URL."
        ),
    )
    object_store_url: str | None = Field(
        None,
        description=(
            "Where the loop's files live: s3://bucket/prefix for S3-compatible object storage "
            "(credentials, region and endpoint from boto3's standard AWS_* variables, "
            "AWS_ENDPOINT_URL included); unset: <data_dir>. It holds the frame JPEGs, the "
            "drift reports, new MLflow experiments' artifacts (model files, the ONNX agents "
            "download) and the published crop-index versions; dataset versions (the DVC data "
            "repo and its remote) still live in <data_dir>."
        ),
    )
    database_url: str | None = Field(
        None,
        description=(
            "Where the loop's tables live: postgresql://user:password@host:port/database "
            "for PostgreSQL (several API replicas and Dagster runs on other machines share "
            "it); unset: the DuckDB file <data_dir>/edgeloop.duckdb (EDGELOOP_DB_PATH)."
        ),
    )
    dagster_database_url: str | None = Field(
        None,
        description=(
            "Where the Dagster instance keeps runs, event logs and schedule/sensor ticks: "
            "postgresql://user:password@host:port/database (dagster-postgres; the webserver, "
            "the daemon and every worker on every host share it); unset: SQLite files in "
            "DAGSTER_HOME, one host only. `edgeloop dagster-home` writes the instance file."
        ),
    )
    celery_broker_url: str | None = Field(
        None,
        description=(
            "Celery broker (redis://host:6379/0) through which the code location's jobs hand "
            "their steps to `edgeloop worker` processes on any host (dagster-celery); training "
            "and evaluation go to the queue edgeloop.orchestration.TRAINING_QUEUE, the rest "
            "to DEFAULT_QUEUE. Unset: steps run as subprocesses of the run on the daemon's host."
        ),
    )
    model_name: str = Field(MODEL_NAME, description="Registered model name in MLflow.")
    device: str = Field(
        "auto",
        description=(
            "Where fine-tuning, evaluation, the reference reviewer and the crop embedder run: "
            "auto (the first CUDA GPU when torch sees one, else the CPU), cpu, cuda, cuda:N or "
            "mps (edgeloop.devices.torch_device)."
        ),
    )
    uncertainty_low: float = Field(
        UNCERTAINTY_LOW,
        ge=0,
        le=1,
        description=(
            "Lower bound (exclusive) of the fleet's uncertainty band on detection confidence; "
            "agents receive it with the production model."
        ),
    )
    uncertainty_high: float = Field(
        UNCERTAINTY_HIGH,
        ge=0,
        le=1,
        description="Upper bound (exclusive) of the fleet's uncertainty band on detection confidence.",
    )
    retrain_label_count: int = Field(
        RETRAIN_LABEL_COUNT,
        ge=1,
        description=(
            "Reviewed labels (frames) since the last training run that trigger a retrain; read "
            "by the label-count sensor, /api/retraining/conditions, the labeling page and "
            "`edgeloop status`."
        ),
    )
    drift_retrain_min_labels: int = Field(
        DRIFT_RETRAIN_MIN_LABELS,
        ge=1,
        description=(
            "Fewest reviewed labels since the last training run for which drift on a camera "
            "launches a retrain; below it the camera's labeling queue is boosted instead. Read "
            "by the drift sensor, /api/retraining/conditions, the console and `edgeloop status`."
        ),
    )
    drift_retrain_cooldown_h: float = Field(
        DRIFT_RETRAIN_COOLDOWN_H,
        ge=0,
        description=(
            "No drift-triggered retrain within this many hours of the last retrain (of any "
            "trigger; the label-count and manual triggers are not held back); 0 turns it off."
        ),
    )
    api_url: str = Field(
        "http://127.0.0.1:8000",
        description=(
            "Where people reach the API (links to drift reports in Dagster metadata); set it "
            "to the loop host's name when the API serves other hosts."
        ),
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        description="Where the MLflow UI serves the tracking store (links in Dagster metadata).",
    )
    dagster_ui_url: str = Field(
        "http://127.0.0.1:3000",
        description=(
            "Where people reach the Dagster UI (run links in the console); `make up` starts it "
            "on port 3000."
        ),
    )

    @model_validator(mode="after")
    def _band_is_ordered(self) -> LoopSettings:
        check_uncertainty_band(
            self.uncertainty_low,
            self.uncertainty_high,
            names=("EDGELOOP_UNCERTAINTY_LOW", "EDGELOOP_UNCERTAINTY_HIGH"),
        )
        return self

    @field_validator("object_store_url")
    @classmethod
    def _object_store_url_is_usable(cls, value: str | None) -> str | None:
        """Refuse an unsupported URL when the settings are read (the process does not
        start), not at the first ingest (a 500 per batch)."""
        open_object_store(value or None, data_dir=Path("."))  # raises ValueError; no I/O
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: str | None) -> str | None:
        """Refuse another scheme when the settings are read, not at the first request."""
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "EDGELOOP_DATABASE_URL must be postgresql://user:password@host:port/database, "
                f"got {value.split('://')[0]}://…"
            )
        return value

    def retrain_decision(
        self,
        labels_since_training: int,
        drifted_cameras: list[str],
        *,
        last_retrain_at: datetime | None,
        now: datetime | None = None,
    ) -> RetrainDecision:
        """``edgeloop.rules.retrain_decision`` with this host's thresholds
        (``retrain_label_count``, ``drift_retrain_min_labels``, ``drift_retrain_cooldown_h``):
        what the drift sensor, ``/api/retraining/conditions`` and ``edgeloop status`` apply."""
        return retrain_decision(
            labels_since_training,
            drifted_cameras,
            label_threshold=self.retrain_label_count,
            drift_min_labels=self.drift_retrain_min_labels,
            drift_cooldown_h=self.drift_retrain_cooldown_h,
            last_retrain_at=last_retrain_at,
            now=now,
        )

    # Stored paths: a data folder can be copied or moved, so nothing stored in it names its
    # absolute location (issue 20).
    def stored_path(self, path: Path | str) -> str:
        """How a file is named in a store (a DuckDB column, a manifest, a pointer file):
        relative to ``data_dir`` (POSIX separators) when it lies inside it, so a copied or
        moved data folder still finds its own files; absolute otherwise (a file the user
        keeps elsewhere). ``data_path`` is the inverse."""
        path = Path(path)
        try:  # plain string arithmetic first: no file-system call
            relative = path.absolute().relative_to(self.data_dir.absolute())
            if ".." not in relative.parts:
                return relative.as_posix()
        except ValueError:
            pass
        try:  # then through symlinks (a data folder reached by a link)
            return path.resolve().relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return str(path.resolve())

    def data_path(self, stored: str | Path) -> Path:
        """Where a path a store holds (``stored_path``) lives now: a relative one under the
        current ``data_dir``, an absolute one as it is (a file outside the data folder, or a
        row written before paths were stored relative)."""
        path = Path(stored)
        return path if path.is_absolute() else self.data_dir / path

    # Derived paths: one place that says where each component keeps its files.
    @property
    def duckdb_path(self) -> Path:
        return self.db_path or self.data_dir / "edgeloop.duckdb"

    @property
    def frames_dir(self) -> Path:
        """Frame JPEGs received from agents: <frames_dir>/<camera_id>/<frame_key>.jpg."""
        return self.data_dir / "frames"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def mlflow_db(self) -> Path | None:
        """The data folder's own MLflow store (``<mlflow_dir>/mlflow.db``, SQLite), or None
        when ``mlflow_tracking_uri`` or ``MLFLOW_TRACKING_URI`` names another store."""
        if self.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
            return None
        return self.mlflow_dir / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_db is not None:  # resolved per call: it follows a moved data folder
            return f"sqlite:///{self.mlflow_db.resolve()}"
        return self.mlflow_tracking_uri or os.environ["MLFLOW_TRACKING_URI"]

    @property
    def artifact_root(self) -> Path:
        """MLflow artifacts in the data folder (the embedded default)."""
        return self.mlflow_dir / "artifacts"

    @property
    def artifact_location(self) -> str:
        """Where a new MLflow experiment keeps its artifacts (model files, evaluation
        reports): ``<object_store_url>/mlflow/artifacts`` when object storage is configured
        (MLflow's own S3 artifact repository, boto3 and the same ``AWS_*`` variables), so
        every API replica and Dagster run reads the same files; else ``artifact_root`` as a
        file URI."""
        if self.object_store_url and self.object_store_url.startswith("s3://"):
            return f"{self.object_store_url.rstrip('/')}/mlflow/artifacts"
        return self.artifact_root.resolve().as_uri()

    @property
    def asset_values_location(self) -> str | None:
        """Where Dagster pickles asset values between runs (``DatasetVersion``,
        ``CandidateModel``, ...): ``<object_store_url>/dagster/storage`` when object storage
        is configured, so a run on another host, in a folder of its own, reads what the
        previous run wrote; None: the Dagster instance's storage folder."""
        if self.object_store_url and self.object_store_url.startswith("s3://"):
            return f"{self.object_store_url.rstrip('/')}/dagster/storage"
        return None

    @property
    def datasets_repo(self) -> Path:
        """The DVC data repository (its own git) holding dataset versions."""
        return self.data_dir / "datasets"

    @property
    def dvc_remote(self) -> Path | str:
        """The DVC remote of the data repo's JPEG packs: ``<object_store_url>/dvc`` when
        object storage is configured (DVC's S3 support, ``dvc-s3``, with the same
        ``AWS_*`` variables), else the folder ``<data_dir>/dvc-remote``."""
        if self.object_store_url:
            return f"{self.object_store_url.rstrip('/')}/dvc"
        return self.data_dir / "dvc-remote"

    @property
    def samples_dir(self) -> Path:
        return self.data_dir / "samples"

    @property
    def seed_dir(self) -> Path:
        """The seed detector's weights unpacked by ``make data``."""
        return self.data_dir / "seed"

    @property
    def models_cache_dir(self) -> Path:
        """Local copies of registered model files, one folder per version."""
        return self.data_dir / "models"

    @property
    def reports_dir(self) -> Path:
        """HTML reports when the files live in the data folder: the object keys under
        ``REPORTS_PREFIX`` (``objects()``)."""
        return self.data_dir / REPORTS_PREFIX.rstrip("/")

    @property
    def pipeline_settings_path(self) -> Path:
        """``<data_dir>/pipelines-settings.json``: the code location's effective settings as
        ``edgeloop up`` started Dagster with them (``edgeloop.cli.settings_snapshot``); the
        console's settings panel reads it (the API never imports the code location)."""
        return self.data_dir / "pipelines-settings.json"

    @property
    def runs_dir(self) -> Path:
        """Scratch space of training runs (ultralytics project dir)."""
        return self.data_dir / "runs"

    @property
    def yolo_config_dir(self) -> Path:
        return self.data_dir / "ultralytics"

    # The tables (``edgeloop.store``): the DuckDB file or PostgreSQL, chosen here once.
    def store(self, *, linger_s: float = 0.0, max_hold_s: float = 2.0) -> AnyStore:
        """The store ``database_url`` names: PostgreSQL (one connection pool per URL and
        process) or, unset, a ``Store`` on the DuckDB file ``duckdb_path`` (``linger_s`` /
        ``max_hold_s``: see ``edgeloop.store.Store``)."""
        if self.database_url:
            return _postgres_store(self.database_url)
        from edgeloop.store import Store

        return Store(self.duckdb_path, linger_s=linger_s, max_hold_s=max_hold_s)

    def stack_id(self) -> str:
        """This stack's id (``edgeloop.orchestration``), written first when it has none: in
        the database with ``database_url`` (a networked site's processes share no folder),
        else in ``<data_dir>/stack-id``.

        Raises:
            edgeloop.store.StoreUnavailableError: the database could not be reached.
            OSError, ValueError: the stack-id file cannot be written or read.
        """
        if not self.database_url:
            from edgeloop.orchestration import stack_id

            return stack_id(self.data_dir)
        from edgeloop.store import stack

        with self.store().connect() as con:
            return stack.stack_id(con=con)

    def read_stack_id(self) -> str | None:
        """``stack_id`` without writing one: None when the stack has no id yet.

        Raises:
            edgeloop.store.StoreUnavailableError: the database could not be reached.
        """
        if not self.database_url:
            from edgeloop.orchestration import read_stack_id

            return read_stack_id(self.data_dir)
        from edgeloop.store import stack

        with self.store().connect() as con:
            return stack.read_stack_id(con=con)

    # Files by key (``edgeloop.objects``): the data folder or object storage, chosen here once.
    def objects(self) -> ObjectStore:
        """The object store ``object_store_url`` names (one per URL and data folder and
        process: its S3 client and local cache are shared)."""
        return _object_store(self.object_store_url or None, self.data_dir.absolute())

    def stored_file(self, stored: str | None) -> Path | None:
        """A local file holding a file the loop stored (a frame's JPEG from
        ``frames.jpeg_path``, a drift report from ``drift_reports.report_path``): an object
        key (relative, the form stored since issue 20) read through ``objects()`` (on
        object storage, a cached download), or an absolute path of a row written before,
        as it is. None when nothing is stored (or the key is not a valid key).

        Raises:
            ObjectStoreUnavailableError: the object store could not be reached.
        """
        if not stored:
            return None
        path = Path(stored)
        if path.is_absolute():
            return path if path.is_file() else None
        try:
            return self.objects().local_path(stored)
        except (ObjectNotFoundError, ValueError):
            return None


@lru_cache(maxsize=8)
def _postgres_store(url: str) -> PostgresStore:
    from edgeloop.store.postgres import PostgresStore

    return PostgresStore(url)


@lru_cache(maxsize=8)
def _object_store(url: str | None, data_dir: Path) -> ObjectStore:
    return open_object_store(url, data_dir=data_dir)


@lru_cache
def get_settings() -> LoopSettings:
    """The process's loop settings, read once from the environment."""
    return LoopSettings()
