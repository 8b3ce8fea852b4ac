"""The model registry: MLflow registered model versions and their aliases.

A model version's artifact folder (``model/`` of its MLflow run) holds:
``best.pt`` (ultralytics weights), ``best.onnx`` (what agents run) and ``model.json``
(class names, imgsz, sha256 of the ONNX). Stages are deprecated since MLflow 2.9, so
the loop uses aliases: ``production`` (what agents run) and ``staging`` (the latest
candidate that beat production on the held-out set). Every alias move is recorded in
the ``model_deployments`` table: who, when, why, and the metrics behind it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop.files import sha256_file
from edgeloop.relocation import follow_moved_mlflow_store
from edgeloop.settings import LoopSettings
from edgeloop.store import deployments

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from edgeloop.store import AnyStore

logger = logging.getLogger(__name__)

EXPERIMENT_NAME = "edgeloop"
MODEL_ARTIFACT_DIR = "model"
INT8_ARTIFACT_DIR = "model-int8"
"""The candidate run's folder holding its int8 edge model (``assets.quantize``): the same
``best.pt``, an int8 ``best.onnx``, ``model.json`` with ``"precision": "int8"``."""
PRECISION_TAG = "precision"
"""Version tag: the numeric precision of the version's ONNX (``fp32``, ``int8``); a
version without it is fp32 (an ultralytics export)."""
QUANTIZED_FROM_TAG = "quantized_from"
"""Version tag of an int8 version: the fp32 version it was quantised from."""
PRODUCTION = "production"
STAGING = "staging"
HELDOUT_KEYS = ("mAP50", "mAP50-95", "precision", "recall")
"""Gate metrics of a held-out evaluation, each in [0, 1]; ``model_evaluation`` tags the
candidate version with each as ``heldout_<key>`` (``assets.evaluation_report``)."""
EVIDENCE_TAGS = (
    "heldout_images",
    "heldout_gain_mAP50-95",
    "heldout_gain_mAP50",
    "corrections_learned",
    "regressions",
    "box_regressions",
)
"""The promotion evidence ``model_evaluation`` tags a candidate version with, as text:
held-out size, candidate-minus-production gain with its 95% paired-bootstrap interval
(``+0.0170 [-0.0040, +0.0380]``), corrections learned and regressions (``0.30 (3/10)``)."""
COMPARED_WITH_TAG = "heldout_production_version"
"""Version tag: the production version the candidate was evaluated against."""


class ModelNotFoundError(LookupError):
    """No registered model version carries the alias asked for (run ``edgeloop init``)."""


@dataclass(frozen=True)
class ModelFiles:
    """Local copies of one registered model version's files."""

    name: str
    version: str
    pt_path: Path
    onnx_path: Path
    class_names: list[str]
    imgsz: int
    onnx_sha256: str
    precision: str = "fp32"


def mlflow_client(settings: LoopSettings) -> MlflowClient:
    """An MLflow client on the settings' tracking and registry URI (the sqlite store by default).

    It sets no process-wide state: ``mlflow.set_tracking_uri`` would also write
    ``MLFLOW_TRACKING_URI`` into the environment, which ``LoopSettings`` reads as the
    user's override, so a later client for another data folder would silently reuse
    this store. Use the client API, not mlflow's fluent ``start_run``/``log_*``.

    The first client of a process on a data folder that was copied or moved rewrites the
    store's artifact URIs to this folder (``edgeloop.relocation.follow_moved_mlflow_store``).
    """
    from mlflow import MlflowClient

    if settings.tracking_uri.startswith("sqlite:"):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    if settings.mlflow_db is not None:  # a copied or moved data folder: URIs follow it
        follow_moved_mlflow_store(settings.mlflow_db, settings.artifact_root, EXPERIMENT_NAME)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def ensure_experiment(client: MlflowClient, settings: LoopSettings) -> str:
    """The ``edgeloop`` experiment's id; created with its artifacts at
    ``settings.artifact_location`` (``data/mlflow/artifacts``, or object storage)."""
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.artifact_location
    if location.startswith("file:"):
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(EXPERIMENT_NAME, artifact_location=location))


def write_model_dir(
    target: Path,
    *,
    pt_path: Path,
    onnx_path: Path,
    class_names: list[str],
    imgsz: int,
    precision: str = "fp32",
) -> Path:
    """Lay out a model folder (``best.pt``, ``best.onnx``, ``model.json``) ready to log;
    ``precision`` is the ONNX's (``fp32``, or ``int8`` for ``assets.quantize``'s)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pt_path, target / "best.pt")
    shutil.copyfile(onnx_path, target / "best.onnx")
    meta = {
        "class_names": class_names,
        "imgsz": imgsz,
        "onnx_sha256": sha256_file(target / "best.onnx"),
        "pt_sha256": sha256_file(target / "best.pt"),
        "precision": precision,
    }
    (target / "model.json").write_text(json.dumps(meta, indent=2))
    return target


def register_model_version(
    client: MlflowClient,
    *,
    model_name: str,
    run_id: str,
    description: str,
    tags: dict[str, str] | None = None,
    artifact_dir: str = MODEL_ARTIFACT_DIR,
) -> ModelVersion:
    """Register the ``artifact_dir`` folder of ``run_id`` (``model/``; ``model-int8/`` for
    an int8 edge model) as a new version of ``model_name``.

    ``mlflow.register_model`` refuses a plain artifact folder (it wants an MLflow Model),
    so this uses ``create_model_version`` with the folder as source (see DESIGN.md).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(
            model_name, description="edgeloop detector: ultralytics YOLO weights + ONNX for agents"
        )
    run = client.get_run(run_id)
    source = f"{run.info.artifact_uri}/{artifact_dir}"
    return client.create_model_version(
        model_name, source=source, run_id=run_id, description=description, tags=tags or {}
    )


def heldout_evidence(tags: Mapping[str, str]) -> tuple[dict[str, float], dict[str, str]]:
    """A version's own held-out evaluation, read from its MLflow version tags.

    Returns:
        The metrics (``HELDOUT_KEYS`` -> value in [0, 1]) and the evidence tags present
        (``EVIDENCE_TAGS`` -> text); both empty for a version never evaluated as a
        candidate (the seed). They stay on the version whatever alias moves follow.
    """
    metrics = {k: float(tags[f"heldout_{k}"]) for k in HELDOUT_KEYS if f"heldout_{k}" in tags}
    return metrics, {k: tags[k] for k in EVIDENCE_TAGS if k in tags}


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version carrying ``alias``, or None when no version carries it (or no model exists)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def move_alias(
    client: MlflowClient,
    store: AnyStore,
    *,
    model_name: str,
    alias: str,
    version: str,
    actor: str,
    reason: str,
    action: str = "promote",
    metrics: dict[str, Any] | None = None,
) -> str | None:
    """Point ``alias`` at ``version`` and record the move in ``model_deployments``.

    Returns:
        The version the alias pointed at before, or None.
    """
    previous = alias_version(client, model_name, alias)
    previous_version = str(previous.version) if previous is not None else None
    client.set_registered_model_alias(model_name, alias, str(version))
    with store.connect() as con:
        deployments.record(
            con=con,
            model_name=model_name,
            version=str(version),
            alias=alias,
            previous_version=previous_version,
            action=action,
            actor=actor,
            reason=reason,
            metrics=metrics,
        )
    logger.info(
        "alias %s of %s: %s -> %s (%s, by %s)",
        alias,
        model_name,
        previous_version,
        version,
        reason,
        actor,
    )
    return previous_version


def model_files(
    client: MlflowClient, settings: LoopSettings, *, model_name: str, version: str
) -> ModelFiles:
    """Local copies of a version's files, downloaded once into ``data/models/<name>/<version>``.

    Raises:
        ModelNotFoundError: the version's artifact folder lacks ``best.onnx`` or ``model.json``.
    """
    import mlflow

    target = settings.models_cache_dir / model_name / str(version)
    if not (target / "model.json").exists():
        mv = client.get_model_version(model_name, str(version))
        staging = target.with_name(f".{target.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(staging))
        # download_artifacts puts the folder's files under dst/<last path part>.
        nested = staging / Path(str(mv.source)).name
        shutil.rmtree(target, ignore_errors=True)
        (nested if nested.is_dir() else staging).rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    meta_path = target / "model.json"
    if not meta_path.exists() or not (target / "best.onnx").exists():
        raise ModelNotFoundError(
            f"model {model_name} v{version} has no best.onnx/model.json in its artifacts ({target})"
        )
    meta = json.loads(meta_path.read_text())
    return ModelFiles(
        name=model_name,
        version=str(version),
        pt_path=target / "best.pt",
        onnx_path=target / "best.onnx",
        class_names=list(meta["class_names"]),
        imgsz=int(meta["imgsz"]),
        onnx_sha256=str(meta["onnx_sha256"]),
        precision=str(meta.get("precision", "fp32")),
    )


def alias_model_files(client: MlflowClient, settings: LoopSettings, alias: str) -> ModelFiles:
    """Local files of the version carrying ``alias``.

    Raises:
        ModelNotFoundError: no version carries the alias (run ``edgeloop init`` first).
    """
    mv = alias_version(client, settings.model_name, alias)
    if mv is None:
        raise ModelNotFoundError(
            f"no version of {settings.model_name!r} has the alias {alias!r}; "
            "run `edgeloop init` to register the seed detector"
        )
    return model_files(client, settings, model_name=settings.model_name, version=str(mv.version))


def production_history(store: AnyStore, model_name: str) -> list[str]:
    """The stack of production versions after replaying ``model_deployments``, oldest first.

    A promote (or register) pushes its version; a rollback pops back to the version it
    restored. So after v1 → v2 → v3 and one rollback, the stack is ``["1", "2"]``.
    """
    with store.connect() as con:
        rows = deployments.alias_moves(con=con, model_name=model_name, alias=PRODUCTION)
    stack: list[str] = []
    for version, action in rows:
        if action == "rollback" and version in stack:
            while stack[-1] != version:
                stack.pop()
        elif not stack or stack[-1] != version:
            stack.append(str(version))
    return stack


def rollback(
    client: MlflowClient,
    store: AnyStore,
    *,
    model_name: str,
    to_version: str | None = None,
    actor: str,
    reason: str,
) -> str:
    """Move ``production`` back to the previous production version (or to ``to_version``).

    "Previous" comes from the ``model_deployments`` history (``production_history``):
    the latest version that held production before the current one and was not itself
    rolled back from. The move is recorded with action ``rollback``.

    Returns:
        The version ``production`` now points at.

    Raises:
        ModelNotFoundError: no production version, no earlier one in the history, or
            ``to_version`` is not a registered version of ``model_name``.
        ValueError: ``to_version`` already is production.
    """
    current = alias_version(client, model_name, PRODUCTION)
    if current is None:
        raise ModelNotFoundError(f"no version of {model_name!r} has the alias {PRODUCTION!r}")
    current_version = str(current.version)
    if to_version is None:
        history = production_history(store, model_name)
        while history and history[-1] == current_version:
            history.pop()
        if not history:
            raise ModelNotFoundError(
                f"no earlier production version of {model_name!r} in model_deployments to roll "
                f"back to (production is v{current_version}); pass an explicit version"
            )
        target = history[-1]
    else:
        target = str(to_version)
        _require_version(client, model_name, target)
    _move_production(
        client,
        store,
        model_name=model_name,
        version=target,
        current=current_version,
        actor=actor,
        reason=reason,
        action="rollback",
        metrics={"rolled_back_from": current_version},
    )
    return target


def promote(
    client: MlflowClient,
    store: AnyStore,
    *,
    model_name: str,
    version: str,
    actor: str,
    reason: str,
) -> str | None:
    """Point ``production`` at ``version`` by hand, recorded with action ``promote`` (the
    counterpart of ``rollback``; the loop's own promotions go through the promotion policy).

    Returns:
        The version ``production`` pointed at before, or None.

    Raises:
        ModelNotFoundError: ``version`` is not a registered version of ``model_name``.
        ValueError: ``version`` already is production.
    """
    _require_version(client, model_name, version)
    current = alias_version(client, model_name, PRODUCTION)
    previous = str(current.version) if current is not None else None
    _move_production(
        client,
        store,
        model_name=model_name,
        version=version,
        current=previous,
        actor=actor,
        reason=reason,
        action="promote",
        metrics={"promoted_from": previous},
    )
    return previous


def _require_version(client: MlflowClient, model_name: str, version: str) -> None:
    """Raise ``ModelNotFoundError`` unless ``version`` is a registered version of ``model_name``."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise ModelNotFoundError(f"{model_name!r} has no version {version}") from exc


def _move_production(
    client: MlflowClient,
    store: AnyStore,
    *,
    model_name: str,
    version: str,
    current: str | None,
    actor: str,
    reason: str,
    action: str,
    metrics: dict[str, Any],
) -> None:
    """A move of ``production`` by hand (``promote``, ``rollback``) from ``current`` to
    ``version``, recorded by ``move_alias``. Raises ``ValueError`` when they are the same."""
    if version == current:
        raise ValueError(f"v{version} already is production of {model_name!r}")
    move_alias(
        client,
        store,
        model_name=model_name,
        alias=PRODUCTION,
        version=version,
        actor=actor,
        reason=reason,
        action=action,
        metrics=metrics,
    )
