"""A real MLflow registry (sqlite, under the test's data dir) with registered versions,
laid out as ``edgeloop init`` registers the seed (``tests/loopdata.register_model`` does the
same but imports the Dagster resources; the console tests need none)."""

from __future__ import annotations

from pathlib import Path

from edgeloop.registry import (
    MODEL_ARTIFACT_DIR,
    PRODUCTION,
    ensure_experiment,
    mlflow_client,
    move_alias,
    register_model_version,
    write_model_dir,
)
from edgeloop.settings import LoopSettings
from edgeloop.store import Store


def register_versions(settings: LoopSettings, scratch: Path, *, count: int) -> list[str]:
    """Register ``count`` versions (stand-in weight files: the console never loads them);
    the first gets ``production`` (a ``model_deployments`` row by actor ``init``)."""
    client = mlflow_client(settings)
    experiment = ensure_experiment(client, settings)
    scratch.mkdir(parents=True, exist_ok=True)
    pt, onnx = scratch / "best.pt", scratch / "best.onnx"
    pt.write_bytes(b"stand-in weights")
    onnx.write_bytes(b"stand-in onnx")
    versions = []
    for i in range(count):
        run_id = client.create_run(experiment).info.run_id
        folder = write_model_dir(
            scratch / f"model-{i}",
            pt_path=pt,
            onnx_path=onnx,
            class_names=["Normal", "Fall"],
            imgsz=640,
        )
        client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT_DIR)
        client.set_terminated(run_id)
        mv = register_model_version(
            client, model_name=settings.model_name, run_id=run_id, description=f"test v{i + 1}"
        )
        versions.append(str(mv.version))
    move_alias(
        client,
        Store(settings.duckdb_path),
        model_name=settings.model_name,
        alias=PRODUCTION,
        version=versions[0],
        actor="init",
        reason="seed detector",
        action="register",
    )
    return versions
