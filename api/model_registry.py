"""The API's cached view of the MLflow registry (production/staging aliases, model files).

``mlflow`` takes seconds to import, so the client is created lazily, once per app, and
``warm()`` can import it in the background at start-up. Model files are downloaded once
per version into ``<data_dir>/models`` by ``edgeloop.registry.model_files``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from edgeloop import registry
from edgeloop.settings import LoopSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

CLASS_NAMES_MAX_AGE_S = 60.0
"""Longest a cached class-name list is trusted without asking MLflow again, s: an alias
moved outside edgeloop (MLflow's own UI) is not recorded in ``model_deployments``."""


class ModelRegistry:
    """Thread-safe, lazily created MLflow client, and the files of an alias' version.

    Args:
        settings: the loop settings (tracking URI, model name, models cache dir).
    """

    def __init__(self, settings: LoopSettings) -> None:
        self.settings = settings
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()
        self._download_lock = threading.Lock()
        self._class_names: dict[str, tuple[object, float, list[str]]] = {}

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    def client(self) -> MlflowClient:
        """The MLflow client, created on first use (imports mlflow: seconds)."""
        with self._lock:
            if self._client is None:
                self._client = registry.mlflow_client(self.settings)
            return self._client

    def warm(self, *, connect: bool = True) -> None:
        """Import mlflow now (seconds) and, with ``connect``, open the registry and look up
        the production alias, so the first request does not wait. Errors are logged only.
        """
        try:
            import mlflow  # noqa: F401

            if connect:
                self.version("production")
        except Exception:
            logger.exception("MLflow registry at %s not usable yet", self.settings.tracking_uri)

    def version(self, alias: str) -> ModelVersion | None:
        """The model version carrying ``alias``, or None."""
        return registry.alias_version(self.client(), self.model_name, alias)

    def files(self, alias: str) -> registry.ModelFiles:
        """Local files of the version carrying ``alias`` (downloaded once per version into
        ``<data_dir>/models``, by ``edgeloop.registry.alias_model_files``).

        Raises:
            edgeloop.registry.ModelNotFoundError: no version carries ``alias`` (run
                ``edgeloop init``), or its artifacts lack ``best.onnx``/``model.json``.
        """
        client = self.client()
        with self._download_lock:  # one download of a version at a time
            return registry.alias_model_files(client, self.settings, alias)

    def version_files(self, version: str) -> registry.ModelFiles:
        """Local files of the registered ``version`` (downloaded once, as ``files``).

        Raises:
            edgeloop.registry.ModelNotFoundError: no such version, or its artifacts lack
                ``best.onnx``/``model.json``.
        """
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            client.get_model_version(self.model_name, version)
        except MlflowException as exc:
            raise registry.ModelNotFoundError(
                f"{self.model_name!r} has no version {version}"
            ) from exc
        with self._download_lock:
            return registry.model_files(
                client, self.settings, model_name=self.model_name, version=version
            )

    def class_names(self, alias: str, *, marker: object) -> list[str]:
        """The class names of the version carrying ``alias``, cached while ``marker`` (the
        newest recorded alias move, ``edgeloop.store.deployments.latest_move_id``) stays the
        same and for at most ``CLASS_NAMES_MAX_AGE_S``: a labeling request then costs no
        MLflow look-up.

        Raises:
            edgeloop.registry.ModelNotFoundError: as ``files``.
        """
        cached = self._class_names.get(alias)
        now = time.monotonic()
        if cached is not None and cached[0] == marker and now - cached[1] < CLASS_NAMES_MAX_AGE_S:
            return cached[2]
        names = list(self.files(alias).class_names)
        self._class_names[alias] = (marker, now, names)
        return names
